"""The decoded images and labels as tensors where training reads them."""

from __future__ import annotations

import numpy as np
import torch


class DeviceData:
    """The uint8 image cache and the labels, on (or as close as possible to) the training device.

    On CUDA the cache goes to GPU memory when it takes under half of what is free, else to pinned host
    memory; labels are kept with NaN replaced by 0 and a mask, so partial labels cost nothing extra.
    """

    def __init__(self, cache: np.ndarray, labels: np.ndarray | None, device: torch.device):
        self.device = device
        host = torch.from_numpy(np.array(cache))  # a writable copy in RAM (the cache file stays read-only)
        on_gpu = device.type == "cuda" and host.numel() < 0.5 * torch.cuda.mem_get_info(device)[0]
        if device.type == "cuda" and not on_gpu:
            host = host.pin_memory()
        self.images = host.to(device) if on_gpu or device.type == "cpu" else host
        self.where = "gpu" if on_gpu else ("pinned host" if device.type == "cuda" else "host")
        if labels is not None:
            lab = torch.from_numpy(np.asarray(labels, np.float32))
            self.mask_host = ~torch.isnan(lab)
            self.labels = torch.nan_to_num(lab, nan=0.0).to(device)
            self.mask = self.mask_host.to(device)
            self.counts_host = self.mask_host.sum(1)

    def images_at(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 on the device (a channels_last view of the NHWC cache)."""
        if self.images.device == self.device:
            x = self.images[idx.to(self.device, non_blocking=True)]
        else:
            x = self.images[idx].pin_memory().to(self.device, non_blocking=True)
        return x.permute(0, 3, 1, 2)

    def labels_at(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels with NaN as 0, mask) of the galaxies at `idx`, on the device."""
        i = idx.to(self.device, non_blocking=True)
        return self.labels[i], self.mask[i]
