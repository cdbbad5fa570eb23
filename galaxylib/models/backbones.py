"""timm backbones that carry the paper's pretrained weights, and offline-only weight loading.

Ng loaded torchvision IMAGENET1K_V1 ResNets/ConvNeXt and torch.hub `dinov2_vitb14_reg`; the timm names in
galaxylib/models/registry.py say which timm weights stand for them. No machine of this project can download
anything, so pretrained weights come either from a Hugging Face cache that is already populated or from a file
the user names. We find the file ourselves
and hand timm a path, so timm never reaches for the network: a missing file is one clear error, never a hang
and never a silent fall-back to random weights.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from galaxylib.errors import PretrainedWeightsMissing, UserError

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


def hf_repo_id(timm_name: str) -> str:
    return f"timm/{timm_name}"


def missing_weights_message(name: str, timm_name: str) -> str:
    """One line: which weights, where they would be looked for, and how to provide them."""
    repo = hf_repo_id(timm_name)
    return (
        f"pretrained weights for '{name}' (timm {timm_name}) are not on this machine and cannot be "
        f"downloaded: put the Hugging Face repo {repo} ({' or '.join(HF_WEIGHT_FILES)}) into the cache at "
        f"{_hf_repo_dir(repo, hf_hub_cache())} (e.g. `hf download {repo}` where there is internet, then copy "
        f"that folder), or pass --weights-file PATH (.safetensors or .pth), or train without pretrained "
        f"weights"
    )


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


def create_timm_model(
    timm_name: str,
    *,
    num_classes: int,
    pretrained: bool = False,
    weights_file: str | Path | None = None,
    name: str | None = None,
    **kwargs,
) -> tuple[nn.Module, Path | None]:
    """Create a timm model, with weights only from disk; returns (model, the weight file used or None).

    `weights_file` implies pretrained. It goes through timm's own filter (e.g. DINOv2's pos_embed resampling
    from 37x37 to the model's grid, or fbaipublicfiles' key names), and classifier weights are dropped when
    `num_classes` differs from the checkpoint's, as in `timm.create_model(pretrained=True)`.
    """
    import timm

    name = name or timm_name
    if weights_file is not None:
        weights_file = Path(weights_file).expanduser()
        if not weights_file.is_file():
            raise PretrainedWeightsMissing(f"weights file for '{name}' (timm {timm_name}) not found: "
                                           f"{weights_file}")  # fmt: skip
    elif pretrained:
        weights_file = find_cached_weights(timm_name)
        if weights_file is None:
            raise PretrainedWeightsMissing(missing_weights_message(name, timm_name))
    if weights_file is None:
        return timm.create_model(timm_name, pretrained=False, num_classes=num_classes, **kwargs), None
    try:
        with _offline():
            model = timm.create_model(
                timm_name,
                pretrained=True,
                pretrained_cfg_overlay=dict(file=str(weights_file)),
                num_classes=num_classes,
                **kwargs,
            )
    except Exception as err:  # a corrupt file or one for another architecture: say which file, briefly
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UserError(f"cannot load weights file {weights_file} into '{name}' (timm {timm_name}): "
                        f"{first_line}") from err  # fmt: skip
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
