"""Rendering a synthetic galaxy into a 424-px Kaggle-like frame: Sérsic bulges and ellipticals, exponential disks
with spiral arms, bars, rings, dust lanes, arcs, clumps, companions with tidal tails, field stars, PSF blur,
coloured sky noise and an asinh stretch, at half resolution, then upsampled."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from galaxylib.layout import FRAME
from galaxylib.synth.morphology import Galaxy, _face_on

RENDER_SIZE = 212  # rendered at half resolution: the real frames are smooth at the pixel scale anyway


BULGE_RGB = np.array([1.25, 1.0, 0.7], np.float32)
DISK_RGB = np.array([1.0, 1.0, 1.08], np.float32)
ARM_RGB = np.array([0.75, 0.95, 1.35], np.float32)
STAR_RGBS = np.array([[1.8, 0.7, 0.4], [1.5, 0.9, 0.55], [1.25, 1.0, 0.75], [1.0, 1.0, 1.0], [0.8, 0.95, 1.3],
                      [0.7, 0.85, 1.6], [0.9, 1.35, 0.8]], np.float32)  # fmt: skip
SKY_NOISE = 5.5  # white noise before the PSF blur; about 1.5 after it
SKY_PEDESTAL = 0.7
SOFTENING = 10.0  # asinh softening, in sky-noise units
STRETCH_MAX = 9000.0  # linear intensity that maps to 255


@cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x, y


def _b_n(n: float) -> float:
    return 2 * n - 1 / 3 + 4 / (405 * n)


def _rotate(dx: np.ndarray, dy: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)
    return dx * c + dy * s, -dx * s + dy * c


def _sersic(dx, dy, re: float, n: float, q: float, pa: float, flux: float, boxy: float = 0.0) -> np.ndarray:
    """Sérsic profile with total `flux`; boxy > 0 bends the isophotes to generalised ellipses (c up to 4)."""
    xr, yr = _rotate(dx, dy, pa)
    yr = yr / q
    if boxy > 0:
        c = 2.0 + 2.0 * boxy
        r = (np.abs(xr) ** c + np.abs(yr) ** c) ** (1 / c)
    else:
        r = np.sqrt(xr * xr + yr * yr)
    b = _b_n(n)
    norm = 2 * math.pi * q * re * re * n * math.exp(b) * b ** (-2 * n) * math.gamma(2 * n)
    return (flux / norm) * np.exp(-b * ((r / re) ** (1 / n) - 1))


class _Canvas:
    """A linear-intensity RGB frame (band-first, (3, H, W), for contiguous per-band arithmetic) that the
    components are added into. Intensities are in units of the sky noise after the PSF blur, roughly."""

    def __init__(self, size: int):
        self.size = size
        self.rgb = np.zeros((3, size, size), np.float32)

    def add(self, lum: np.ndarray, colour: np.ndarray) -> None:
        for band in range(3):
            self.rgb[band] += float(colour[band]) * lum

    def blob(self, x: float, y: float, sigma: float, flux: float, colour: np.ndarray) -> None:
        """A small Gaussian (star, knot, clump) drawn only in its own window, so it costs ~nothing."""
        r = int(math.ceil(4 * sigma)) + 1
        x0, x1 = max(int(x) - r, 0), min(int(x) + r + 1, self.size)
        y0, y1 = max(int(y) - r, 0), min(int(y) + r + 1, self.size)
        if x0 >= x1 or y0 >= y1:
            return
        yy, xx = np.ogrid[y0:y1, x0:x1]
        g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma * sigma)).astype(np.float32)
        self.rgb[:, y0:y1, x0:x1] += (flux / (2 * math.pi * sigma * sigma)) * g * colour[:, None, None]


def render_galaxy(rng: np.random.Generator, g: Galaxy, size: int = FRAME,
                  render_size: int = RENDER_SIZE) -> np.ndarray:  # fmt: skip
    """(size, size, 3) uint8 frame of galaxy `g`: components, PSF, field stars, sky noise, asinh stretch."""
    canvas = _Canvas(render_size)
    x, y = _grid(render_size)
    cx = (render_size - 1) / 2 + rng.normal(0, 0.7)
    cy = (render_size - 1) / 2 + rng.normal(0, 0.7)
    dx, dy = x - cx, y - cy
    tint = rng.normal(1.0, 0.06, 3).astype(np.float32)
    flux = g.sb * 2 * math.pi * g.re * g.re * (2.0 if g.kind == "elliptical" else 1.0)
    if g.kind == "irregular":
        _render_irregular(rng, canvas, g, dx, dy, cx, cy, flux, tint)
    elif g.kind == "star":
        _render_bulge(canvas, g, dx, dy, flux, tint)
    else:
        _render_body(rng, canvas, g, dx, dy, cx, cy, flux, tint)
    if g.merger > 0:
        _render_companion(rng, canvas, g, dx, dy, cx, cy, flux)
    if "neighbour" in g.extras:
        _render_neighbour(rng, canvas, g.extras["neighbour"], dx, dy, cx, cy, flux)
    if g.disturbed > 0:
        _render_disturbance(rng, canvas, g, dx, dy, cx, cy, flux)
    if g.lens > 0:
        _render_arc(rng, canvas, g, dx, dy, flux)
    psf = float(rng.uniform(0.75, 1.3))  # Gaussian sigma, render pixels
    _render_field(rng, canvas)
    if g.kind == "star":
        _render_star(rng, canvas, cx, cy, 6e4 * g.star * rng.uniform(0.5, 2.0), spikes=True)
    elif g.kind == "artifact":
        _render_artifact(rng, canvas, g, cx, cy)
    _add_sky_noise(rng, canvas)
    # Blurring after the noise correlates it over a few pixels, like the resampled SDSS frames.
    canvas.rgb = gaussian_filter(canvas.rgb, (0, psf, psf), truncate=3.0)
    image = _stretch(canvas.rgb)
    if size != render_size:
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return image


def _render_bulge(canvas: _Canvas, g: Galaxy, dx, dy, flux: float, tint) -> None:
    lum = _sersic(dx, dy, g.bulge_re, g.n_bulge, g.bulge_q, g.pa, flux * g.bt, g.boxy)
    canvas.add(lum, BULGE_RGB * tint)


def _render_body(rng, canvas: _Canvas, g: Galaxy, dx, dy, cx, cy, flux: float, tint) -> None:
    """Elliptical, or bulge + disk (+ bar, arms, ring, dust lane)."""
    if g.bt >= 1.0:
        canvas.add(_sersic(dx, dy, g.re, g.n_bulge, g.q, g.pa, flux), BULGE_RGB * tint)
        return
    xr, yr = _rotate(dx, dy, g.pa)
    xd, yd = xr, yr / g.q  # disk-plane coordinates
    rd = np.sqrt(xd * xd + yd * yd) + 1e-3
    h = g.re / 1.678
    disk_flux = flux * (1 - g.bt)
    disk = np.exp(-rd / h) * (disk_flux / (2 * math.pi * h * h * g.q))
    smooth = disk
    if g.arms > 0 and g.arm_amp > 0:
        smooth = _add_arms(rng, canvas, g, xd, yd, rd, h, disk, cx, cy, tint)
    if g.ring > 0:
        radius = h * rng.uniform(1.6, 2.8)
        ring = np.exp(-0.5 * ((rd - radius) / (0.18 * radius)) ** 2) * disk.max() * 0.28 * g.ring
        canvas.add(ring, DISK_RGB * tint)
    bulge = _sersic(dx, dy, g.bulge_re, g.n_bulge, g.bulge_q, g.pa, flux * g.bt, g.boxy)
    canvas_disk = smooth
    if g.bar > 0:
        bar_re = h * rng.uniform(0.9, 1.6)
        xb, yb = _rotate(xd, yd, g.bar_angle)
        bar = np.exp(-0.69 * ((xb / bar_re) ** 2 + (yb / (0.28 * bar_re)) ** 2 - 1))
        bar *= disk_flux * 0.6 * g.bar / (2 * math.pi * bar_re * bar_re * 0.28 * g.q * 1.45)
        bulge = bulge + bar
    if g.dust > 0 and g.q < 0.3:
        width = max(0.5 * g.q * g.re, 0.6)
        lane = 1 - g.dust * np.exp(-np.square((yr + rng.normal(0, 0.3)) / width))
        canvas_disk, bulge = canvas_disk * lane, bulge * (0.5 + 0.5 * lane)
    canvas.add(canvas_disk, DISK_RGB * tint)
    canvas.add(bulge, BULGE_RGB * tint)


def _add_arms(rng, canvas: _Canvas, g: Galaxy, xd, yd, rd, h, disk, cx, cy, tint) -> np.ndarray:
    """Log spirals modulating the disk; returns the unmodulated rest and adds the bluer arm light."""
    m = g.arms
    tan_p = math.tan(math.radians(g.pitch))
    r0 = max(h * 0.5, 1.0)
    phase0 = rng.uniform(0, 2 * math.pi)
    theta = np.arctan2(yd, xd)
    wobble = 0.35 * np.sin(3 * theta + rng.uniform(0, 6.3)) * (m > 2)
    phi = m * (theta - np.log(rd / r0) / tan_p) + phase0 + wobble
    sharp = rng.uniform(1.0, 3.0)
    mod = ((1 + np.cos(phi)) / 2) ** sharp
    fade = 1 - np.exp(-((rd / (1.2 * h)) ** 2))  # arms fade into the bulge
    amp = g.arm_amp * 0.85 * _face_on(g.q)
    arms = disk * amp * fade * mod * (1 + sharp) ** 0.5 * 1.1
    canvas.add(arms, ARM_RGB * tint)
    # star-forming knots along the arms
    c, s = math.cos(g.pa), math.sin(g.pa)
    for _ in range(int(rng.integers(3, 12) * g.arm_amp * _face_on(g.q))):
        r = h * rng.uniform(0.8, 3.0)
        arm = rng.integers(0, m)
        th = (math.log(r / r0) / tan_p) + (-phase0 + 2 * math.pi * arm) / m
        px, py = r * math.cos(th), r * math.sin(th) * g.q
        fx = disk.max() * 3 * g.arm_amp * rng.uniform(0.3, 1.0)
        canvas.blob(cx + px * c - py * s, cy + px * s + py * c, rng.uniform(0.6, 1.2), fx, ARM_RGB)
    return disk * (1 - amp * fade * 0.5)


def _render_irregular(rng, canvas: _Canvas, g: Galaxy, dx, dy, cx, cy, flux: float, tint) -> None:
    canvas.add(_sersic(dx, dy, g.re, 1.0, g.q, g.pa, flux * 0.55), DISK_RGB * tint)
    for _ in range(int(rng.integers(5, 16))):
        r = g.re * abs(rng.normal(0, 0.9))
        th = rng.uniform(0, 2 * math.pi)
        sigma = g.re * rng.uniform(0.1, 0.35)
        canvas.blob(cx + r * math.cos(th), cy + r * math.sin(th) * g.q, sigma,
                    flux * 0.45 / 8 * rng.uniform(0.3, 1.7) * g.clumpy, ARM_RGB * tint)  # fmt: skip


def _render_companion(rng, canvas: _Canvas, g: Galaxy, dx, dy, cx, cy, flux: float) -> None:
    """A second galaxy overlapping or close (mergers), joined by a tidal bridge."""
    sep = g.re * rng.uniform(0.6, 2.0) * (1.6 - g.merger)
    ang = rng.uniform(0, 2 * math.pi)
    ox, oy = sep * math.cos(ang), sep * math.sin(ang)
    re2 = g.re * rng.uniform(0.4, 1.0)
    f2 = flux * rng.uniform(0.3, 1.0)
    canvas.add(_sersic(dx - ox, dy - oy, re2, rng.uniform(1, 4), rng.uniform(0.5, 1), rng.uniform(0, 3.2), f2),
               BULGE_RGB * rng.normal(1.0, 0.08, 3).astype(np.float32))  # fmt: skip
    _render_tails(rng, canvas, g, cx + ox, cy + oy, f2 * 0.12 * g.merger)


def _render_neighbour(rng, canvas: _Canvas, nb: dict, dx, dy, cx: float, cy: float, flux: float) -> None:
    ox, oy = nb["dist"] * math.cos(nb["angle"]), nb["dist"] * math.sin(nb["angle"])
    if nb["star"]:
        _render_star(rng, canvas, cx + ox, cy + oy, flux * nb["rel"], spikes=nb["rel"] > 0.6)
    else:
        colour = BULGE_RGB if rng.random() < 0.6 else DISK_RGB
        canvas.add(_sersic(dx - ox, dy - oy, nb["re"], nb["n"], nb["q"], rng.uniform(0, 3.2), flux * nb["rel"]),
                   colour * rng.normal(1.0, 0.08, 3).astype(np.float32))  # fmt: skip


def _render_disturbance(rng, canvas: _Canvas, g: Galaxy, dx, dy, cx: float, cy: float, flux: float) -> None:
    """Tidal disturbance: a lopsided plume of light off the centre and faint tails."""
    ang = rng.uniform(0, 2 * math.pi)
    off = g.re * rng.uniform(0.4, 0.9)
    ox, oy = off * math.cos(ang), off * math.sin(ang)
    plume = _sersic(dx - ox, dy - oy, g.re * 0.8, 1.0, rng.uniform(0.4, 0.8), ang, flux * 0.25 * g.disturbed)
    canvas.add(plume, DISK_RGB)
    _render_tails(rng, canvas, g, cx, cy, flux * 0.1 * g.disturbed)


def _render_tails(rng, canvas: _Canvas, g: Galaxy, cx: float, cy: float, flux: float) -> None:
    """Tidal tails: faint curved streaks of blobs winding out of the galaxy."""
    for _ in range(int(rng.integers(1, 3))):
        th0 = rng.uniform(0, 2 * math.pi)
        turn = rng.choice([-1, 1]) * rng.uniform(0.6, 1.8)
        length = g.re * rng.uniform(1.2, 3.0)
        steps = 20
        for t in np.linspace(0.2, 1, steps):
            r = length * t
            th = th0 + turn * t
            canvas.blob(cx + r * math.cos(th), cy + r * math.sin(th), 1.5 + 2.5 * t,
                        flux / steps * (1.2 - t), DISK_RGB)  # fmt: skip


def _render_arc(rng, canvas: _Canvas, g: Galaxy, dx, dy, flux: float) -> None:
    """A thin blue arc (lens or arc) at 1.5-3 re, spanning part of a circle."""
    radius = g.re * rng.uniform(1.3, 2.5)
    r = np.sqrt(dx * dx + dy * dy)
    th = np.arctan2(dy, dx)
    centre = rng.uniform(-math.pi, math.pi)
    dth = np.angle(np.exp(1j * (th - centre)))
    span = rng.uniform(0.4, 1.0)
    arc = np.exp(-0.5 * ((r - radius) / 0.9) ** 2 - 0.5 * (dth / span) ** 2)
    canvas.add(arc * (flux / (2 * math.pi * g.re * g.re)) * 0.6 * g.lens, ARM_RGB)


def _render_star(rng, canvas: _Canvas, x: float, y: float, flux: float, spikes: bool) -> None:
    """A point source (the PSF blur comes later), its scattered-light halo and diffraction spikes."""
    colour = STAR_RGBS[rng.integers(len(STAR_RGBS))]
    canvas.blob(x, y, 0.5, flux, colour)
    canvas.blob(x, y, 1.5, flux * 0.1, colour)
    canvas.blob(x, y, 5.0, flux * 0.05, colour)
    if spikes:
        length = min(10 * math.log10(flux), 60.0)
        for k in range(-int(length), int(length) + 1):
            fade = flux * 0.0025 * math.exp(-abs(k) / (0.35 * length))
            canvas.blob(x + k, y, 0.6, fade, colour)
            canvas.blob(x, y + k, 0.6, fade, colour)


def _render_artifact(rng, canvas: _Canvas, g: Galaxy, cx: float, cy: float) -> None:
    """A satellite trail in one band through the frame, or a bright star sitting on the galaxy."""
    if rng.random() < 0.5:
        size = canvas.size
        ang = rng.uniform(0, math.pi)
        off = rng.normal(0, 0.6 * g.re)
        x, y = _grid(size)
        dist = (x - cx) * math.sin(ang) - (y - cy) * math.cos(ang) - off
        band = np.zeros(3, np.float32)
        band[rng.integers(3)] = 1.0
        canvas.add(np.exp(-0.5 * (dist / 0.8) ** 2) * 60 * g.star, band + 0.15)
    else:
        r = g.re * rng.uniform(0.3, 1.2)
        th = rng.uniform(0, 2 * math.pi)
        _render_star(rng, canvas, cx + r * math.cos(th), cy + r * math.sin(th), 4e4 * g.star, spikes=True)


def _render_field(rng, canvas: _Canvas) -> None:
    """Field stars (small round dots, often red or blue) and sometimes a small neighbour galaxy."""
    size = canvas.size
    for _ in range(int(rng.poisson(10))):
        x, y = rng.uniform(0, size, 2)
        flux = float(np.exp(rng.normal(math.log(300), 1.2)))
        canvas.blob(x, y, 0.5, flux, STAR_RGBS[rng.integers(len(STAR_RGBS))] * rng.normal(1, 0.15, 3))
    for _ in range(int(rng.poisson(0.6))):
        x, y = rng.uniform(0, size, 2)
        if abs(x - size / 2) + abs(y - size / 2) < size * 0.25:
            continue
        flux = float(np.exp(rng.normal(math.log(400), 0.8)))
        re = rng.uniform(1.5, 5)
        axis = rng.uniform(0, math.pi)
        colour = BULGE_RGB if rng.random() < 0.5 else DISK_RGB
        for k in range(3):  # a crude elongated blob: three offset Gaussians along a random axis
            step = k * re * 0.4
            canvas.blob(x + step * math.cos(axis), y + step * math.sin(axis), re * 0.7, flux / 3, colour)


@cache
def _noise_pool(size: int = 640) -> np.ndarray:
    """A fixed (3, size, size) sky-noise field, mostly common to the bands, partly per band (faint colour
    blotches). Frames take random crops of it: drawing fresh normals for every frame was a third of the
    rendering time. Fixed seed, so every process holds the same pool and output stays deterministic."""
    noise = np.random.default_rng(20140101).standard_normal((4, size, size), dtype=np.float32)
    return np.ascontiguousarray((0.5 * SKY_NOISE) * noise[:3] + (0.85 * SKY_NOISE) * noise[3])


def _add_sky_noise(rng, canvas: _Canvas) -> None:
    """Sky noise before the PSF blur, on a small pedestal so that the sky is near-black rather than
    clipped to 0: a random crop of the pool, randomly flipped and transposed (8 orientations)."""
    pool = _noise_pool()
    n = canvas.size
    y0, x0 = (int(v) for v in rng.integers(0, pool.shape[1] - n + 1, 2))
    crop = pool[:, y0 : y0 + n, x0 : x0 + n]
    k = int(rng.integers(8))
    if k & 1:
        crop = crop[:, ::-1]
    if k & 2:
        crop = crop[:, :, ::-1]
    if k & 4:
        crop = crop.transpose(0, 2, 1)
    canvas.rgb += crop
    canvas.rgb += SKY_PEDESTAL


def _stretch(rgb: np.ndarray) -> np.ndarray:
    """Lupton-style colour-preserving asinh stretch to uint8: near-black sky, bright cores keep their hue."""
    lum = (rgb[0] + rgb[1] + rgb[2]) * (1 / 3)
    scale = math.asinh(STRETCH_MAX / SOFTENING)
    safe = np.maximum(lum, 1e-3)
    f = np.arcsinh(safe * (1 / SOFTENING)) / (safe * scale) * 255
    out = rgb * f
    np.clip(out, 0, 255, out=out)  # per-band clipping: saturated cores turn whitish, as in SDSS composites
    out += 0.5
    return np.ascontiguousarray(out.astype(np.uint8).transpose(1, 2, 0))
