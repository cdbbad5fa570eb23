"""Which device and arithmetic a run uses, and how to name the machine in a results table."""

from __future__ import annotations

import os
import platform

import torch

from galaxylib.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "tf32", "bf16")


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


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto -> bf16 on CUDA, fp32 on the CPU; tf32 means fp32 on the CPU (it is a GPU matmul mode)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "tf32" and device.type != "cuda":
        return "fp32"
    return precision


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 (the default on CUDA), or None: no autocast (fp32, tf32, and the CPU's auto)."""
    return torch.bfloat16 if resolve_precision(precision, device) == "bf16" else None


def set_float32_matmul(precision: str, device: torch.device) -> None:
    """The arithmetic of fp32 matrix products and convolutions on CUDA, set for the whole process.

    fp32: PyTorch's defaults, as the paper ran (matmuls in IEEE fp32; cuDNN may use TF32 for convolutions on
    Ampere and later GPUs, which is PyTorch's default too). tf32 and bf16: TF32 for both (bf16 autocast leaves
    some layers in fp32). No effect on the CPU.
    """
    if device.type != "cuda":
        return
    tf32 = resolve_precision(precision, device) in ("tf32", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = tf32  # PyTorch's default: False
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default: True, whatever the precision


def device_name(device: torch.device | str = "auto") -> str:
    """'NVIDIA H100 80GB HBM3' or 'x86_64 (2 cores)': how results tables name the machine."""
    device = select_device(device) if isinstance(device, str) else device
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (platform.processor() or platform.machine()) + f" ({os.cpu_count()} cores)"
