"""A synthetic Galaxy Zoo in the Kaggle layout, so that a first run needs no Kaggle download.

`python -m galaxylib synth --n N --seed S --out DIR` writes

    DIR/images_training_rev1/<GalaxyID>.jpg   424x424 RGB JPEG, rendered from a latent morphology
    DIR/training_solutions_rev1.csv           GalaxyID + the 37 Kaggle columns, from simulated volunteers
    DIR/expected_solutions.csv                the same 37 columns with infinitely many volunteers
    DIR/SYNTHETIC.json                        marker (written last): n, seed, volunteers, noise floor, ...

Each galaxy is drawn in three steps, each from its own random stream, so that changing the renderer never
changes the labels and a galaxy never depends on which process drew it:

1. `sample_galaxy`: a latent morphology (kind, size, brightness, bulge, disk inclination, bar, arms, ring,
   dust lane, companions ...) and a *visibility* that falls for small and faint galaxies.
2. `answer_probabilities`: what a volunteer answers at each of the 11 questions, given that truth. Mistakes
   grow as visibility falls, more so for hard questions (bar, arm count). `simulate_votes` lets ~40
   volunteers walk the tree and turns the counts into the 37 values exactly as Kaggle weighted them; the
   infinite-volunteer values follow analytically (`tree.conditionals_to_targets`). The RMSE between the two
   is the noise floor: the score of a perfect model.
3. `render_galaxy`: Sérsic bulges and ellipticals, exponential disks with spiral arms, bars, rings, dust
   lanes, arcs, clumps, companions with tidal tails, field stars, PSF blur, coloured sky noise and an asinh
   stretch (../shared/docs/synthetic_galaxies.md), at half resolution, then upsampled.

The morphology mix and the answer model are calibrated so that the 37 column means match the real Kaggle
sample (within ~0.01 on average at n = 2000) and about half of all values are exactly 0, as in the real labels.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from galaxylib import tree
from galaxylib.cli import UserError

GENERATOR_VERSION = 1
IMAGE_SIZE = 424  # Kaggle frames
RENDER_SIZE = 212  # rendered at half resolution: the real frames are smooth at the pixel scale anyway
JPEG_QUALITY = 85
IMAGES_DIR = "images_training_rev1"
LABELS_CSV = "training_solutions_rev1.csv"
EXPECTED_CSV = "expected_solutions.csv"
MARKER = "SYNTHETIC.json"
IN_PROGRESS = ".synth-in-progress"  # present while writing: lets a rerun recognise (and redo) its own output

KINDS = ("elliptical", "disk", "irregular", "merger", "star", "artifact")
# Morphology mix, calibrated against the real sample's label means (see module docstring).
KIND_WEIGHTS = (0.31, 0.6, 0.025, 0.045, 0.007, 0.004)

RE_MEDIAN = 18.0  # half-light radius, render pixels: galaxies span 15-40 % of the frame, as in the real sample
SB_MEDIAN = 45.0  # surface brightness at re, sky-noise units: matches the real frames' radial profiles

_Q = {q.number: q.slice for q in tree.QUESTIONS}


# --------------------------------------------------------------------------------------------------
# 1. Latent morphology
# --------------------------------------------------------------------------------------------------


@dataclass
class Galaxy:
    """The latent truth of one frame. Everything the volunteers answer from is rendered into the image."""

    kind: str
    re: float  # half-light radius of the main body, in render pixels (RENDER_SIZE frame)
    sb: float  # surface brightness at re, in units of the sky noise
    pa: float  # position angle of the major axis (radians)
    q: float  # apparent axis ratio of the main body (disk: from inclination; elliptical: intrinsic)
    bt: float = 1.0  # bulge-to-total flux ratio (elliptical: 1)
    n_bulge: float = 4.0  # Sérsic index of the bulge / elliptical
    bulge_re: float = 0.0  # bulge half-light radius (px)
    bulge_q: float = 1.0
    boxy: float = 0.0  # 0 = elliptical isophotes, 1 = strongly boxy (edge-on bulges)
    q0: float = 0.15  # intrinsic disk thickness
    bar: float = 0.0  # bar strength 0..1
    bar_angle: float = 0.0  # in the disk plane
    arms: int = 0  # number of spiral arms (0: none)
    arm_amp: float = 0.0  # spiral arm contrast 0..1
    pitch: float = 20.0  # pitch angle in degrees
    ring: float = 0.0  # ring strength 0..1
    lens: float = 0.0  # arc (lens) strength 0..1
    dust: float = 0.0  # dust lane depth 0..1 (edge-on disks)
    disturbed: float = 0.0  # tidal asymmetry 0..1
    clumpy: float = 0.0  # irregular, clumpy light 0..1
    merger: float = 0.0  # companion overlap + tails 0..1
    star: float = 0.0  # how star/artifact-like the frame is 0..1
    neighbour: float = 0.0  # a close, unrelated neighbour galaxy or bright star 0..1 (distracts volunteers)
    vis: float = 1.0  # how clearly details can be seen: falls with size and surface brightness
    extras: dict = field(default_factory=dict)  # placement details drawn with the latent (e.g. the neighbour)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _visibility(re: float, sb: float) -> float:
    """Small, low surface-brightness galaxies hide their details: a smooth 0..1 clarity score."""
    size = _sigmoid(2.2 * (math.log(re) - math.log(0.67 * RE_MEDIAN)))
    bright = _sigmoid(1.8 * (math.log(sb) - math.log(0.55 * SB_MEDIAN)))
    return size * bright


def _face_on(q: float) -> float:
    """0 for edge-on disks (arms and bars cannot be seen), 1 from axis ratio ~0.45 up."""
    return min(max((q - 0.25) / 0.2, 0.0), 1.0)


def _disk_axis_ratio(cos_i: float, q0: float) -> float:
    return math.sqrt(cos_i**2 * (1 - q0**2) + q0**2)


def sample_galaxy(rng: np.random.Generator) -> Galaxy:
    """Draw a latent morphology from the calibrated mix."""
    kind = KINDS[rng.choice(len(KINDS), p=np.asarray(KIND_WEIGHTS) / sum(KIND_WEIGHTS))]
    re = float(np.exp(rng.normal(math.log(RE_MEDIAN), 0.28)))
    sb = float(np.exp(rng.normal(math.log(SB_MEDIAN), 0.6)))
    pa = float(rng.uniform(0, math.pi))
    g = Galaxy(kind=kind, re=re, sb=sb, pa=pa, q=1.0)
    {"elliptical": _sample_elliptical, "disk": _sample_disk, "irregular": _sample_irregular,
     "merger": _sample_merger, "star": _sample_star, "artifact": _sample_artifact}[kind](rng, g)  # fmt: skip
    g.vis = _visibility(g.re, g.sb)
    if kind != "star" and rng.random() < 0.5:
        _sample_neighbour(rng, g)
    return g


def _sample_neighbour(rng: np.random.Generator, g: Galaxy) -> None:
    """A projected neighbour: the closer and brighter, the more volunteers call the frame odd."""
    dist = g.re * float(rng.uniform(1.8, 5.0))
    rel = float(np.exp(rng.normal(math.log(0.2), 0.8)))  # flux relative to the galaxy
    is_star = bool(rng.random() < 0.4)
    g.neighbour = min(rel * 2.5, 1.0) * min(3.0 * g.re / dist, 1.0)
    g.extras["neighbour"] = {"dist": dist, "angle": float(rng.uniform(0, 2 * math.pi)), "rel": rel,
                             "star": is_star, "re": g.re * float(rng.uniform(0.25, 0.6)),
                             "n": float(rng.uniform(1, 4)), "q": float(rng.uniform(0.4, 1.0))}  # fmt: skip


def _sample_elliptical(rng: np.random.Generator, g: Galaxy) -> None:
    g.n_bulge = float(rng.uniform(2.5, 5.0))
    g.q = float(np.clip(rng.beta(5.0, 1.6), 0.25, 1.0))
    g.bt, g.bulge_re, g.bulge_q = 1.0, g.re, g.q
    g.sb *= 1.3
    _sample_odd_features(rng, g, disturbed=0.07, lens=0.04, merger=0.03)


def _sample_odd_features(rng: np.random.Generator, g: Galaxy, *, disturbed: float, lens: float,
                         merger: float) -> None:
    """Each odd feature with its own probability (they are rarer on disks than on ellipticals)."""
    if rng.random() < disturbed:
        g.disturbed = float(rng.uniform(0.3, 1.0))
    if rng.random() < lens:
        g.lens = float(rng.uniform(0.4, 1.0))
    if rng.random() < merger:
        g.merger = float(rng.uniform(0.4, 1.0))


def _sample_disk(rng: np.random.Generator, g: Galaxy) -> None:
    g.q0 = float(rng.uniform(0.1, 0.22))
    cos_i = float(rng.uniform(0, 1))
    g.q = _disk_axis_ratio(cos_i, g.q0)
    g.bt = float(np.clip(rng.beta(1.8, 3.2), 0.0, 0.8))
    if rng.random() < 0.06:
        g.bt = float(rng.uniform(0.0, 0.05))  # bulgeless disks
    g.n_bulge = float(rng.uniform(1.5, 4.0))
    g.bulge_re = g.re * float(rng.uniform(0.18, 0.35))
    g.bulge_q = float(rng.uniform(0.7, 1.0))
    g.boxy = float(rng.uniform(0.6, 1.0)) if rng.random() < 0.15 else 0.0
    if rng.random() < 0.45:
        g.bar = float(rng.uniform(0.3, 1.0))
        g.bar_angle = float(rng.uniform(0, math.pi))
    if rng.random() < 0.8:
        g.arms = int(rng.choice([1, 2, 3, 4, 5, 6], p=[0.07, 0.55, 0.15, 0.1, 0.07, 0.06]))
        if g.bar > 0 and rng.random() < 0.7:
            g.arms = 2
        g.arm_amp = float(rng.uniform(0.25, 1.0))
        g.pitch = float(rng.choice([rng.uniform(8, 15), rng.uniform(15, 25), rng.uniform(25, 38)],
                                   p=[0.4, 0.38, 0.22]))  # fmt: skip
    if rng.random() < 0.09:
        g.ring = float(rng.uniform(0.4, 1.0))
    if g.q < 0.3 and rng.random() < 0.5:
        g.dust = float(rng.uniform(0.4, 0.9))
    _sample_odd_features(rng, g, disturbed=0.05, lens=0.02, merger=0.02)
    g.sb *= 0.9


def _sample_irregular(rng: np.random.Generator, g: Galaxy) -> None:
    g.q = float(rng.uniform(0.4, 1.0))
    g.bt = float(rng.uniform(0.0, 0.15))
    g.n_bulge = 1.0
    g.bulge_re = g.re * 0.3
    g.clumpy = float(rng.uniform(0.5, 1.0))
    g.disturbed = float(rng.uniform(0.0, 0.5))
    g.sb *= 0.8


def _sample_merger(rng: np.random.Generator, g: Galaxy) -> None:
    _sample_elliptical(rng, g) if rng.random() < 0.5 else _sample_disk(rng, g)
    g.kind = "merger"
    g.merger = float(rng.uniform(0.5, 1.0))
    g.disturbed = max(g.disturbed, float(rng.uniform(0.3, 1.0)))


def _sample_star(rng: np.random.Generator, g: Galaxy) -> None:
    """A bright star (with halo and spikes) at the centre, perhaps over a faint small galaxy."""
    g.q, g.bt, g.bulge_re, g.n_bulge = 1.0, 1.0, g.re * 0.6, 3.0
    g.re *= 0.6
    g.sb *= 0.4
    g.star = float(rng.uniform(0.5, 1.0))


def _sample_artifact(rng: np.random.Generator, g: Galaxy) -> None:
    """A satellite trail or a bright neighbour star across a faint galaxy."""
    _sample_elliptical(rng, g)
    g.kind = "artifact"
    g.sb *= 0.5
    g.star = float(rng.uniform(0.4, 0.9))


# --------------------------------------------------------------------------------------------------
# 2. Volunteers
# --------------------------------------------------------------------------------------------------


def _normalise(p) -> np.ndarray:
    p = np.maximum(np.asarray(p, dtype=np.float64), 0.0)
    return p / p.sum()


def _soft_bins(value: float, centres, width: float) -> np.ndarray:
    """A categorical answer to a continuous truth: Gaussian weights around each bin centre."""
    c = np.asarray(centres, dtype=np.float64)
    return _normalise(np.exp(-0.5 * ((value - c) / width) ** 2) + 1e-12)


def _featuredness(g: Galaxy) -> float:
    """How strongly the frame says 'disk or features' to an attentive volunteer (0..1)."""
    if g.kind in ("star", "artifact"):
        return 0.1
    edge = _sigmoid((0.32 - g.q) / 0.05) if g.kind != "elliptical" else 0.0
    f = 0.3 * (1 - g.bt) + 0.5 * g.arm_amp * (g.arms > 0) + 0.3 * g.bar + 0.6 * edge
    f += 0.4 * g.ring + 0.5 * g.clumpy + 0.3 * g.disturbed + 0.3 * g.merger + 0.2 * g.lens
    return min(f, 1.0)


def answer_probabilities(g: Galaxy) -> np.ndarray:
    """(37,) conditional answer probabilities, each question's slice summing to 1.

    A volunteer who reaches a question answers from the truth with a probability that falls with the
    galaxy's visibility and the question's difficulty; otherwise from a confusion prior (faint disks look
    smooth, faint arms can't be counted).
    """
    v = g.vis
    p = np.zeros(tree.NUM_OUTPUTS)
    p[_Q[1]] = _q1(g, v)
    edge = _sigmoid((0.31 - g.q) / 0.045)
    p[_Q[2]] = [0.01 + 0.96 * edge, 0.99 - 0.96 * edge]
    bar_seen = min(2.0 * g.bar * v, 1.0) * _face_on(g.q)
    p[_Q[3]] = [0.015 + 0.04 * (1 - v) + 0.9 * bar_seen, 0.985 - 0.04 * (1 - v) - 0.9 * bar_seen]
    arms_seen = g.arm_amp * (g.arms > 0) * v * _face_on(g.q)
    spiral = 0.04 + 0.1 * g.ring + 0.93 * min(arms_seen * 3.0, 1.0)
    p[_Q[4]] = [min(spiral, 0.97), 1 - min(spiral, 0.97)]
    p[_Q[5]] = _q5(g, v)
    p[_Q[6]] = _q6(g, v)
    p[_Q[7]] = _q7(g, v)
    p[_Q[8]] = _q8(g, v)
    p[_Q[9]] = _q9(g, v)
    p[_Q[10]] = _q10(g, v)
    p[_Q[11]] = _q11(g, v)
    for s in tree.QUESTION_SLICES:
        p[s] = _normalise(p[s])
    return p


def _q1(g: Galaxy, v: float) -> np.ndarray:
    star = 0.016 + 0.04 * (1 - v) ** 2 + 0.65 * g.star
    feat = _sigmoid(7.0 * (_featuredness(g) * (0.35 + 0.65 * v) - 0.23))
    feat = 0.02 + 0.96 * feat
    return np.array([(1 - star) * (1 - feat), (1 - star) * feat, star])


def _q5(g: Galaxy, v: float) -> np.ndarray:
    prominence = 0.05 + 0.75 * g.bt + 0.06 * (1 - v)  # a faint disk's bulge looks bigger
    truth = _soft_bins(prominence, (0.0, 0.2, 0.5, 1.0), 0.15)
    confusion = np.array([0.05, 0.45, 0.45, 0.05])
    w = 0.6 + 0.35 * v
    return w * truth + (1 - w) * confusion


def _q6(g: Galaxy, v: float) -> np.ndarray:
    odd = max(g.ring, g.lens, g.disturbed, g.clumpy, g.merger, 0.7 * g.dust * (g.q < 0.3))
    yes = 0.02 + 0.08 * (1 - v) + 0.75 * odd * (0.4 + 0.6 * v) + 0.25 * g.neighbour
    return np.array([yes, 1 - yes])


def _q7(g: Galaxy, v: float) -> np.ndarray:
    truth = _soft_bins(g.q, (0.95, 0.62, 0.3), 0.1)
    confusion = np.array([0.45, 0.5, 0.05])
    w = 0.75 + 0.2 * v
    return w * truth + (1 - w) * confusion


def _q8(g: Galaxy, v: float) -> np.ndarray:
    # ring, lens/arc, disturbed, irregular, other, merger, dust lane
    base = np.array([0.05, 0.03, 0.09, 0.16, 0.5, 0.07, 0.003])
    dust = g.dust * (g.q < 0.3)
    truth = np.array([g.ring * 2.0, g.lens, g.disturbed * 0.7, g.clumpy * 2.5, 0.0, g.merger * 1.2, dust * 0.1])
    nb = g.extras.get("neighbour")
    if nb is not None:  # a neighbour star is "other"; a neighbour galaxy looks like a merger or "other"
        truth[4] += g.neighbour * (0.6 if nb["star"] else 0.2)
        truth[5] += 0.0 if nb["star"] else g.neighbour * 0.8
    return base + 4.0 * v * truth


def _q9(g: Galaxy, v: float) -> np.ndarray:
    bulge = min(g.bt / 0.25, 1.0)
    truth = np.array([bulge * (1 - g.boxy), bulge * g.boxy, 1 - bulge])
    confusion = np.array([0.5, 0.1, 0.4])
    w = 0.5 + 0.4 * v
    return w * truth + (1 - w) * confusion


def _q10(g: Galaxy, v: float) -> np.ndarray:
    truth = _soft_bins(g.pitch, (9.0, 20.0, 32.0), 5.0)
    confusion = np.array([0.45, 0.38, 0.17])
    w = (0.3 + 0.6 * v) * (g.arms > 0)
    return w * truth + (1 - w) * confusion


def _q11(g: Galaxy, v: float) -> np.ndarray:
    truth = np.zeros(6)
    if g.arms == 0:
        truth[5] = 1.0
    else:  # 80 % count right, the rest are off by one
        k = min(g.arms, 5) - 1
        truth[max(k - 1, 0)] += 0.1
        truth[min(k + 1, 4)] += 0.1
        truth[k] += 0.8
    seen = min(1.6 * v * g.arm_amp, 1.0) ** 0.7
    cant = 0.08 + 0.6 * (1 - seen)
    confusion = np.array([0.1, 0.6, 0.12, 0.08, 0.1, 0.0])
    return (1 - cant) * (0.9 * truth + 0.1 * confusion) + cant * np.eye(6)[5]


def simulate_votes(rng: np.random.Generator, probs: np.ndarray, volunteers: int) -> np.ndarray:
    """(37,) Kaggle values from `volunteers` simulated walks down the tree.

    Every volunteer answers Q1; smooth -> Q7; features -> Q2 (edge-on -> Q9; else Q3, Q4, [Q10, Q11], Q5);
    all but star/artifact answer Q6, and odd -> Q8. Answers at a question depend only on the galaxy, so
    the walks are drawn question by question as multinomials. As Kaggle did, each value is the fraction of
    all volunteers giving that answer (the conditional fraction times its parent value), except Q6 and Q8,
    which are fractions of the volunteers who did not answer star/artifact (Q6 sums to 1).
    """
    counts = np.zeros(tree.NUM_OUTPUTS)

    def ask(question: int, n: int) -> np.ndarray:
        c = rng.multinomial(n, probs[_Q[question]])
        counts[_Q[question]] = c
        return c

    q1 = ask(1, volunteers)
    ask(7, q1[0])
    q2 = ask(2, q1[1])
    ask(9, q2[0])
    ask(3, q2[1])
    q4 = ask(4, q2[1])
    ask(10, q4[0])
    ask(11, q4[0])
    ask(5, q2[1])
    not_star = volunteers - q1[2]
    q6 = ask(6, not_star)
    ask(8, q6[0])
    values = counts / volunteers
    if not_star > 0:
        for question in (6, 8):
            values[_Q[question]] = counts[_Q[question]] / not_star
    else:  # everyone said star/artifact: nobody saw anything odd (Q6 must still sum to 1)
        values[_Q[6]] = (0.0, 1.0)
    return values


def expected_values(probs: np.ndarray) -> np.ndarray:
    """(37,) values with infinitely many volunteers: the conditionals weighted down the tree."""
    return tree.conditionals_to_targets(probs[None])[0]


# --------------------------------------------------------------------------------------------------
# 3. Rendering
# --------------------------------------------------------------------------------------------------

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


def render_galaxy(rng: np.random.Generator, g: Galaxy, size: int = IMAGE_SIZE,
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


# --------------------------------------------------------------------------------------------------
# 4. One galaxy, many galaxies
# --------------------------------------------------------------------------------------------------


def galaxy_streams(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """(latent, votes, render) generators of galaxy `index`: the same as SeedSequence(seed).spawn(n)[index],
    without spawning n of them, so galaxy i is the same whatever n, order or process draws it."""
    ss = np.random.SeedSequence(seed, spawn_key=(index,))
    return tuple(np.random.default_rng(s) for s in ss.spawn(3))


def make_galaxy(seed: int, index: int, volunteers: int) -> tuple[Galaxy, np.ndarray, np.ndarray]:
    """Latent truth, finite-vote labels and expected labels of galaxy `index` (no image)."""
    latent_rng, vote_rng, _ = galaxy_streams(seed, index)
    g = sample_galaxy(latent_rng)
    probs = answer_probabilities(g)
    # Real galaxies got 40-50 classifications, not a fixed number.
    n_vol = max(1, int(round(volunteers * vote_rng.uniform(0.75, 1.25))))
    return g, simulate_votes(vote_rng, probs, n_vol), expected_values(probs)


def _work(task: tuple[int, int, int, int, str]) -> tuple[np.ndarray, np.ndarray]:
    seed, index, galaxy_id, volunteers, image_dir = task
    g, labels, expected = make_galaxy(seed, index, volunteers)
    image = render_galaxy(galaxy_streams(seed, index)[2], g)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    (Path(image_dir) / f"{galaxy_id}.jpg").write_bytes(buf.getvalue())
    return np.round(labels, 6), np.round(expected, 6)


def galaxy_ids(seed: int, n: int) -> np.ndarray:
    """n unique random 6-digit GalaxyIDs, sorted: galaxy i gets the i-th smallest, so rows stream in order."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    return np.sort(rng.choice(900_000, size=n, replace=False) + 100_000)


def _fmt(v: float) -> str:
    return "0" if v == 0 else f"{v:.6f}".rstrip("0").rstrip(".")


def _row(galaxy_id: int, values: np.ndarray) -> str:
    return f"{galaxy_id}," + ",".join(_fmt(v) for v in values) + "\n"


@dataclass
class SynthSummary:
    n: int
    seconds: float
    images_per_s: float
    noise_floor: float  # RMSE of the finite-volunteer labels against the infinite-volunteer ones
    reused: bool = False


def _marker_matches(out: Path, n: int, seed: int, volunteers: int) -> dict | None:
    try:
        meta = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None
    same = (meta.get("n"), meta.get("seed"), meta.get("volunteers"), meta.get("version")) == (
        n, seed, volunteers, GENERATOR_VERSION)  # fmt: skip
    complete = (out / LABELS_CSV).is_file() and (out / EXPECTED_CSV).is_file()
    if not (same and complete):
        return None
    try:
        with os.scandir(out / IMAGES_DIR) as entries:  # ~50 ms for the full 61,578 images
            images = sum(1 for e in entries if e.name.endswith(".jpg"))
    except OSError:
        return None
    return meta if images == n else None


def _prepare_out(out: Path) -> None:
    """Refuse to write into a folder we did not make; clear a previous synth output we did."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not ((out / MARKER).exists() or (out / IN_PROGRESS).exists()):
            raise UserError(f"--out {out} is a non-empty folder that is not a synth output; pick another")
        (out / IN_PROGRESS).touch()  # first, so that an interruption below still leaves it recognisable
        (out / MARKER).unlink(missing_ok=True)  # from here on the folder reads as incomplete
        for name in (LABELS_CSV, EXPECTED_CSV):
            (out / name).unlink(missing_ok=True)
        if (out / IMAGES_DIR).is_dir():
            for jpg in (out / IMAGES_DIR).glob("*.jpg"):
                jpg.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / IN_PROGRESS).touch()
    (out / IMAGES_DIR).mkdir(exist_ok=True)


def generate(out: Path, n: int, seed: int = 0, *, volunteers: int = 40, workers: int | None = None,
             progress: bool = True) -> SynthSummary:  # fmt: skip
    """Write a synthetic Galaxy Zoo of `n` galaxies to `out` (Kaggle layout, see module docstring).

    Byte-identical for the same (n, seed, volunteers) whatever `workers`. Reuses a complete previous
    output with the same parameters instead of regenerating it.
    """
    out = Path(out)
    if n <= 0:
        raise UserError(f"--n must be positive, got {n}")
    if n > 900_000:
        raise UserError(f"--n must be at most 900000 (6-digit GalaxyIDs), got {n}")
    if volunteers <= 0:
        raise UserError(f"--volunteers must be positive, got {volunteers}")
    if workers is not None and workers <= 0:
        raise UserError(f"--workers must be positive, got {workers}")
    start = time.perf_counter()
    meta = _marker_matches(out, n, seed, volunteers)
    if meta is not None:
        print(f"reusing the synthetic Galaxy Zoo already in {out} (n={n}, seed={seed}, volunteers={volunteers})")
        return SynthSummary(n, time.perf_counter() - start, 0.0, float(meta["noise_floor"]), reused=True)
    _prepare_out(out)
    ids = galaxy_ids(seed, n)
    tasks = ((seed, i, int(ids[i]), volunteers, str(out / IMAGES_DIR)) for i in range(n))
    workers = min(workers or os.cpu_count() or 1, n)
    header = ",".join((tree.ID_COLUMN, *tree.COLUMNS)) + "\n"
    sq_err = 0.0
    with open(out / (LABELS_CSV + ".partial"), "w") as f_lab, open(out / (EXPECTED_CSV + ".partial"), "w") as f_exp:
        f_lab.write(header)
        f_exp.write(header)
        pool = mp.Pool(workers) if workers > 1 else None
        try:
            results = pool.imap(_work, tasks, chunksize=8) if pool else map(_work, tasks)
            for i, (labels, expected) in enumerate(tqdm(results, total=n, disable=not progress, unit="img",
                                                        desc="synth")):  # fmt: skip
                f_lab.write(_row(int(ids[i]), labels))
                f_exp.write(_row(int(ids[i]), expected))
                sq_err += float(((labels - expected) ** 2).sum())
        finally:
            if pool:
                pool.terminate()
    os.replace(out / (LABELS_CSV + ".partial"), out / LABELS_CSV)
    os.replace(out / (EXPECTED_CSV + ".partial"), out / EXPECTED_CSV)
    noise_floor = math.sqrt(sq_err / (n * tree.NUM_OUTPUTS))
    seconds = time.perf_counter() - start
    marker = {
        "synthetic": True, "generator": "galaxylib.synth", "version": GENERATOR_VERSION, "n": n, "seed": seed,
        "volunteers": volunteers, "noise_floor": round(noise_floor, 6), "image_size": IMAGE_SIZE,
        "labels": LABELS_CSV, "expected": EXPECTED_CSV,
        "note": "synthetic data: results on it say nothing about real Galaxy Zoo performance",
    }  # fmt: skip
    (out / (MARKER + ".partial")).write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(out / (MARKER + ".partial"), out / MARKER)  # last: only now is the folder complete
    (out / IN_PROGRESS).unlink(missing_ok=True)
    return SynthSummary(n, seconds, n / seconds, noise_floor)


def run_synth(args: argparse.Namespace) -> int:
    summary = generate(args.out, args.n, args.seed, volunteers=args.volunteers, workers=args.workers)
    if not summary.reused:
        print(f"wrote {summary.n} synthetic galaxies to {args.out} in {summary.seconds:.1f} s "
              f"({summary.images_per_s:.0f} images/s)")  # fmt: skip
    print(f"noise floor (RMSE of {args.volunteers}-volunteer labels vs infinite volunteers): "
          f"{summary.noise_floor:.4f}")  # fmt: skip
    return 0
