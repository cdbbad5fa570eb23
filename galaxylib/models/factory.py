"""build_model: any network of the registry by name, with the paper's head unless asked otherwise."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from galaxylib.errors import UserError
from galaxylib.models.backbones import VitTokensToGrid, create_backbone
from galaxylib.models.baseline import baseline_features
from galaxylib.models.heads import GalaxyModel
from galaxylib.models.registry import get_model_spec

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
    """A network of the registry (galaxylib/models/registry.py), outputting (B, 37) values in [0, 1].

    Args:
        name: a registry name, e.g. "baseline", "resnet50", "dinov2_vitb14_reg".
        img_size: input side in px (the baseline's linear layer and DINOv2's position grid depend on it).
        pretrained: load the paper's weights from disk (backbones.find_paper_weights); never downloads.
        weights_file: a weights file to load instead (.pth or .safetensors); implies pretrained.
        head: "faithful" (the paper's code): CNN backbones keep their 1000-way ImageNet classifier and get
            Linear(1000, 37) stacked on it; DINOv2 gets Linear(768, 37) on the final-norm CLS token.
            "plain": the classifier is replaced by Linear(features, 37) (no change for DINOv2 and the baseline).
        tree_output: Dieleman's decision-tree layer instead of the sigmoid.

    Returns:
        The model, in training mode, on the CPU.
    """
    spec = get_model_spec(name)
    if head not in HEADS:
        raise UserError(f"unknown head {head!r}; valid heads: {', '.join(HEADS)}")
    if spec.builder == "baseline":
        if pretrained or weights_file is not None:
            raise UserError(f"'{name}' is trained from scratch in the paper; it has no pretrained weights")
        features, n_flat = baseline_features(img_size, cbam=spec.cbam)
        return GalaxyModel(name, features, n_flat, tree_output=tree_output, cam_layer=spec.cam_layer)

    keep_imagenet_classifier = head == "faithful" and not spec.is_vit
    extra = dict(img_size=img_size) if spec.is_vit else {}  # timm resamples DINOv2's 37x37 pos_embed on load
    backbone, source = create_backbone(
        spec,
        num_classes=IMAGENET_CLASSES if keep_imagenet_classifier else 0,
        pretrained=pretrained,
        weights_file=weights_file,
        **extra,
    )
    in_features = IMAGENET_CLASSES if keep_imagenet_classifier else backbone.num_features
    reshape = None
    if spec.is_vit:
        reshape = VitTokensToGrid(backbone.num_prefix_tokens, backbone.patch_embed.grid_size)
    return GalaxyModel(
        name,
        backbone,
        in_features,
        tree_output=tree_output,
        cam_layer=spec.cam_layer,
        cam_reshape_transform=reshape,
        is_vit=spec.is_vit,
        weights_source=None if source is None else str(source),
    )
