"""The paper's baseline CNN and its residual CBAM variant, layer for layer as in Ng's baseline.ipynb.

Four Conv-BN-ReLU-MaxPool blocks with large "same" kernels (17/13/9/7), a 1x1 bottleneck to 96 channels,
then the flattened map goes straight to Linear(., 37) (the head lives in GalaxyModel). At 128 px this is
2,896,709 parameters; with CBAM after each block's ReLU, 2,941,225.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from galaxylib.errors import UserError

# (in channels, out channels, kernel); padding kernel // 2 keeps the size ("same"), as in the paper's code
BLOCKS: tuple[tuple[int, int, int], ...] = ((3, 32, 17), (32, 64, 13), (64, 128, 9), (128, 256, 7))
BOTTLENECK_CHANNELS = 96
DOWNSAMPLE = 2 ** len(BLOCKS)  # four MaxPool(2) -> the input side must be a multiple of 16


class ChannelAttention(nn.Module):
    """CBAM channel map Mc: a shared MLP on the global max- and average-pooled vectors, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.mlp(x.amax(dim=(2, 3))) + self.mlp(x.mean(dim=(2, 3)))
        return torch.sigmoid(scores)[:, :, None, None]


class SpatialAttention(nn.Module):
    """CBAM spatial map Ms: [channel max, channel mean] -> Conv(2->1, k7) -> sigmoid."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Ng's residual CBAM: x + x * Mc * Ms (the original CBAM returns x * Mc * Ms without the skip)."""

    def __init__(self, channels: int, reduction: int = 4, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        refined = x * self.channel(x)
        return x + refined * self.spatial(refined)


def conv_block(c_in: int, c_out: int, kernel: int, cbam: bool) -> nn.Sequential:
    """Conv(stride 1, same padding, bias) -> BN -> ReLU -> [CBAM] -> MaxPool(2)."""
    layers = [
        ("conv", nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)),
        ("bn", nn.BatchNorm2d(c_out)),
        ("act", nn.ReLU()),
    ]
    if cbam:
        layers.append(("attn", CBAM(c_out)))
    layers.append(("pool", nn.MaxPool2d(2)))
    return nn.Sequential(OrderedDict(layers))


def baseline_features(img_size: int = 128, cbam: bool = False) -> tuple[nn.Sequential, int]:
    """The baseline's feature extractor (everything before the Linear) and its flattened output size.

    The flatten size is 96 * (img_size / 16)^2, so the head adapts to the smaller images of quick profiles.
    """
    if img_size <= 0 or img_size % DOWNSAMPLE:
        raise UserError(f"baseline img_size must be a positive multiple of {DOWNSAMPLE}, got {img_size}")
    blocks = [(f"block{i}", conv_block(*spec, cbam=cbam)) for i, spec in enumerate(BLOCKS, start=1)]
    bottleneck = nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(BLOCKS[-1][1], BOTTLENECK_CHANNELS, 1)),
        ("bn", nn.BatchNorm2d(BOTTLENECK_CHANNELS)),
        ("act", nn.ReLU()),
    ]))  # fmt: skip
    features = nn.Sequential(OrderedDict([*blocks, ("bottleneck", bottleneck), ("flatten", nn.Flatten())]))
    return features, BOTTLENECK_CHANNELS * (img_size // DOWNSAMPLE) ** 2
