"""Which device and arithmetic a run uses, and how to name the machine in a results table."""

from __future__ import annotations

import os
import platform

import torch

from galaxylib.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def select_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch device for `name` (auto | cpu | cuda | cuda:N).

    Args:
        name: what the user asked for; auto means CUDA when PyTorch sees a GPU, else the CPU.
        local_rank: under torchrun, this process's GPU (overrides any index in `name`).

    Returns:
        The device.

    Raises:
        UserError: CUDA asked for but not available, or an unknown name.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for, but PyTorch sees no CUDA GPU (use --device cpu)")
        index = local_rank if local_rank is not None else (torch.device(name).index or 0)
        return torch.device("cuda", index)
    if name != "cpu":
        raise UserError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device("cpu")


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 by default on CUDA; None (plain fp32) on the CPU and whenever fp32 is asked."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise UserError(f"unknown precision {precision!r}: use auto, fp32 or bf16")
    return torch.bfloat16 if precision == "bf16" else None


def device_name(device: torch.device | str = "auto") -> str:
    """'NVIDIA H100 80GB HBM3' or 'x86_64 (2 cores)': how results tables name the machine."""
    device = select_device(device) if isinstance(device, str) else device
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (platform.processor() or platform.machine()) + f" ({os.cpu_count()} cores)"
