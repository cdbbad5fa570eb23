"""The paper's models: the baseline CNN (+ residual CBAM) and four pretrained timm backbones, described in
one registry (registry.py, pure data) and built by one factory (factory.py).

    model = build_model("resnet50", img_size=224, pretrained=True)   # the paper's weights file, from disk
    y = model(x)              # (B, 37) in [0, 1]
    z = model.logits(x)       # pre-activation, for AblationCAM on regression outputs

The names below are imported on first use: reading the registry (experiments, `info`, the command line) does
not import torch.
"""

from __future__ import annotations

import importlib

from galaxylib.models.registry import MODEL_NAMES, MODELS, ModelSpec, get_model_spec

_LAZY = {
    "PretrainedWeightsMissing": "galaxylib.errors",
    "VitTokensToGrid": "galaxylib.models.backbones",
    "find_cached_weights": "galaxylib.models.backbones",
    "find_paper_weights": "galaxylib.models.backbones",
    "hf_hub_cache": "galaxylib.models.backbones",
    "CBAM": "galaxylib.models.baseline",
    "baseline_features": "galaxylib.models.baseline",
    "HEADS": "galaxylib.models.factory",
    "build_model": "galaxylib.models.factory",
    "count_parameters": "galaxylib.models.factory",
    "DecisionTreeNorm": "galaxylib.models.heads",
    "GalaxyModel": "galaxylib.models.heads",
}

__all__ = ["MODELS", "MODEL_NAMES", "ModelSpec", "get_model_spec", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
