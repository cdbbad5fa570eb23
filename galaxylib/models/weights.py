"""Weights as the paper's code had them: reading weight files, torchvision's ConvNeXt layout in timm's terms, and
torchvision's training-time regularisation and initialisation for the timm modules galaxylib builds.

ResNet-50/101 state dicts have the same keys in torchvision and timm (no conversion). torchvision's ConvNeXt
(features.*, classifier.*) maps onto timm's (stem.*, stages.*, head.*) by renaming alone, plus one reshape:
torchvision's layer scale (C, 1, 1) is timm's gamma (C,). torchvision's downsample layers, which follow a stage,
are the `downsample` at the start of the next timm stage; its classifier (LayerNorm2d, Flatten, Linear after the
average pool) is timm's head (pool, norm, fc). Verified to give identical outputs (difference 0.0, fp32, eval).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

# torchvision CNBlock.block indices -> timm ConvNeXtBlock submodules (torchvision/models/convnext.py, CNBlock)
_TV_BLOCK_TO_TIMM = {"0": "conv_dw", "2": "norm", "3": "mlp.fc1", "5": "mlp.fc2"}


def unwrap_state_dict(obj: Any) -> dict[str, Tensor]:
    """A plain {key: tensor} dict from what torch.load returned: a state dict, a checkpoint holding one under
    "state_dict" / "model" / "model_state_dict", or a module; a DDP "module." prefix is stripped."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a state dict, got {type(obj).__name__}")
    for key in ("state_dict", "model", "model_state_dict"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    sd = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a .safetensors, .pth or .bin weights file (never executes pickled code)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True, mmap=True))


def is_torchvision_convnext(state_dict: Mapping[str, Tensor]) -> bool:
    """True for torchvision's ConvNeXt key layout (features.*, classifier.*)."""
    return any(k.startswith("features.1.0.block.") for k in state_dict) and any(
        k.startswith("classifier.") for k in state_dict)  # fmt: skip


def convnext_torchvision_key_to_timm(key: str) -> str:
    """One torchvision ConvNeXt key -> its timm name; ValueError for a key with no counterpart.

    torchvision: features.0 = stem (Conv2d, LayerNorm2d); features.(2i+1) = the blocks of stage i;
    features.(2i+2) = the downsample (LayerNorm2d, Conv2d) into stage i+1; classifier = (LayerNorm2d, Flatten,
    Linear). timm: stem.(0, 1); stages.i.downsample.(0, 1) at the start of stage i >= 1; stages.i.blocks.j;
    head.norm, head.fc.
    """
    m = re.fullmatch(r"features\.0\.([01])\.(weight|bias)", key)
    if m:
        return f"stem.{m[1]}.{m[2]}"
    m = re.fullmatch(r"features\.(\d+)\.(\d+)\.(.+)", key)
    if m:
        index, j, rest = int(m[1]), int(m[2]), m[3]
        if index % 2 == 1:  # a stage of blocks
            stage = (index - 1) // 2
            if rest == "layer_scale":
                return f"stages.{stage}.blocks.{j}.gamma"
            b = re.fullmatch(r"block\.(\d+)\.(weight|bias)", rest)
            if b and b[1] in _TV_BLOCK_TO_TIMM:
                return f"stages.{stage}.blocks.{j}.{_TV_BLOCK_TO_TIMM[b[1]]}.{b[2]}"
        elif index >= 2 and j in (0, 1) and rest in ("weight", "bias"):  # the downsample into stage index/2
            return f"stages.{index // 2}.downsample.{j}.{rest}"
    m = re.fullmatch(r"classifier\.([02])\.(weight|bias)", key)
    if m:
        return f"head.{'norm' if m[1] == '0' else 'fc'}.{m[2]}"
    raise ValueError(f"not a torchvision ConvNeXt key: {key!r}")


def convert_torchvision_convnext(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A torchvision ConvNeXt state dict with timm's keys: tensors unchanged except the layer-scale reshape.

    Every key must map (ValueError otherwise): nothing is dropped silently.
    """
    return {convnext_torchvision_key_to_timm(k): (v.reshape(-1) if k.endswith("layer_scale") else v)
            for k, v in state_dict.items()}  # fmt: skip


def to_timm_layout(state_dict: Mapping[str, Tensor], model_name: str) -> dict[str, Tensor]:
    """The state dict in the key layout timm's loader expects for `model_name` (a registry name).

    torchvision ConvNeXt files are converted; everything else (ResNets: shared keys; timm files; DINOv2 hub
    files, which timm's own checkpoint filter converts) passes unchanged.
    """
    sd = dict(state_dict)
    if model_name.startswith("convnext") and is_torchvision_convnext(sd):
        return convert_torchvision_convnext(sd)
    return sd


def set_stochastic_depth_(model: nn.Module, rate: float) -> list[float]:
    """torchvision's per-block stochastic-depth rates on a timm ConvNeXt: rate * i / (blocks - 1), in float64.

    timm's drop_path_rate gives the same linear rule in float32 (differences ~1e-8); this makes them exact.
    timm's DropPath is the same op as torchvision's StochasticDepth(mode="row"): one keep/drop draw per sample,
    kept samples scaled by 1 / (1 - p), identity in eval mode. Returns the rates.
    """
    from timm.layers import DropPath
    from timm.models.convnext import ConvNeXtBlock

    blocks = [m for m in model.modules() if isinstance(m, ConvNeXtBlock)]
    rates = [rate * i / (len(blocks) - 1.0) for i in range(len(blocks))]
    for block, p in zip(blocks, rates, strict=True):
        block.drop_path = DropPath(p) if p > 0 else nn.Identity()
    return rates


@torch.no_grad()
def init_convnext_like_torchvision_(model: nn.Module, layer_scale: float = 1e-6) -> nn.Module:
    """Re-initialise a timm ConvNeXt as torchvision's ConvNeXt.__init__ does (for training from scratch).

    Conv and Linear weights trunc_normal_(std=0.02), biases 0, norms 1 / 0, layer scale 1e-6. timm's own init
    has the same distribution but its inverse-CDF sampler leaves a few weights at exactly -2.0.
    """
    from timm.models.convnext import ConvNeXtBlock

    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        if isinstance(m, ConvNeXtBlock) and m.gamma is not None:
            m.gamma.fill_(layer_scale)
    return model
