"""The fast batched augmentation against the paper's own PIL / torchvision pipeline, on real Kaggle images."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from galaxylib.augment import (
    PaperTrainTransform,
    TrainAugment,
    affine_resample,
    eval_transform,
    paper_eval_transform,
    paper_train_transform,
    paper_tta_transform,
    tta_params,
    tta_views,
    views_for,
)
from galaxylib.layout import FRAME

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gz_sample" / "images_training_rev1"
ANGLES, FLIPS = (0.0, 30.0, 90.0, 200.0), (False, True)
TOL_IMAGE, TOL_MEAN = 0.03, 0.015  # mean |difference| of normalised images: per image, and over a batch


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    paths = sorted(SAMPLE.glob("*.jpg"))[:8]
    if len(paths) < 8:
        pytest.skip(f"real sample images not found under {SAMPLE}")
    out = []
    for p in paths:
        with Image.open(p) as im:
            im.load()
            out.append(im)
    return out


def make_cache(images: list[Image.Image], source_crop: int, size: int) -> torch.Tensor:
    """What the decode-once cache holds: the centre source_crop px, stored at size px (PIL bilinear)."""
    o = (FRAME - source_crop) // 2
    tiles = []
    for im in images:
        tile = im.crop((o, o, o + source_crop, o + source_crop))
        if size != source_crop:
            tile = tile.resize((size, size), Image.BILINEAR)
        tiles.append(torch.from_numpy(np.array(tile)).permute(2, 0, 1))
    return torch.stack(tiles)


def full(n: int, value, dtype=torch.float32) -> torch.Tensor:
    return torch.full((n,), value, dtype=dtype)


def mad(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().flatten(1).mean(1)


@pytest.mark.parametrize(
    "source_crop,size,out_size,crops",
    [
        (424, 256, 128, (184, 256, 351)),  # baseline, cache shrunk below the frame
        (424, 424, 224, (128, 224, 287)),  # foundation models, full-resolution cache
        (424, 424, 128, (184, 351)),  # shrinks up to 2.7x: the antialiased path
        (352, 256, 128, (184, 256)),  # a cache narrower than the frame
    ],
)
def test_train_matches_paper(images, source_crop, size, out_size, crops):
    cache = make_cache(images, source_crop, size)
    params = list(itertools.product(ANGLES, FLIPS))
    n = len(images)
    for shift, crop in enumerate(crops):  # each batch mixes all (angle, flip) pairs over its 8 images
        angle, flip = zip(*[params[(i + shift) % len(params)] for i in range(n)], strict=True)
        fast = affine_resample(cache, source_crop=source_crop, out_size=out_size, crop=full(n, crop),
                               angle_deg=torch.tensor(angle), hflip=torch.tensor(flip))
        ref = torch.stack([paper_train_transform(im, angle=a, crop=crop, out_size=out_size, hflip=f)
                           for im, a, f in zip(images, angle, flip, strict=True)])
        err = mad(fast, ref)
        assert err.max() < TOL_IMAGE, (crop, angle, flip, err)
        assert err.mean() < TOL_MEAN, (crop, angle, flip, err)


def test_comparison_detects_wrong_geometry(images):
    """The tolerance above is tight enough to catch a reversed rotation, a missing flip or a wrong crop."""
    cache, n = make_cache(images, FRAME, FRAME), len(images)
    ref = torch.stack([paper_train_transform(im, angle=30, crop=256, out_size=128, hflip=False) for im in images])

    def fast(angle, crop, flip):
        return affine_resample(cache, source_crop=FRAME, out_size=128, crop=full(n, crop),
                               angle_deg=full(n, angle), hflip=full(n, flip, torch.bool))

    assert mad(fast(30, 256, False), ref).mean() < TOL_MEAN
    for wrong in (fast(-30, 256, False), fast(30, 256, True), fast(30, 232, False)):
        assert mad(wrong, ref).mean() > 2 * TOL_MEAN


@pytest.mark.parametrize("crop", [185, 187])
def test_odd_crop_half_pixel_offset(images, crop):
    """torchvision's centre crop of an odd margin sits half a pixel off centre (round half to even)."""
    cache, n = make_cache(images, FRAME, FRAME), len(images)
    fast = affine_resample(cache, source_crop=FRAME, out_size=224, crop=full(n, crop), angle_deg=full(n, 0.0),
                           hflip=full(n, False, torch.bool))
    ref = torch.stack([paper_train_transform(im, angle=0, crop=crop, out_size=224, hflip=False) for im in images])
    assert mad(fast, ref).max() < 0.005  # a half-pixel shift gives ~0.01


@pytest.mark.parametrize("source_crop,size,out_size,eval_crop", [(424, 256, 128, 256), (424, 424, 224, 224),
                                                                  (352, 256, 128, 256)])
def test_eval_matches_paper(images, source_crop, size, out_size, eval_crop):
    fast = eval_transform(make_cache(images, source_crop, size), source_crop=source_crop, out_size=out_size,
                          eval_crop=eval_crop)
    ref = torch.stack([paper_eval_transform(im, eval_crop=eval_crop, out_size=out_size) for im in images])
    assert fast.shape == ref.shape
    assert mad(fast, ref).max() < TOL_IMAGE


def test_tta_params_order():
    params = tta_params()
    assert len(params) == 16
    assert params[:4] == [(0.0, True), (0.0, False), (45.0, True), (45.0, False)]
    assert params == list(itertools.product([45.0 * k for k in range(8)], [True, False]))
    assert tta_params(4, flips=False) == [(0.0, False), (90.0, False), (180.0, False), (270.0, False)]
    assert len(tta_params(32)) == 64
    assert views_for(16) == tta_params() and views_for(1) == [(0.0, False)]
    assert views_for(64) == tta_params(32) and views_for(3) == tta_params(3, flips=False)
    with pytest.raises(ValueError, match="at least 1"):
        views_for(0)


def test_tta_views_match_paper(images):
    cache = make_cache(images[:4], FRAME, 256)
    views = list(tta_views(cache, source_crop=FRAME, out_size=128, eval_crop=256))
    assert len(views) == 16
    for (angle, flip), view in zip(tta_params(), views, strict=True):
        ref = torch.stack([paper_tta_transform(im, angle=angle, hflip=flip, eval_crop=256, out_size=128)
                           for im in images[:4]])
        assert mad(view, ref).max() < TOL_IMAGE, (angle, flip)
    # the unrotated, unflipped view is exactly the eval transform
    plain = eval_transform(cache, source_crop=FRAME, out_size=128, eval_crop=256)
    torch.testing.assert_close(views[1], plain, rtol=0, atol=0)
    assert len(list(tta_views(cache[:2], source_crop=FRAME, out_size=64, eval_crop=256,
                              views=tta_params(4, flips=False)))) == 4


def test_tta_rotation_equivariance(images):
    """Rotating the image by 90 degrees (exact on a square grid) is the same as the 90-degree view."""
    cache = make_cache(images[:2], FRAME, 256)
    turned = torch.rot90(cache, 1, dims=(-2, -1))  # counter-clockwise, like PIL's positive angles
    views = list(tta_views(cache, source_crop=FRAME, out_size=96, eval_crop=256, views=tta_params(4)))
    views_turned = list(tta_views(turned, source_crop=FRAME, out_size=96, eval_crop=256, views=tta_params(4)))
    for k in range(3):  # view (k+1)*90 of the image == view k*90 of the turned image, flipped and not
        for flip in range(2):
            torch.testing.assert_close(views[2 * (k + 1) + flip], views_turned[2 * k + flip], rtol=0, atol=1e-4)
    assert (views[2] - views[0]).abs().max() > 0.5  # and the views do differ


def test_train_augment_sampling():
    aug = TrainAugment(out_size=128, crop_range=(184, 352))
    p = aug.sample(20000, torch.Generator().manual_seed(0))
    crop, angle, hflip = p["crop"], p["angle_deg"], p["hflip"]
    assert crop.shape == angle.shape == hflip.shape == (20000,) and hflip.dtype == torch.bool
    assert torch.equal(crop, crop.round()) and crop.min() == 184 and crop.max() == 351
    assert angle.min() >= 0 and angle.max() < 360
    quadrants = torch.bincount((angle // 90).long(), minlength=4) / len(angle)
    assert torch.allclose(quadrants, torch.full((4,), 0.25), atol=0.02)
    assert abs(hflip.float().mean() - 0.5) < 0.02
    assert abs(crop.float().mean() - (184 + 351) / 2) < 2
    again = aug.sample(20000, torch.Generator().manual_seed(0))
    other = aug.sample(20000, torch.Generator().manual_seed(1))
    assert all(torch.equal(p[k], again[k]) for k in p)
    assert not torch.equal(p["angle_deg"], other["angle_deg"])


def test_train_augment_output(images):
    cache = make_cache(images[:4], 352, 256)
    aug = TrainAugment(out_size=128, source_crop=352, crop_range=(184, 352))
    params = aug.sample(4, torch.Generator().manual_seed(3))
    out = aug.apply(cache, params)
    assert out.shape == (4, 3, 128, 128) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1 and out.max() > 0  # padding is -1, the galaxy is bright
    assert torch.equal(out, aug.apply(cache, aug.sample(4, torch.Generator().manual_seed(3))))
    torch.testing.assert_close(aug.apply(cache.float(), params), out)
    torch.testing.assert_close(aug.apply(cache.contiguous(memory_format=torch.channels_last), params), out)
    # other draws give other views
    assert not torch.equal(out, aug.apply(cache, aug.sample(4, torch.Generator().manual_seed(4))))


def test_padding_is_minus_one():
    """Zero fill outside the frame becomes exactly -1 after Normalize, like the paper's fill 0."""
    white = torch.full((1, 3, 64, 64), 255, dtype=torch.uint8)
    out = affine_resample(white, source_crop=FRAME, out_size=32, crop=full(1, 400.0), angle_deg=full(1, 45.0),
                          hflip=full(1, False, torch.bool))
    assert out[0, :, 0, 0].eq(-1).all() and out[0, :, 16, 16].eq(1).all()


def stripes(period: float) -> np.ndarray:
    """A 424-px image of vertical stripes near the Nyquist frequency: the worst case for aliasing."""
    row = 127.5 + 127.5 * np.cos(2 * np.pi * np.arange(FRAME) / period)
    return np.broadcast_to(row[None, :, None], (FRAME, FRAME, 3)).round().astype(np.uint8).copy()


@pytest.mark.parametrize("period", [2.0, 2.5, 3.0])
def test_antialias_large_shrink(period):
    """A 351-px crop shrunk to 128 px (2.7x): PIL's antialiased resize gives a nearly flat grey; so must we."""
    img = stripes(period)
    cache = torch.from_numpy(img).permute(2, 0, 1)[None]
    ref = paper_train_transform(Image.fromarray(img), angle=0, crop=351, out_size=128, hflip=False)

    def fast(antialias):
        return affine_resample(cache, source_crop=FRAME, out_size=128, crop=full(1, 351.0),
                               angle_deg=full(1, 0.0), hflip=full(1, False, torch.bool), antialias=antialias)[0]

    inner = (slice(None), slice(8, -8), slice(8, -8))
    smooth, aliased = fast(None)[inner], fast(False)[inner]  # None = automatic: on for this shrink
    assert ref[inner].std() < 0.08
    assert smooth.std() < 0.08 and mad(smooth[None], ref[inner][None]) < 0.03
    assert aliased.std() > 0.3  # what the plain resample does: strong moire


@pytest.mark.parametrize("out_size", [64, 50])
def test_antialias_random_noise(out_size):
    """Pixel noise shrunk 4x and 5.1x: like PIL's antialiased resize, and smoother than area averaging."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (2, 3, 256, 256), generator=gen, dtype=torch.uint8)
    small = [Image.fromarray(im.permute(1, 2, 0).numpy()).resize((out_size,) * 2, Image.BILINEAR) for im in noise]
    pil = torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2) / 127.5 - 1
    area = torch.nn.functional.interpolate(noise.float(), size=(out_size, out_size), mode="area") / 127.5 - 1

    def fast(antialias):
        return affine_resample(noise, source_crop=FRAME, out_size=out_size, crop=full(2, 424.0),
                               angle_deg=full(2, 0.0), hflip=full(2, False, torch.bool), antialias=antialias)

    assert mad(fast(None), pil).max() < TOL_MEAN
    assert fast(None).std() < area.std()  # PIL's tent is wider than a box: less noise is left
    assert mad(fast(False), pil).min() > 0.1  # the plain resample keeps aliased noise


def test_geometry_and_arguments():
    assert TrainAugment(out_size=128, source_crop=352).source_crop == 352
    with pytest.raises(ValueError, match="even margin"):
        TrainAugment(out_size=128, source_crop=351)
    with pytest.raises(ValueError, match="crop_range"):
        TrainAugment(out_size=128, crop_range=(200, 200))
    with pytest.raises(ValueError, match="B, 3, S, S"):
        affine_resample(torch.zeros(3, 8, 8), source_crop=FRAME, out_size=4, crop=full(1, 424.0),
                        angle_deg=full(1, 0.0), hflip=full(1, False, torch.bool))


def test_paper_train_transform_random(images):
    """The faithful random callable draws crop sizes from numpy default_rng(seed), like the paper."""
    t = PaperTrainTransform(out_size=128, crop_range=(184, 352), seed=1)
    torch.manual_seed(0)
    first = [t(images[0]) for _ in range(3)]
    assert all(x.shape == (3, 128, 128) and x.min() >= -1 and x.max() <= 1 for x in first)
    expected_next = np.random.default_rng(seed=1).integers(184, 352, size=4)[3]
    assert t.rng.integers(184, 352) == expected_next
    t2 = PaperTrainTransform(out_size=128, crop_range=(184, 352), seed=1)
    torch.manual_seed(0)
    torch.testing.assert_close(t2(images[0]), first[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.filterwarnings("ignore:Synchronization debug mode is a prototype")
def test_cuda_matches_cpu_without_syncs():
    gen = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(8, 3, 32, 32, generator=gen) * 255, size=256,
                                             mode="bilinear")
    cache = smooth.round().to(torch.uint8)
    n = len(cache)
    params = {"crop": torch.linspace(184, 351, n).round(), "angle_deg": torch.linspace(0, 350, n),
              "hflip": torch.arange(n) % 2 == 0}
    for antialias in (False, True):
        cpu = affine_resample(cache, source_crop=352, out_size=128, antialias=antialias, **params)
        gpu_cache = cache.cuda().contiguous(memory_format=torch.channels_last)
        gpu_params = {k: v.cuda() for k, v in params.items()}
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            gpu = affine_resample(gpu_cache, source_crop=352, out_size=128, antialias=antialias, **gpu_params)
            views = list(tta_views(gpu_cache, source_crop=352, out_size=128, eval_crop=256))
        finally:
            torch.cuda.set_sync_debug_mode("default")
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=2e-3)
        assert len(views) == 16 and views[0].is_cuda
    aug = TrainAugment(out_size=128, source_crop=352)
    torch.testing.assert_close(aug(cache.cuda(), torch.Generator().manual_seed(5)).cpu(),
                               aug(cache, torch.Generator().manual_seed(5)), rtol=0, atol=2e-3)
