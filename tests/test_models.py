"""The paper's models: exact sizes, the residual CBAM, heads, output layers, CAM hooks and offline weights."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from galaxylib.errors import UserError
from galaxylib.models import (
    CBAM,
    MODEL_NAMES,
    MODELS,
    DecisionTreeNorm,
    GalaxyModel,
    PretrainedWeightsMissing,
    build_model,
    count_parameters,
)
from galaxylib.tree import check_constraints

# Small inputs keep ConvNeXt-L and ViT-B cheap on CPU: 32 px for CNNs, 28 px = 2x2 patches of 14 for the ViT.
SMALL_SIZE = {name: 28 if name == "dinov2_vitb14_reg" else 32 for name in MODEL_NAMES}


class _BuiltOnce(dict):
    """name -> model at its small size, built on first use (ConvNeXt-L alone takes seconds to build)."""

    def __missing__(self, name: str) -> GalaxyModel:
        torch.manual_seed(0)
        self[name] = build_model(name, img_size=SMALL_SIZE[name])
        return self[name]


@pytest.fixture(scope="module")
def small_models() -> dict[str, GalaxyModel]:
    return _BuiltOnce()


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """HF and torch.hub caches pointed at an empty folder, so nothing pretrained can be found."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def _perturbed_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict that differs from any fresh init, so 'loaded exactly' cannot pass by accident."""
    gen = torch.Generator().manual_seed(1)
    return {
        k: (v + torch.randn(v.shape, generator=gen) if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }


def _assert_state_equal(module: nn.Module, expected: dict[str, torch.Tensor], skip=()) -> None:
    got = module.state_dict()
    assert set(got) == set(expected) - set(skip)
    for key, value in got.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)


# --- baseline -------------------------------------------------------------------------------------------


def test_baseline_parameter_counts_match_the_paper():
    assert count_parameters(build_model("baseline", img_size=128)) == 2_896_709
    assert count_parameters(build_model("baseline_cbam", img_size=128)) == 2_941_225


def test_baseline_layers_are_the_papers():
    model = build_model("baseline", img_size=64)
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.padding[0]) for c in convs] == [
        (3, 32, 17, 8), (32, 64, 13, 6), (64, 128, 9, 4), (128, 256, 7, 3), (256, 96, 1, 0),
    ]  # fmt: skip
    assert all(c.stride == (1, 1) and c.bias is not None for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.backbone.modules()) == 4
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.backbone.bottleneck.modules())
    assert not any(isinstance(m, CBAM) for m in model.modules())
    assert model.head.in_features == 96 * (64 // 16) ** 2  # flatten size follows img_size
    assert isinstance(model.activation, nn.Sigmoid)


def test_cbam_sits_after_relu_before_pool_in_each_block_only():
    model = build_model("baseline_cbam", img_size=32)
    for i in range(1, 5):
        names = [n for n, _ in getattr(model.backbone, f"block{i}").named_children()]
        assert names == ["conv", "bn", "act", "attn", "pool"]
    assert sum(isinstance(m, CBAM) for m in model.modules()) == 4
    assert not any(isinstance(m, CBAM) for m in model.backbone.bottleneck.modules())


def test_cbam_is_residual_x_plus_x_mc_ms():
    """Against a NumPy hand computation of Ng's formula on a tiny tensor."""
    torch.manual_seed(0)
    cbam = CBAM(8)  # reduction 4 -> hidden 2, spatial kernel 7
    x = torch.randn(2, 8, 5, 6)
    p = {k: v.detach().numpy().astype(np.float64) for k, v in cbam.state_dict().items()}
    xn = x.numpy().astype(np.float64)

    def mlp(v):  # (B, C) -> (B, C)
        h = np.maximum(v @ p["channel.mlp.0.weight"].T + p["channel.mlp.0.bias"], 0)
        return h @ p["channel.mlp.2.weight"].T + p["channel.mlp.2.bias"]

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    mc = sigmoid(mlp(xn.max(axis=(2, 3))) + mlp(xn.mean(axis=(2, 3))))[:, :, None, None]
    xc = xn * mc
    pooled = np.stack([xc.max(axis=1), xc.mean(axis=1)], axis=1)  # [max, mean]
    padded = np.pad(pooled, ((0, 0), (0, 0), (3, 3), (3, 3)))
    w, b = p["spatial.conv.weight"][0], p["spatial.conv.bias"][0]
    conv = np.zeros((2, 5, 6))
    for i in range(5):
        for j in range(6):
            conv[:, i, j] = (padded[:, :, i : i + 7, j : j + 7] * w).sum(axis=(1, 2, 3)) + b
    expected = xn + xc * sigmoid(conv)[:, None]
    np.testing.assert_allclose(cbam(x).detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_baseline_img_size_must_divide_by_16():
    with pytest.raises(UserError, match="multiple of 16"):
        build_model("baseline", img_size=100)


# --- all models -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_backward_shape_and_range(small_models, name):
    model = small_models[name].train()
    size = SMALL_SIZE[name]
    x = torch.randn(2, 3, size, size)
    y = model(x)
    assert y.shape == (2, 37)
    assert bool(((y >= 0) & (y <= 1)).all())
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert model.head.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.sigmoid(model.logits(x)))


def test_faithful_cnn_heads_stack_on_the_imagenet_classifier(small_models):
    for name, classifier in (("resnet50", "fc"), ("resnet101", "fc"), ("convnext_large", "head.fc")):
        model = small_models[name]
        assert model.backbone.get_submodule(classifier).out_features == 1000
        assert (model.head.in_features, model.head.out_features) == (1000, 37)
    # The paper's model = torchvision network with its classifier + Linear(1000, 37).
    expected = count_parameters(torchvision.models.resnet50(weights=None)) + 1000 * 37 + 37
    assert count_parameters(small_models["resnet50"]) == expected


def test_dinov2_head_is_linear_on_the_cls_token(small_models):
    model = small_models["dinov2_vitb14_reg"]
    assert model.is_vit
    assert model.backbone.num_prefix_tokens == 5  # CLS + 4 registers
    assert model.backbone.global_pool == "token"
    assert isinstance(model.backbone.head, nn.Identity)
    assert (model.head.in_features, model.head.out_features) == (768, 37)
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        cls_token = model.backbone.forward_features(x)[:, 0]  # final norm, then token 0
        torch.testing.assert_close(model.logits(x), model.head(cls_token))


def test_plain_head_replaces_the_classifier():
    resnet = build_model("resnet50", img_size=32, head="plain")
    assert isinstance(resnet.backbone.fc, nn.Identity)
    assert (resnet.head.in_features, resnet.head.out_features) == (2048, 37)
    assert resnet(torch.randn(2, 3, 32, 32)).shape == (2, 37)
    with pytest.raises(UserError, match="faithful"):
        build_model("resnet50", img_size=32, head="mlp")


@pytest.mark.parametrize("name", ["baseline", "resnet50"])
def test_tree_output_satisfies_the_decision_tree(name):
    torch.manual_seed(0)
    model = build_model(name, img_size=32, tree_output=True).eval()
    assert isinstance(model.activation, DecisionTreeNorm)
    with torch.no_grad():
        model.head.bias.fill_(50.0)  # every answer active, so no question is all-zero after the ReLU
        x = torch.randn(4, 3, 32, 32)
        y, logits = model(x), model.logits(x)
    assert bool((logits > 0).all())
    assert y.shape == (4, 37) and bool(((y >= 0) & (y <= 1)).all())
    assert check_constraints(y.numpy(), galaxy_ids=range(4), tol=1e-6) == []
    torch.testing.assert_close(y, DecisionTreeNorm()(logits))


# --- AblationCAM hooks ----------------------------------------------------------------------------------


def test_cam_target_layers(small_models):
    m = small_models
    assert m["baseline"].cam_target_layer is m["baseline"].backbone.bottleneck.act
    assert m["baseline_cbam"].cam_target_layer is m["baseline_cbam"].backbone.bottleneck.act
    assert m["resnet50"].cam_target_layer is m["resnet50"].backbone.layer4[-1]
    assert m["resnet101"].cam_target_layer is m["resnet101"].backbone.layer4[-1]
    assert m["convnext_large"].cam_target_layer is m["convnext_large"].backbone.stages[-1]
    vit = m["dinov2_vitb14_reg"]
    assert vit.cam_target_layer is vit.backbone.blocks[-1].norm1
    for name in MODEL_NAMES:
        assert (m[name].cam_reshape_transform is None) == (name != "dinov2_vitb14_reg")
        # the layer is reached through the module tree only, not registered a second time
        assert not any(k.startswith("cam") for k in m[name].state_dict())


def test_vit_reshape_transform_gives_a_16x16_grid_at_224():
    model = build_model("dinov2_vitb14_reg", img_size=224)
    tokens = torch.randn(2, 5 + 16 * 16, 768)
    grid = model.cam_reshape_transform(tokens)
    assert grid.shape == (2, 768, 16, 16)
    # prefix tokens dropped, patches in row-major order
    torch.testing.assert_close(grid[:, :, 0, 0], tokens[:, 5])
    torch.testing.assert_close(grid[:, :, 3, 7], tokens[:, 5 + 3 * 16 + 7])
    torch.testing.assert_close(grid[:, :, 15, 15], tokens[:, -1])


# --- pretrained weights, offline ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_file_loads_exactly(tmp_path, empty_caches, small_models, suffix):
    state = _perturbed_state_dict(small_models["resnet50"].backbone)
    path = tmp_path / f"resnet50{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)

    model = build_model("resnet50", img_size=32, weights_file=path)
    _assert_state_equal(model.backbone, state)
    assert model.weights_source == str(path)

    plain = build_model("resnet50", img_size=32, weights_file=path, head="plain")  # classifier dropped
    _assert_state_equal(plain.backbone, state, skip=("fc.weight", "fc.bias"))


def test_weights_file_for_the_vit_is_resampled_to_the_model_grid(tmp_path, empty_caches, small_models):
    """Real DINOv2 weights are 37x37 (518 px); timm's filter must resample pos_embed to our grid."""
    state = _perturbed_state_dict(small_models["dinov2_vitb14_reg"].backbone)  # 2x2 grid at 28 px
    path = tmp_path / "dinov2.safetensors"
    save_file(state, path)
    model = build_model("dinov2_vitb14_reg", img_size=56, weights_file=path)  # 4x4 grid
    assert model.backbone.pos_embed.shape == (1, 16, 768)
    loaded = model.backbone.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        if key != "pos_embed":
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)
    # the 4x4 grid's corners follow the 2x2 grid's corners only if pos_embed was interpolated, not re-drawn
    corners = loaded["pos_embed"][0, [0, 3, 12, 15]], state["pos_embed"][0, [0, 1, 2, 3]]
    assert torch.corrcoef(torch.stack([corners[0].flatten(), corners[1].flatten()]))[0, 1] > 0.9


def test_populated_hf_cache_loads_without_network(tmp_path, empty_caches, small_models):
    timm_name = MODELS["resnet50"].timm_name
    state = _perturbed_state_dict(small_models["resnet50"].backbone)
    repo = tmp_path / "hf" / "hub" / f"models--timm--{timm_name}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file(state, repo / "snapshots" / "0123abcd" / "model.safetensors")

    model = build_model("resnet50", img_size=32, pretrained=True)
    _assert_state_equal(model.backbone, state)
    assert model.weights_source.startswith(str(repo))


def test_torchvision_weights_in_the_torch_hub_cache_are_used(tmp_path, empty_caches, small_models):
    """resnet50.tv_in1k is torchvision's file; a torchvision user already has it in $TORCH_HOME."""
    state = _perturbed_state_dict(small_models["resnet50"].backbone)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    model = build_model("resnet50", img_size=32, pretrained=True)
    _assert_state_equal(model.backbone, state)
    assert model.weights_source == str(cached)


@pytest.mark.parametrize("name", [m.name for m in MODELS.values() if m.has_pretrained_weights])
def test_missing_pretrained_weights_is_one_clear_error(empty_caches, name):
    spec = MODELS[name]
    with pytest.raises(PretrainedWeightsMissing) as info:
        build_model(name, img_size=224, pretrained=True)
    message = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in message
    assert str(empty_caches / "torch" / "hub" / "checkpoints" / spec.paper_weights_file) in message
    assert "--weights-file" in message and spec.paper_weights in message
    hf_repo = str(empty_caches / "hf" / "hub" / f"models--timm--{spec.timm_name}")
    assert (hf_repo in message) == spec.hf_has_paper_weights  # ConvNeXt: no timm tag holds the paper's weights


def test_the_papers_convnext_file_in_the_torch_hub_cache_is_found(tmp_path, empty_caches):
    """torchvision's convnext_large(weights='IMAGENET1K_V1') leaves convnext_large-ea097f82.pth there."""
    import torchvision

    with torch.device("meta"):
        tv = torchvision.models.convnext_large()
    state = {k: torch.full(v.shape, 0.01) for k, v in tv.state_dict().items()}
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "convnext_large-ea097f82.pth"
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    model = build_model("convnext_large", img_size=32, pretrained=True)
    assert model.weights_source == str(cached)
    assert torch.equal(model.backbone.stages[1].blocks[2].gamma, state["features.3.2.layer_scale"].flatten())


def test_missing_or_wrong_weights_file(tmp_path):
    with pytest.raises(PretrainedWeightsMissing, match="nope.safetensors"):
        build_model("resnet50", img_size=32, weights_file=tmp_path / "nope.safetensors")
    wrong = tmp_path / "wrong.safetensors"
    save_file({"not_a_resnet.weight": torch.zeros(3)}, wrong)
    with pytest.raises(UserError, match="wrong.safetensors"):
        build_model("resnet50", img_size=32, weights_file=wrong)


def test_bad_requests_are_user_errors():
    with pytest.raises(UserError, match="baseline_cbam, resnet50"):
        build_model("vgg16", img_size=128)
    with pytest.raises(UserError, match="no pretrained weights"):
        build_model("baseline", img_size=128, pretrained=True)


def test_imports_without_grad_cam_or_papermill():
    """The GPU machine has neither package; the models must not need them."""
    code = (
        "import sys; sys.modules['pytorch_grad_cam'] = None; sys.modules['papermill'] = None\n"
        "from galaxylib.models import build_model\n"
        "print(build_model('baseline', img_size=16).eval()(__import__('torch').zeros(1, 3, 16, 16)).shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch.Size([1, 37])" in out.stdout
