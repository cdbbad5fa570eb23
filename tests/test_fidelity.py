"""The foundation models are the networks the paper's code built (torchvision / torch.hub), not just alike.

A torchvision model with random, non-trivial weights (every parameter and BatchNorm statistic randomised, ConvNeXt's
layer scale too) is saved as a plain state dict and loaded through galaxylib: with the paper's head (the 1000-way
classifier kept, Linear(1000, 37) + Sigmoid on it) both give the same outputs. ConvNeXt Large trains with
torchvision's stochastic depth; a ResNet trained from scratch starts from torchvision's initialisation.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.convnext import CNBlock

from galaxylib.models import build_model
from galaxylib.models.weights import convert_torchvision_convnext, convnext_torchvision_key_to_timm

IMG, ATOL = 64, 1e-5


@torch.no_grad()
def randomise_(model: nn.Module, seed: int) -> None:
    """Weights unlike any init: conv/linear N(0, 1/fan_in), norm weights U(0.5, 1), biases U(-0.1, 0.1),
    layer scale U(0.1, 1) (so every ConvNeXt block contributes), BN running mean N(0, 0.1^2), var U(0.5, 2)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("layer_scale"):
            p.copy_(torch.rand(p.shape, generator=g) * 0.9 + 0.1)
        elif p.ndim == 1 and name.endswith("weight"):
            p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.5)
        elif p.ndim == 1:
            p.copy_((torch.rand(p.shape, generator=g) - 0.5) * 0.2)
        else:
            p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(torch.randn(b.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            b.copy_(torch.rand(b.shape, generator=g) * 1.5 + 0.5)


def _pair(name: str, tmp_path_factory) -> dict:
    """torchvision's paper model with random weights, and galaxylib's model loaded from its saved state dict."""
    with torch.device("meta"):  # skip torchvision's init: every tensor is overwritten anyway
        tv = getattr(torchvision.models, name)()
    tv = tv.to_empty(device="cpu")
    randomise_(tv, seed=1)
    path = tmp_path_factory.mktemp(name) / f"{name}_torchvision.pth"
    torch.save(tv.state_dict(), path)
    ours = build_model(name, img_size=IMG, weights_file=path)
    paper = nn.Sequential(tv, nn.Linear(1000, 37), nn.Sigmoid())  # Sequential(backbone, Linear, Sigmoid)
    paper[1].load_state_dict(ours.head.state_dict())
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(2))
    return {"tv": paper, "ours": ours, "x": x, "path": path}


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory):
    return _pair("resnet50", tmp_path_factory)


@pytest.fixture(scope="module")
def resnet101(tmp_path_factory):
    return _pair("resnet101", tmp_path_factory)


@pytest.fixture(scope="module")
def convnext_large(tmp_path_factory):
    return _pair("convnext_large", tmp_path_factory)


@pytest.mark.parametrize("name", ["resnet50", "resnet101", "convnext_large"])
def test_paper_weights_file_gives_torchvisions_outputs(name, request):
    pair = request.getfixturevalue(name)
    tv, ours, x = pair["tv"].eval(), pair["ours"].eval(), pair["x"]
    with torch.no_grad():
        expected, got = tv(x), ours(x)
        logits_tv, logits_ours = tv[1](tv[0](x)), ours.logits(x)
    assert got.shape == (2, 37)
    assert 0.02 < expected.min() and expected.max() < 0.98  # the weights are non-trivial: no saturated output
    assert (got - expected).abs().max() < ATOL
    assert (logits_ours - logits_tv).abs().max() < ATOL
    assert ours.weights_source == str(pair["path"])


def test_the_comparison_can_fail(resnet50):
    """Changing one deep weight changes the output: agreement above is not an accident of the inputs."""
    tv, ours, x = resnet50["tv"].eval(), resnet50["ours"].eval(), resnet50["x"]
    weight = ours.backbone.layer4[2].conv3.weight
    saved = weight.detach().clone()
    with torch.no_grad():
        before = ours(x)
        weight.mul_(1.5)
        after = ours(x)
        weight.copy_(saved)
        assert (after - tv(x)).abs().max() > 100 * ATOL and torch.equal(before, ours(x))


def test_convnext_large_trains_with_torchvisions_stochastic_depth(convnext_large):
    tv, ours, x = convnext_large["tv"], convnext_large["ours"], convnext_large["x"]
    tv_rates = [m.stochastic_depth.p for m in tv.modules() if isinstance(m, CNBlock)]
    ours_rates = [float(getattr(b.drop_path, "drop_prob", 0.0)) for b in ours.backbone.modules()
                  if type(b).__name__ == "ConvNeXtBlock"]  # fmt: skip
    assert len(tv_rates) == 36 and tv_rates[-1] == 0.5 and tv_rates[0] == 0.0
    assert ours_rates == tv_rates
    tv.train(), ours.train()
    with torch.no_grad():
        torch.manual_seed(7)
        tv_out = tv(x)
        torch.manual_seed(7)
        ours_out = ours(x)
        torch.manual_seed(8)
        other = ours(x)
    tv.eval(), ours.eval()
    assert (ours_out - tv_out).abs().max() < ATOL  # the same blocks dropped for the same seed
    assert (other - ours_out).abs().max() > 1e-3  # and training mode does drop blocks


def test_torchvision_convnext_keys_all_map_one_to_one():
    with torch.device("meta"):
        tv = torchvision.models.convnext_large().state_dict()
        import timm

        tm = timm.create_model("convnext_large", num_classes=1000).state_dict()
    converted = convert_torchvision_convnext(tv)
    assert set(converted) == set(tm) and len(tm) == 344
    assert all(converted[k].shape == tm[k].shape for k in tm)
    assert convnext_torchvision_key_to_timm("features.3.2.layer_scale") == "stages.1.blocks.2.gamma"
    with pytest.raises(ValueError, match="not a torchvision ConvNeXt key"):
        convnext_torchvision_key_to_timm("features.1.0.block.9.weight")


@pytest.mark.parametrize("name", ["resnet50", "resnet101"])
def test_resnet_from_scratch_starts_as_torchvision(name):
    """timm zero-initialises each bottleneck's last BatchNorm; torchvision (the paper) does not."""
    torch.manual_seed(0)
    ours = build_model(name, img_size=32).backbone.state_dict()
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)().state_dict()
    assert set(ours) == set(tv)
    last_bns = [k for k in ours if k.endswith("bn3.weight")]
    assert len(last_bns) == (16 if name == "resnet50" else 33)
    assert all(torch.all(ours[k] == 1) for k in last_bns)
    for key, value in tv.items():
        if value.is_floating_point() and value.ndim > 1 and value.numel() > 1000:  # kaiming convs, default fc
            assert abs(ours[key].std() / value.std() - 1) < 0.05, key


def test_convnext_from_scratch_starts_as_torchvision():
    model = build_model("convnext_large", img_size=32).backbone
    gammas = [b.gamma for b in model.modules() if type(b).__name__ == "ConvNeXtBlock"]
    assert len(gammas) == 36 and all(torch.all(g == 1e-6) for g in gammas)
    w = model.stages[2].blocks[0].mlp.fc1.weight
    assert abs(w.std().item() - 0.02) < 0.001 and w.abs().max() < 2.0  # trunc_normal(std=0.02), no -2.0 values
