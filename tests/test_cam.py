"""AblationCAM on the regression outputs: shapes, finiteness, explicit targets, the ViT token reshape, the layer
chosen at each profile's input size, and the figure."""

import matplotlib
import numpy as np
import pytest
import torch

from galaxylib import cam, report, tree
from galaxylib.experiments import resolve
from galaxylib.models import build_model

matplotlib.use("Agg")


class _BuiltOnce(dict):
    """(model name, img_size) -> a randomly initialised model, built on first use (ResNet50 and ViT-B take a
    second or two)."""

    def __missing__(self, key):
        torch.manual_seed(0)
        self[key] = build_model(key[0], img_size=key[1]).eval()
        return self[key]


@pytest.fixture(scope="module")
def built():
    return _BuiltOnce()


@pytest.fixture(scope="module")
def baseline():
    torch.manual_seed(0)
    return build_model("baseline", img_size=32).eval()


def test_maps_have_the_input_shape_and_are_finite(baseline):
    x = torch.randn(2, 3, 32, 32)
    maps = cam.ablation_cam(baseline, x, ["Class1.1", 5], batch_size=96)  # 96 channels: one pass per image
    assert maps.shape == (2, 32, 32)
    assert np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert maps.reshape(2, -1).std(1).max() > 0  # a 2x2 bottleneck still gives a non-constant map


def test_explicit_targets_are_required(baseline):
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="explicit targets"):
        cam.ablation_cam(baseline, x, None)
    with pytest.raises(ValueError, match="2 images"):
        cam.ablation_cam(baseline, x, ["Class1.1"] * 3)
    with pytest.raises(ValueError, match="unknown answer"):
        cam.ablation_cam(baseline, x, "Class12.1")


def test_target_is_softplus_of_the_answer_logit(baseline):
    """Positive for every prediction (AblationCAM divides by it) and monotone in the predicted value."""
    x = torch.randn(4, 3, 32, 32)
    wrapped = cam.LogitsModel(baseline)
    with torch.no_grad():
        logits = wrapped(x)
        probs = baseline(x)
    torch.testing.assert_close(torch.sigmoid(logits), probs)
    target = cam.AnswerTarget("Class2.1")
    scores = torch.stack([target(row) for row in logits])
    k = tree.COLUMNS.index("Class2.1")
    torch.testing.assert_close(scores, torch.nn.functional.softplus(logits[:, k]))
    assert (scores > 0).all()
    order_scores, order_probs = torch.argsort(scores), torch.argsort(probs[:, k])
    assert torch.equal(order_scores, order_probs)


def test_cam_leaves_the_model_unchanged(baseline):
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = baseline(x)
    layer = baseline.cam_target_layer
    cam.ablation_cam(baseline, x, "Class1.1", batch_size=96)
    assert baseline.cam_target_layer is layer
    with torch.no_grad():
        torch.testing.assert_close(baseline(x), before)


def test_select_targets_prefers_non_trivial_predictions():
    preds = np.zeros((2, 37))
    preds[0, tree.COLUMNS.index("Class1.1")] = 0.8
    preds[0, tree.COLUMNS.index("Class7.1")] = 0.5
    preds[0, tree.COLUMNS.index("Class6.2")] = 0.99  # not a shape answer: never chosen
    preds[1, tree.COLUMNS.index("Class1.2")] = 0.6
    chosen = cam.select_targets(preds, k=2)
    assert chosen[0] == ["Class1.1", "Class7.1"]
    assert chosen[1][0] == "Class1.2" and len(chosen[1]) == 2


def test_vit_reshape_drops_the_five_prefix_tokens():
    """DINOv2-reg4 has 1 class + 4 register tokens before the patch tokens; only patches reach the map."""
    torch.manual_seed(0)
    model = build_model("dinov2_vitb14_reg", img_size=28).eval()
    reshape = model.cam_reshape_transform
    assert model.is_vit and reshape.num_prefix_tokens == 5
    tokens = torch.randn(2, 5 + 4, 768)
    grid = reshape(tokens)
    assert grid.shape == (2, 768, 2, 2)
    changed = tokens.clone()
    changed[:, :5] = 1e3  # prefix tokens must not leak into the grid
    torch.testing.assert_close(reshape(changed), grid)
    torch.testing.assert_close(grid[:, :, 0, 1], tokens[:, 6])  # row-major patch order
    assert cam.cam_grid_size(model, 28) == (2, 2)
    maps = cam.ablation_cam(
        model, torch.randn(1, 3, 28, 28), "Class1.1", batch_size=16, ratio_channels_to_ablate=0.01
    )  # 2 x 7 of 768 channels: one pass
    assert maps.shape == (1, 28, 28) and np.isfinite(maps).all()


# the profiles' CAM inputs, read from the profiles (smoke: 16 px baselines, 32 px CNNs, 28 px ViT; quick: 32/32/28)
SMALL = sorted({(resolve(e, p).model, resolve(e, p).img_size) for p in ("smoke", "quick")
                for e in ("baseline", "baseline_cbam", "resnet50", "dinov2_base")})  # fmt: skip


@pytest.mark.parametrize(("model", "size"), SMALL, ids=[f"{m}-{s}px" for m, s in SMALL])
def test_the_chosen_layer_has_at_least_8x8_cells_at_small_profiles(built, model, size):
    net = built[model, size]
    grids = cam.cam_grid_sizes(net, size)
    chosen = cam.choose_cam_layer(net, size)
    assert chosen.grid == grids[chosen.name] == cam.cam_grid_size(net, size, chosen.name)
    if net.is_vit:  # every block has the same 2x2 patch grid: shown unresolved, labelled so
        assert size < 8 * 14 and chosen.name == net.cam_layer and chosen.grid == (size // 14,) * 2
        assert not chosen.resolved and "too coarse" in chosen.label
        return
    assert min(grids[net.cam_layer]) < cam.MIN_CAM_CELLS  # the paper's layer is too coarse at these sizes
    assert chosen.resolved and min(chosen.grid) >= cam.MIN_CAM_CELLS
    assert not chosen.registry_layer and "earlier layer" in chosen.label
    # the deepest such layer: every deeper candidate is coarser
    names = list(grids)
    assert all(min(grids[n]) < cam.MIN_CAM_CELLS for n in names[: names.index(chosen.name)])


def test_labels_name_the_layer_and_its_grid(built):
    chosen = cam.choose_cam_layer(built["baseline", 32], 32)
    assert chosen.label == "block3.act (earlier layer), 8x8 cells"
    assert cam.choose_cam_layer(built["baseline_cbam", 32], 32).name == "block3.attn"  # after CBAM, before the pool


@pytest.mark.parametrize("model", ["baseline", "baseline_cbam", "dinov2_vitb14_reg"])
def test_the_paper_sizes_keep_the_registry_layer(built, model):
    """128 px baselines: the paper's Fig. 8 layer, the 8x8 bottleneck; DINOv2 at 224 px: 16x16 patches."""
    size = 224 if model == "dinov2_vitb14_reg" else 128
    chosen = cam.choose_cam_layer(built[model, size], size)
    assert chosen.name == built[model, size].cam_layer and chosen.registry_layer and chosen.resolved
    assert chosen.grid == ((16, 16) if model == "dinov2_vitb14_reg" else (8, 8))
    assert "last layer" in chosen.label


def test_resnet50_at_224px_goes_one_stage_earlier_than_its_7x7_layer4(built):
    net = built["resnet50", 224]
    assert cam.cam_grid_size(net, 224) == (7, 7)
    chosen = cam.choose_cam_layer(net, 224)
    assert (chosen.name, chosen.grid) == ("layer3.5", (14, 14))


def test_an_unknown_layer_names_the_candidates(baseline):
    with pytest.raises(ValueError, match="block3.act"):
        cam.ablation_cam(baseline, torch.randn(1, 3, 32, 32), "Class1.1", layer="block9.act")


@pytest.fixture(scope="module")
def trained_ish():
    """A 16 px baseline after a few optimizer steps on bright blobs whose brightness is the Class1.1 answer, so
    that its explained score depends on the image (a random network's barely does)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    size, n = 16, 64
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = torch.randint(3, size - 3, (n, 2), generator=gen)
    bright = torch.rand(n, generator=gen)
    d2 = (yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2
    x = (bright[:, None, None] * torch.exp(-d2 / 4.0))[:, None].repeat(1, 3, 1, 1) * 2 - 1
    y = torch.full((n, 37), 0.5)
    y[:, tree.COLUMNS.index("Class1.1")] = bright
    model = build_model("baseline", img_size=size)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for step in range(8):
        batch = slice(16 * (step % 4), 16 * (step % 4) + 16)
        loss = (model(x[batch]) - y[batch]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x[:2]


def test_maps_of_the_chosen_layer_are_finite_and_not_constant(trained_ish):
    model, x = trained_ish
    chosen = cam.choose_cam_layer(model, 16)
    assert chosen.name == "block2.act"  # 64 channels: one pass of 64 per image
    maps = cam.ablation_cam(model, x, "Class1.1", layer=chosen.name, batch_size=64)
    assert maps.shape == (2, 16, 16) and np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert (maps.reshape(2, -1).std(1) > 0.01).all()
    bottleneck = cam.ablation_cam(model, x, "Class1.1", batch_size=96)  # the registry's 1x1 layer: flat
    assert not np.allclose(maps, bottleneck)


def _examples(x: torch.Tensor) -> cam.Examples:
    display = [np.clip(img.permute(1, 2, 0).numpy() * 0.5 + 0.5, 0, 1) for img in x]
    return cam.Examples(np.arange(100, 100 + len(x)), x, display, np.full((len(x), 37), 0.5))


def test_explain_and_the_figure_label_layers_and_draw_a_colour_bar(trained_ish):
    model, x = trained_ish
    torch.manual_seed(1)
    other = build_model("baseline_cbam", img_size=16).eval()
    rows = cam.explain({"Baseline": model, "CBAM": other}, _examples(x[:1]), 1, batch_size=64)
    assert {n: layer.name for n, layer in rows.layers.items()} == {"Baseline": "block2.act", "CBAM": "block2.attn"}
    assert rows.column_titles["Baseline"] == "Baseline\nblock2.act (earlier layer)\n8x8 cells"
    assert all(m.shape == (1, 16, 16) for m in rows.maps.values())
    maps = {**rows.maps, "flat": np.zeros((1, 16, 16), np.float32)}
    fig = report.plot_cam_grid(rows.display, maps, rows.titles, "test", column_titles=rows.column_titles)
    try:
        bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert len(bars) == 1 and "min-max scaled per map" in bars[0].get_ylabel()
        panels = [ax for ax in fig.axes if ax not in bars]
        assert len(panels) == 1 + len(maps)
        assert [ax.get_title() for ax in panels[1:]] == [*rows.column_titles.values(), "flat"]
        assert any("flat map" in t.get_text() for t in panels[-1].texts)  # a blank map says why it is blank
        assert not any(t.get_text() for ax in panels[1:3] for t in ax.texts)
    finally:
        matplotlib.pyplot.close(fig)


def test_a_vit_too_coarse_at_its_size_is_explained_on_an_upsampled_input_labelled_so(built):
    """DINOv2 at the quick profile's 28 px has 2x2 patches in every block: explain() rebuilds a copy at
    8 x 14 = 112 px (position embeddings resampled) so the map has 8x8 cells, and the header says so."""
    net = built["dinov2_vitb14_reg", 28]
    pos_before = net.backbone.pos_embed.detach().clone()
    torch.manual_seed(3)
    x = torch.randn(1, 3, 28, 28)
    rows = cam.explain({"DINOv2": net}, _examples(x), 1, batch_size=16, ratio_channels_to_ablate=0.01)
    layer = rows.layers["DINOv2"]
    assert (layer.grid, layer.resolved, layer.input_px, layer.trained_px) == ((8, 8), True, 112, 28)
    assert "8x8 cells, input 28->112 px" in layer.label and "too coarse" not in layer.label
    assert rows.maps["DINOv2"].shape == (1, 112, 112) and np.isfinite(rows.maps["DINOv2"]).all()
    # the trained model is untouched: same position grid, still 2x2 at 28 px
    torch.testing.assert_close(net.backbone.pos_embed, pos_before)
    assert cam.cam_grid_size(net, 28) == (2, 2)
    coarse = cam.explain({"DINOv2": net}, _examples(x), 1, upsample_vits=False, batch_size=16,
                         ratio_channels_to_ablate=0.01)  # fmt: skip
    assert "too coarse" in coarse.layers["DINOv2"].label and coarse.maps["DINOv2"].shape == (1, 28, 28)


def test_vit_at_input_size_refuses_a_cnn(baseline):
    with pytest.raises(ValueError, match="not a ViT"):
        cam.vit_at_input_size(baseline, 112)
