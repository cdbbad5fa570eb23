"""The paper's models: the baseline CNN (+ residual CBAM) and four pretrained timm backbones, described in
one registry (registry.py) and built by one factory (factory.py).

    model = build_model("resnet50", img_size=224, pretrained=True)   # weights from the HF cache, offline
    y = model(x)              # (B, 37) in [0, 1]
    z = model.logits(x)       # pre-activation, for AblationCAM on regression outputs
"""

from galaxylib.errors import PretrainedWeightsMissing
from galaxylib.models.backbones import VitTokensToGrid, find_cached_weights, find_paper_weights, hf_hub_cache
from galaxylib.models.baseline import CBAM, baseline_features
from galaxylib.models.factory import HEADS, build_model, count_parameters
from galaxylib.models.heads import DecisionTreeNorm, GalaxyModel
from galaxylib.models.registry import MODEL_NAMES, MODELS, ModelSpec, get_model_spec

__all__ = [
    "CBAM",
    "HEADS",
    "MODELS",
    "MODEL_NAMES",
    "DecisionTreeNorm",
    "GalaxyModel",
    "ModelSpec",
    "PretrainedWeightsMissing",
    "VitTokensToGrid",
    "baseline_features",
    "build_model",
    "count_parameters",
    "find_cached_weights",
    "find_paper_weights",
    "get_model_spec",
    "hf_hub_cache",
]
