"""build_model: the paper's six networks by name, with the paper's heads unless asked otherwise."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from galaxylib.cli import UserError
from galaxylib.models.backbones import CAM_LAYERS, TIMM_NAMES, VitTokensToGrid, create_timm_model
from galaxylib.models.baseline import baseline_features
from galaxylib.models.heads import GalaxyModel

MODEL_NAMES = ("baseline", "baseline_cbam", "resnet50", "resnet101", "convnext_large", "dinov2_vitb14_reg")
HEADS = ("faithful", "plain")
IMAGENET_CLASSES = 1000


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (what the paper's summary printed)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(
    name: str,
    *,
    img_size: int,
    pretrained: bool = False,
    weights_file: str | Path | None = None,
    head: str = "faithful",
    tree_output: bool = False,
) -> GalaxyModel:
    """One of MODEL_NAMES, outputting (B, 37) values in [0, 1].

    head="faithful" (the paper's code): CNN backbones keep their 1000-way ImageNet classifier and get
    Linear(1000, 37) stacked on it; DINOv2 gets Linear(768, 37) on the final-norm CLS token.
    head="plain": the classifier is replaced by Linear(features, 37) (no change for DINOv2 and the baseline).
    pretrained / weights_file load weights from disk only (see backbones.py); the baselines have none.
    """
    if name not in MODEL_NAMES:
        raise UserError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    if head not in HEADS:
        raise UserError(f"unknown head {head!r}; valid heads: {', '.join(HEADS)}")
    if name.startswith("baseline"):
        if pretrained or weights_file is not None:
            raise UserError(f"'{name}' is trained from scratch in the paper; it has no pretrained weights")
        features, n_flat = baseline_features(img_size, cbam=name == "baseline_cbam")
        return GalaxyModel(name, features, n_flat, tree_output=tree_output, cam_layer="bottleneck.act")

    is_vit = name == "dinov2_vitb14_reg"
    keep_imagenet_classifier = head == "faithful" and not is_vit
    extra = dict(img_size=img_size) if is_vit else {}  # timm resamples DINOv2's 37x37 pos_embed on load
    backbone, source = create_timm_model(
        TIMM_NAMES[name],
        num_classes=IMAGENET_CLASSES if keep_imagenet_classifier else 0,
        pretrained=pretrained,
        weights_file=weights_file,
        name=name,
        **extra,
    )
    in_features = IMAGENET_CLASSES if keep_imagenet_classifier else backbone.num_features
    reshape = VitTokensToGrid(backbone.num_prefix_tokens, backbone.patch_embed.grid_size) if is_vit else None
    return GalaxyModel(
        name,
        backbone,
        in_features,
        tree_output=tree_output,
        cam_layer=CAM_LAYERS[name],
        cam_reshape_transform=reshape,
        is_vit=is_vit,
        weights_source=None if source is None else str(source),
    )
