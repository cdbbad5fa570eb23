"""Data parallelism under torchrun: which rank this process is, and the few collective steps training needs.

Single-process runs see a `Dist` of world size 1, and every helper here is then a no-op.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum `t` over ranks in place (and return it)."""
        if self.enabled:
            dist.all_reduce(t)
        return t

    def rank_slice(self, n: int) -> slice:
        """This rank's part of a global batch of n: the remainder goes to the lowest ranks, one each."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    @torch.no_grad()
    def average_buffers(self, model: torch.nn.Module) -> None:
        """Batch-norm running statistics are updated on each rank's own images: average them across ranks, so
        every rank validates, and rank 0 saves, the same model."""
        if not self.enabled:
            return
        for buf in model.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf)
                buf /= self.world_size


def init_distributed(device: str) -> Dist:
    """Join the torchrun process group when launched by torchrun (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        # leave the group before the interpreter tears down: a group still alive at exit can abort the process
        # ("terminate called without an active exception") after all the work is done
        atexit.register(_leave_group)
    return Dist(rank, world, local)


def _leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
