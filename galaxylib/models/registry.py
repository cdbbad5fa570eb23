"""Every model of the paper, described as data: one `ModelSpec` per network (in the spirit of timm's
`default_cfgs`). The factory, the experiments, AblationCAM and the report read their facts from here, so a new
backbone is one entry below plus its experiment row in galaxylib/experiments.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from galaxylib.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    """What galaxylib needs to know about one network.

    Attributes:
        name: galaxylib's name for it (what experiments refer to).
        label: how tables name it.
        family: "baseline" (the paper's own CNNs), "cnn" (an ImageNet CNN backbone) or "vit".
        builder: "baseline" or "timm": how galaxylib.models.factory builds it.
        timm_name: the timm model (with the tag of the paper's weights) for builder "timm".
        paper_source: how the paper's code built it.
        paper_weights: the paper's pretrained weights in words ("" when the paper trained it from scratch).
        paper_weights_file: the weights file the paper's code loaded ("" when none); torchvision and torch.hub
            keep it in $TORCH_HOME/hub/checkpoints/, where galaxylib looks for it.
        hf_has_paper_weights: the Hugging Face repo of `timm_name` holds exactly the paper's weights (so a
            populated HF cache works too); False where no timm tag does (ConvNeXt Large).
        timm_kwargs: timm.create_model arguments that make the timm module the paper's torchvision one
            (zero_init_last=False: torchvision does not zero each bottleneck's last BatchNorm).
        stochastic_depth: torchvision's stochastic_depth_prob (ConvNeXt: 0.5, rising linearly over the blocks),
            active while fine-tuning, as in the paper's code.
        torchvision_init: re-initialise as torchvision does when trained from scratch (ConvNeXt).
        input_multiple: the input side must be a multiple of this (total stride, or the ViT patch).
        paper_img_size: the input size the paper trained it at.
        cam_layer: the module (below the backbone) whose activations AblationCAM explains.
        cbam: the baseline with residual CBAM after each block (baseline family only).
    """

    name: str
    label: str
    family: str
    builder: str
    paper_source: str
    input_multiple: int
    paper_img_size: int
    cam_layer: str
    timm_name: str = ""
    paper_weights: str = ""
    paper_weights_file: str = ""
    hf_has_paper_weights: bool = False
    timm_kwargs: tuple[tuple[str, Any], ...] = ()
    stochastic_depth: float = 0.0
    torchvision_init: bool = False
    cbam: bool = False

    @property
    def is_vit(self) -> bool:
        return self.family == "vit"

    @property
    def has_pretrained_weights(self) -> bool:
        """The paper fine-tuned it from pretrained weights (a file galaxylib must find on disk)."""
        return bool(self.paper_weights_file)


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("baseline", "Baseline CNN", "baseline", "baseline", "baseline.ipynb (USE_CBAM=False)", 16, 128,
                  cam_layer="bottleneck.act"),
        ModelSpec("baseline_cbam", "Baseline CNN + CBAM", "baseline", "baseline", "baseline.ipynb (USE_CBAM=True)",
                  16, 128, cam_layer="bottleneck.act", cbam=True),
        ModelSpec("resnet50", "ResNet50", "cnn", "timm", 'torchvision resnet50(weights="IMAGENET1K_V1")', 32, 224,
                  cam_layer="layer4.2", timm_name="resnet50.tv_in1k",
                  paper_weights="torchvision IMAGENET1K_V1", paper_weights_file="resnet50-0676ba61.pth",
                  hf_has_paper_weights=True, timm_kwargs=(("zero_init_last", False),)),
        ModelSpec("resnet101", "ResNet101", "cnn", "timm", 'torchvision resnet101(weights="IMAGENET1K_V1")', 32,
                  224, cam_layer="layer4.2", timm_name="resnet101.tv_in1k",
                  paper_weights="torchvision IMAGENET1K_V1", paper_weights_file="resnet101-63fe2227.pth",
                  hf_has_paper_weights=True, timm_kwargs=(("zero_init_last", False),)),
        ModelSpec("convnext_large", "ConvNeXt Large", "cnn", "timm",
                  'torchvision convnext_large(weights="IMAGENET1K_V1")', 32, 224, cam_layer="stages.3",
                  timm_name="convnext_large",  # the architecture only: no timm tag holds torchvision's weights
                  paper_weights="torchvision IMAGENET1K_V1", paper_weights_file="convnext_large-ea097f82.pth",
                  stochastic_depth=0.5, torchvision_init=True),
        ModelSpec("dinov2_vitb14_reg", "DINOv2 ViT-B/14 (registers)", "vit", "timm",
                  "torch.hub.load('facebookresearch/dinov2', 'dinov2_vitb14_reg')", 14, 224,
                  cam_layer="blocks.11.norm1", timm_name="vit_base_patch14_reg4_dinov2.lvd142m",
                  paper_weights="torch.hub dinov2_vitb14_reg (LVD-142M)",
                  paper_weights_file="dinov2_vitb14_reg4_pretrain.pth", hf_has_paper_weights=True),
    )
}  # fmt: skip
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def get_model_spec(name: str) -> ModelSpec:
    """The registry entry of `name`; a UserError listing the valid names otherwise."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    return MODELS[name]
