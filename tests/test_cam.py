"""AblationCAM on the regression outputs: shapes, finiteness, explicit targets, the ViT token reshape."""

import numpy as np
import pytest
import torch

from galaxylib import cam, tree
from galaxylib.models import build_model


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
