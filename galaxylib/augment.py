"""Image augmentation: the paper's transforms as one batched affine resample on tensors.

The paper (Ng 2024, torchvision v1 on PIL images) trains on
    RandomRotation(360) of the full 424-px frame (NEAREST, no expand, fill 0)
    -> centre crop of a random integer side z -> Resize(out) (bilinear, antialiased)
    -> RandomHorizontalFlip -> ToTensor -> Normalize(0.5, 0.5)
and evaluates on CenterCrop(eval_crop) -> Resize(out), with 8 rotations x {hflip, identity} as test-time
augmentation. Done per image with PIL in DataLoader workers this is what made the paper slow (see
docs/performance.md), so here the whole chain is ONE `affine_grid` + `grid_sample` per batch, on whatever
device the batch lives on, from a decode-once uint8 cache.

Geometry. The cache holds the centre `source_crop` px of the 424-px frame, stored at S px (S may be smaller).
Every step of the paper's chain is affine in pixel-centre coordinates (PIL and torchvision both sample at
pixel centres, i.e. align_corners=False), so in frame pixels measured from the frame centre the output pixel
at normalised position (u, v) reads the frame at

    q = R(angle) @ (z/2 * (f*u, v) + (d, d)),   R = [[cos, -sin], [sin, cos]],  f = -1 if flipped else 1

where d in {0, +-0.5} is the half-pixel offset of torchvision's centre crop (round-half-even of (424-z)/2),
and R is PIL's inverse rotation matrix (positive angle = counter-clockwise on screen). Dividing by source_crop/2
gives grid_sample's normalised input coordinates, so theta = [[z/sc * R diag(f, 1)], 2/sc * R (d, d)].
We sample BEFORE normalising, so zero padding becomes -1 after Normalize, exactly the paper's fill 0.

Differences from the paper, by design: bilinear instead of NEAREST for the rotation (rotation and resize are
fused into one resample, so there is no intermediate image to sample NEAREST from), no uint8 rounding between
steps, and, when the cache is smaller than the frame, the cache's own downscale blur. With source_crop < 424,
rotated corners that the paper fills with real pixels from outside the cached square become black (0): that
happens for crops z > source_crop / sqrt(2) (the paper itself gets black corners for z > 424 / sqrt(2) = 300).
For galaxy images that border region is mostly sky.

Antialiasing. grid_sample does none, so shrinking by more than ~2x aliases. The shrink differs per sample (z
is random) and host syncs are not allowed, so instead of an avg-pool prefilter by one batch-wide factor we
supersample in OUTPUT space, which follows each sample's own zoom: sample a k-times finer grid (k static,
chosen so that taps are <= ~1.25 cache px apart at the largest possible shrink) reaching half an output pixel
past each edge, then combine the taps with a separable per-sample filter: PIL's antialiased kernel, a tent of
radius one OUTPUT px (radius = the shrink factor in input px), blended towards the centre tap(s) as the shrink
falls from 2x to 1x, where PIL is plain bilinear. It costs about k^2 times the plain resample, so by default
(`antialias=None`) it is on only when the largest possible shrink exceeds 2 cache px per output px
(ANTIALIAS_THRESHOLD); the recommended caches (e.g. the centre 352 px stored at 256 for 128-px models) stay
below that and take the single plain resample.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from galaxylib.layout import FRAME

MEAN = STD = 0.5
ANTIALIAS_THRESHOLD = 2.0  # auto-antialias when the largest shrink exceeds this many cache px per output px
View = tuple[float, bool]  # (angle in degrees, counter-clockwise; horizontal flip)


def _check_geometry(source_crop: int, out_size: int) -> None:
    if not 0 < source_crop <= FRAME or (FRAME - source_crop) % 2:
        # an odd margin would leave the cache's centre half a pixel off the frame's centre
        raise ValueError(f"source_crop must be in (0, {FRAME}] with an even margin, got {source_crop}")
    if out_size <= 0:
        raise ValueError(f"out_size must be positive, got {out_size}")


# ----------------------------------------------------------------------------------------------------------
# the fast path: one batched affine resample


def _theta(crop: Tensor, angle_deg: Tensor, hflip: Tensor, source_crop: int, flip_first: bool) -> Tensor:
    """(B, 2, 3) affine_grid matrices mapping output to cache coordinates (see the module docstring).

    flip_first=False: the training order (rotate, crop, resize, flip). flip_first=True: the TTA order (rotate,
    flip the full frame, crop), which differs only by the sign of the crop's half-pixel offset."""
    crop, angle = crop.float(), torch.deg2rad(angle_deg.float())
    f = 1.0 - 2.0 * hflip.float()
    d = torch.round((FRAME - crop) / 2) + crop / 2 - FRAME / 2  # torchvision's crop offset: 0 or +-0.5
    dx = d * f if flip_first else d
    c, s = torch.cos(angle), torch.sin(angle)
    k = crop / source_crop
    t = 2.0 / source_crop
    row0 = torch.stack([k * c * f, -k * s, t * (c * dx - s * d)], dim=-1)
    row1 = torch.stack([k * s * f, k * c, t * (s * dx + c * d)], dim=-1)
    return torch.stack([row0, row1], dim=1)


def _supersample_taps(k: int) -> tuple[list[float], list[float]]:
    """Weights over the taps of one output pixel on the k-times finer grid (at (m - ext + 1/2)/k - 1/2 output
    px, ext = k // 2 extra sub-samples per side): PIL's tent (radius one output px) and the centre tap(s)."""
    ext = k // 2
    offsets = [(m - ext + 0.5) / k - 0.5 for m in range(k + 2 * ext)]  # all strictly inside (-1, 1)
    tent = [1.0 - abs(o) for o in offsets]
    tent = [w / sum(tent) for w in tent]
    near = [float(abs(o) <= 0.5 / k + 1e-9) for o in offsets]
    centre = [w / sum(near) for w in near]
    return tent, centre


def _antialias_factor(source_crop: int, size: int, out_size: int, max_crop: float | None,
                      antialias: bool | None) -> int:
    """Static supersampling factor k (1 = none) from the largest shrink any sample can see: taps no more than
    ~1.25 cache px apart, so bilinear interpolation between them does not alias again."""
    max_scale = (max_crop if max_crop is not None else source_crop) / source_crop * size / out_size
    if antialias is None:
        antialias = max_scale > ANTIALIAS_THRESHOLD
    if not antialias:
        return 1
    return max(2, math.ceil(max_scale / 1.25))


def _filter_supersampled(y: Tensor, scale: Tensor, k: int, out_size: int) -> Tensor:
    """Reduce the supersampled batch to out px with a per-sample separable filter.

    For any shrink (scale >= 1 cache px per output px) PIL's antialiased bilinear kernel is a tent one OUTPUT
    px in radius; at scale <= 1 it is plain bilinear, which each tap already is. The taps add bilinear's own
    blur on top of the tent, so blend from the centre taps (scale <= 1) to the full tent (scale >= 2)."""
    tent, centre = _supersample_taps(k)
    alpha = (scale - 1.0).clamp(0.0, 1.0).view(-1, 1, 1, 1)
    weights = [alpha * wt + (1 - alpha) * wc for wt, wc in zip(tent, centre, strict=True)]
    span = k * out_size
    y = sum(w * y[..., m:m + span:k] for m, w in enumerate(weights))  # along W
    return sum(w * y[:, :, m:m + span:k] for m, w in enumerate(weights))  # along H


def _resample(images: Tensor, *, source_crop: int, out_size: int, crop: Tensor, angle_deg: Tensor,
              hflip: Tensor, flip_first: bool = False, antialias: bool | None = None,
              max_crop: float | None = None) -> Tensor:
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"expected a (B, 3, S, S) batch, got {tuple(images.shape)}")
    _check_geometry(source_crop, out_size)
    b, size = images.shape[0], images.shape[-1]
    x = images.float()
    theta = _theta(crop, angle_deg, hflip, source_crop, flip_first).to(x.device)
    k = _antialias_factor(source_crop, size, out_size, max_crop, antialias)
    if k == 1:
        grid = F.affine_grid(theta, [b, 3, out_size, out_size], align_corners=False)
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    else:
        # a k-times finer grid, ext sub-samples wider on each side: same centre, extent x n / (k out)
        n = k * out_size + 2 * (k // 2)
        theta = torch.cat([theta[:, :, :2] * (n / (k * out_size)), theta[:, :, 2:]], dim=2)
        grid = F.affine_grid(theta, [b, 3, n, n], align_corners=False)
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        scale = crop.float().to(x.device) / source_crop * size / out_size
        y = _filter_supersampled(y, scale, k, out_size)
    return y.mul_(1 / (255 * STD)).sub_(MEAN / STD)


def affine_resample(images: Tensor, *, source_crop: int, out_size: int, crop: Tensor, angle_deg: Tensor,
                    hflip: Tensor, antialias: bool | None = None, max_crop: float | None = None) -> Tensor:
    """The paper's rotate -> centre crop -> resize -> hflip -> normalise, batched, as one affine resample.

    images: (B, 3, S, S) uint8 or float in [0, 255] (any memory format) covering the centre `source_crop` px
    of the 424-px frame. crop: (B,) crop side in original-frame px; angle_deg: (B,) counter-clockwise;
    hflip: (B,) bool. All on the images' device: nothing here syncs with the host. Returns float32
    (B, 3, out_size, out_size) in [-1, 1]. antialias: None = only if a shrink > 2x is possible, judged from
    max_crop (default source_crop); True/False forces it. Antialiasing costs ~k^2 times the plain resample
    (k = 2 up to a 2.5x shrink: ~4x; measured on an H100: 307k -> 77k img/s at 256 -> 128 px, batch 256)."""
    return _resample(images, source_crop=source_crop, out_size=out_size, crop=crop, angle_deg=angle_deg,
                     hflip=hflip, antialias=antialias, max_crop=max_crop)


class TrainAugment:
    """The paper's random training transform on a batch: angle ~ U[0, 360) (same as U(-360, 360) for a
    rotation), crop side ~ integers in [low, high), hflip with p=0.5.

    `sample` draws the parameters from a CPU generator (B numbers per batch, cheap and reproducible whatever
    the device, and drawn for the global batch under data parallelism); `apply` resamples a batch with them
    on the images' device without blocking."""

    def __init__(self, *, out_size: int, source_crop: int = FRAME, crop_range: tuple[int, int] = (184, 352),
                 antialias: bool | None = None):
        _check_geometry(source_crop, out_size)
        low, high = crop_range
        if not 0 < low < high:
            raise ValueError(f"crop_range must be (low, high) with 0 < low < high, got {crop_range}")
        self.out_size, self.source_crop, self.crop_range = out_size, source_crop, (low, high)
        self.antialias = antialias

    def sample(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Parameters for n images: crop (float px), angle_deg, hflip (bool), each (n,) on the CPU."""
        low, high = self.crop_range
        return {
            "crop": torch.randint(low, high, (n,), generator=generator).float(),
            "angle_deg": torch.rand(n, generator=generator) * 360.0,
            "hflip": torch.rand(n, generator=generator) < 0.5,
        }

    def apply(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        """The augmented batch (B, 3, out, out) in [-1, 1] for cached images (B, 3, S, S) and `sample` output."""
        params = {k: v.to(images.device, non_blocking=True) for k, v in params.items()}
        return affine_resample(images, source_crop=self.source_crop, out_size=self.out_size,
                               antialias=self.antialias, max_crop=self.crop_range[1] - 1, **params)


def _constant_params(images: Tensor, crop: float, angle: float, hflip: bool) -> dict[str, Tensor]:
    b, dev = images.shape[0], images.device
    return {
        "crop": torch.full((b,), float(crop), device=dev),
        "angle_deg": torch.full((b,), float(angle), device=dev),
        "hflip": torch.full((b,), bool(hflip), device=dev),
    }


def eval_transform(images: Tensor, *, source_crop: int, out_size: int, eval_crop: int,
                   antialias: bool | None = None) -> Tensor:
    """The paper's validation transform: centre crop eval_crop px of the frame -> out_size -> normalise."""
    return _resample(images, source_crop=source_crop, out_size=out_size, antialias=antialias,
                     max_crop=eval_crop, **_constant_params(images, eval_crop, 0.0, False))


def tta_params(n_rotations: int = 8, flips: bool = True) -> list[View]:
    """(angle_deg, hflip) per view in the paper's order: product(rotations, [hflip, identity])."""
    angles = [360.0 / n_rotations * k for k in range(n_rotations)]
    return list(itertools.product(angles, [True, False] if flips else [False]))


def views_for(tta: int) -> list[View]:
    """The views of `tta` test-time views: 1 = the plain eval view; 2k = the paper's k rotations x {flip,
    identity} (16 = 8 x 2, the paper's; 64 = its logged baseline run); an odd number > 1 = that many rotations
    without flips."""
    if tta < 1:
        raise ValueError(f"tta must be at least 1, got {tta}")
    if tta == 1:
        return [(0.0, False)]
    return tta_params(tta // 2, True) if tta % 2 == 0 else tta_params(tta, False)


def tta_views(images: Tensor, *, source_crop: int, out_size: int, eval_crop: int,
              views: Sequence[View] | None = None, antialias: bool | None = None) -> Iterator[Tensor]:
    """The paper's test-time views of a batch: rotate the full frame, hflip or not, then the eval transform.

    The one view builder: prediction, the notebooks and the tests all use it. Yields one (B, 3, out, out)
    batch per view (default: the paper's 16, `tta_params()`); average the model's outputs over them. The view
    (0, no flip) is exactly `eval_transform`."""
    for angle, flip in tta_params() if views is None else views:
        yield _resample(images, source_crop=source_crop, out_size=out_size, flip_first=True,
                        antialias=antialias, max_crop=eval_crop,
                        **_constant_params(images, eval_crop, angle, flip))


# ----------------------------------------------------------------------------------------------------------
# the paper's own PIL / torchvision v1 pipeline: the reference for tests and the benchmark's faithful path

_NORMALIZE = transforms.Normalize((MEAN,) * 3, (STD,) * 3)


def _to_normalized(img: Image.Image) -> Tensor:
    return _NORMALIZE(TF.to_tensor(img))


def paper_train_transform(img: Image.Image, *, angle: float, crop: int, out_size: int, hflip: bool) -> Tensor:
    """The paper's training transform with its random draws given explicitly."""
    img = TF.rotate(img, angle, interpolation=InterpolationMode.NEAREST, expand=False, fill=0)
    img = TF.center_crop(img, [crop, crop])
    img = TF.resize(img, out_size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    if hflip:
        img = TF.hflip(img)
    return _to_normalized(img)


def paper_eval_transform(img: Image.Image, *, eval_crop: int, out_size: int) -> Tensor:
    """The paper's eval transform: CenterCrop(eval_crop) -> Resize(out_size) -> ToTensor -> Normalize."""
    img = TF.center_crop(img, [eval_crop, eval_crop])
    img = TF.resize(img, out_size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    return _to_normalized(img)


def paper_tta_transform(img: Image.Image, *, angle: float, hflip: bool, eval_crop: int,
                        out_size: int) -> Tensor:
    """One of the paper's TTA views: rotate the full frame (NEAREST), hflip or not, then eval transform."""
    img = TF.rotate(img, angle, interpolation=InterpolationMode.NEAREST, expand=False)
    if hflip:
        img = TF.hflip(img)
    return paper_eval_transform(img, eval_crop=eval_crop, out_size=out_size)


class PaperTrainTransform:
    """The paper's random training callable, as written: torchvision RandomRotation(360), a crop side from
    numpy default_rng(seed).integers(low, high), Resize, RandomHorizontalFlip, ToTensor, Normalize.

    Like the original, the crop-size RNG lives in the object, so every DataLoader worker gets a copy of the
    same state (identical crop sequences per worker): kept on purpose for the faithful benchmark path."""

    def __init__(self, *, out_size: int, crop_range: tuple[int, int] = (184, 352), seed: int = 1):
        self.crop_range = crop_range
        self.rng = np.random.default_rng(seed=seed)
        self.rotation = transforms.RandomRotation(360)
        self.resize = transforms.Resize(out_size)
        self.flip = transforms.RandomHorizontalFlip()

    def __call__(self, img: Image.Image) -> Tensor:
        img = self.rotation(img)
        crop = int(self.rng.integers(*self.crop_range))
        img = transforms.CenterCrop(crop)(img)
        img = self.flip(self.resize(img))
        return _to_normalized(img)
