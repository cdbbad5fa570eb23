"""timm backbones built as the paper's torchvision / torch.hub networks, with weights read from disk only.

Ng loaded torchvision IMAGENET1K_V1 ResNets and ConvNeXt Large and torch.hub `dinov2_vitb14_reg`. The timm
modules of galaxylib/models/registry.py compute the same functions (tests/test_fidelity.py: identical outputs
from the same weights); the paper's own weight files load into them (models/weights.py converts torchvision's
ConvNeXt layout). No machine of this project can download anything, so weights come from the paper's file in
the torch hub cache, a populated Hugging Face cache (where a timm tag holds the same weights) or a file the user
names. We read the file ourselves and hand timm the tensors, so timm never reaches for the network: a missing
file is one clear error, never a hang and never a silent fall-back to random weights.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from galaxylib.errors import PretrainedWeightsMissing, UserError
from galaxylib.models.registry import ModelSpec
from galaxylib.models.weights import (
    init_convnext_like_torchvision_,
    read_state_dict,
    set_stochastic_depth_,
    to_timm_layout,
)

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's hf-hub loader looks for


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, resolved from the environment now (huggingface_hub reads it at import)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def _hf_repo_dir(repo_id: str, cache: Path) -> Path:
    return cache / f"models--{repo_id.replace('/', '--')}"


def find_cached_weights(timm_name: str) -> Path | None:
    """The cached weight file for a tagged timm name, or None: the HF hub cache, then timm's torch.hub cache.

    Looks only at the disk. A snapshot copied in without `refs/main` is found too.
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo_id, cache = cfg.hf_hub_id.split("@")[0], hf_hub_cache()
        if repo_id.endswith("/"):  # timm's short form 'timm/' means 'timm/<name>'
            repo_id += timm_name
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_WEIGHT_FILES
        for filename in files:
            hit = try_to_load_from_cache(repo_id, filename, cache_dir=cache)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
        for filename in files:
            snapshots = sorted((_hf_repo_dir(repo_id, cache) / "snapshots").glob(f"*/{filename}"))
            if snapshots and snapshots[-1].is_file():
                return snapshots[-1]
    if cfg.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if cached.is_file():
            return cached
    return None


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Belt and braces: even if some code path reached the hub while loading, it may only read the cache."""
    import huggingface_hub.constants as hf_constants

    saved_env, saved_flag = os.environ.get("HF_HUB_OFFLINE"), hf_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], hf_constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = saved_flag
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def torch_hub_checkpoints() -> Path:
    """Where torchvision and torch.hub keep downloaded weights ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_paper_weights(spec: ModelSpec) -> Path | None:
    """The paper's weights for `spec` on this disk, or None. Looks only at the disk, in this order:

    1. the paper's own file (e.g. convnext_large-ea097f82.pth) in $TORCH_HOME/hub/checkpoints/, where
       torchvision's `weights="IMAGENET1K_V1"` and torch.hub put it;
    2. where the timm tag holds exactly those weights (ResNets, DINOv2), its Hugging Face cache.
    """
    if spec.paper_weights_file:
        local = torch_hub_checkpoints() / spec.paper_weights_file
        if local.is_file():
            return local
    if spec.hf_has_paper_weights:
        return find_cached_weights(spec.timm_name)
    return None


def missing_weights_message(spec: ModelSpec) -> str:
    """One line: which file the paper used, where it is looked for, and how to provide it."""
    where = torch_hub_checkpoints() / spec.paper_weights_file
    fetch = {
        "cnn": f"python -c \"import torchvision; torchvision.models.{spec.name}(weights='IMAGENET1K_V1')\"",
        "vit": "python -c \"import torch; torch.hub.load('facebookresearch/dinov2', 'dinov2_vitb14_reg')\"",
    }.get(spec.family, "")
    alternative = ""
    if spec.hf_has_paper_weights:
        repo = f"timm/{spec.timm_name}"
        alternative = (f"; or the Hugging Face repo {repo}, which holds the same weights, in "
                       f"{_hf_repo_dir(repo, hf_hub_cache())}")
    return (f"pretrained weights for '{spec.name}' are not on this machine and cannot be downloaded: the paper "
            f"used {spec.paper_weights} ({spec.paper_weights_file}); put that file at {where} (where `{fetch}` "
            f"saves it on a machine with internet){alternative}; or pass --weights-file PATH")


def create_backbone(spec: ModelSpec, *, num_classes: int, pretrained: bool = False,
                    weights_file: str | Path | None = None, **kwargs) -> tuple[nn.Module, Path | None]:
    """The timm module of `spec` as the paper's code built it; returns (module, the weights file used or None).

    Weights come only from disk (`weights_file`, else `find_paper_weights`); never downloaded, never silently
    replaced by random ones. A torchvision, timm or DINOv2-hub state dict is accepted: torchvision's ConvNeXt
    layout is converted, and timm's own checkpoint filter converts DINOv2's and resamples its position grid.
    Classifier weights are dropped when `num_classes` differs from the file's. Stochastic depth and, from
    scratch, the initialisation follow torchvision (see ModelSpec).
    """
    import timm

    if weights_file is not None:
        weights_file = Path(weights_file).expanduser()
        if not weights_file.is_file():
            raise PretrainedWeightsMissing(f"weights file for '{spec.name}' not found: {weights_file}")
    elif pretrained:
        weights_file = find_paper_weights(spec)
        if weights_file is None:
            raise PretrainedWeightsMissing(missing_weights_message(spec))
    kwargs = {**dict(spec.timm_kwargs), **kwargs, "num_classes": num_classes}
    if weights_file is None:
        model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        if spec.torchvision_init:
            init_convnext_like_torchvision_(model)
    else:
        try:
            state_dict = to_timm_layout(read_state_dict(weights_file), spec.name)
            with _offline():
                model = timm.create_model(spec.timm_name, pretrained=True,
                                          pretrained_cfg_overlay=dict(state_dict=state_dict), **kwargs)
        except Exception as err:  # a corrupt file or one for another architecture: say which file, briefly
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise UserError(f"cannot load weights file {weights_file} into '{spec.name}' (timm "
                            f"{spec.timm_name}): {first_line}") from err  # fmt: skip
    if spec.stochastic_depth:  # torchvision's exact per-block rates (timm's drop_path_rate rounds in float32)
        set_stochastic_depth_(model, spec.stochastic_depth)
    return model, weights_file


class VitTokensToGrid:
    """reshape_transform for pytorch-grad-cam on ViTs: (B, prefix + h*w, C) tokens -> (B, C, h, w) maps.

    grad-cam's stock transform drops one CLS token and assumes 14x14; DINOv2-reg4 has 5 prefix tokens
    (CLS + 4 registers) and a 16x16 grid at 224 px with patch 14. A class, not a lambda, so it pickles.
    """

    def __init__(self, num_prefix_tokens: int, grid_size: tuple[int, int]):
        self.num_prefix_tokens = num_prefix_tokens
        self.grid_size = tuple(grid_size)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        h, w = self.grid_size
        patches = tokens[:, self.num_prefix_tokens :, :]
        if patches.shape[1] != h * w:
            raise ValueError(f"expected {h}x{w} patch tokens after {self.num_prefix_tokens} prefix tokens, "
                             f"got {patches.shape[1]}")  # fmt: skip
        return patches.reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"VitTokensToGrid(num_prefix_tokens={self.num_prefix_tokens}, grid_size={self.grid_size})"
