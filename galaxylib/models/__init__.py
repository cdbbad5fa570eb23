"""The paper's models: the baseline CNN (+ residual CBAM) and four pretrained timm backbones.

    model = build_model("resnet50", img_size=224, pretrained=True)   # weights from the HF cache, offline
    y = model(x)              # (B, 37) in [0, 1]
    z = model.logits(x)       # pre-activation, for AblationCAM on regression outputs
"""

from galaxylib.models.backbones import (
    TIMM_NAMES,
    PretrainedWeightsMissing,
    VitTokensToGrid,
    find_cached_weights,
    hf_hub_cache,
)
from galaxylib.models.baseline import CBAM, baseline_features
from galaxylib.models.factory import HEADS, MODEL_NAMES, build_model, count_parameters
from galaxylib.models.heads import GalaxyModel

__all__ = [
    "CBAM",
    "HEADS",
    "MODEL_NAMES",
    "TIMM_NAMES",
    "GalaxyModel",
    "PretrainedWeightsMissing",
    "VitTokensToGrid",
    "baseline_features",
    "build_model",
    "count_parameters",
    "find_cached_weights",
    "hf_hub_cache",
]
