"""The latent truth of a synthetic galaxy: a morphology drawn from a mix calibrated against the real Kaggle sample
(../shared/docs/synthetic_galaxies.md), and the visibility that decides how well volunteers can see it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

KINDS = ("elliptical", "disk", "irregular", "merger", "star", "artifact")
# Morphology mix, calibrated against the real sample's label means (see galaxylib.synth).
KIND_WEIGHTS = (0.31, 0.6, 0.025, 0.045, 0.007, 0.004)

RE_MEDIAN = 18.0  # half-light radius, render pixels: galaxies span 15-40 % of the frame, as in the real sample
SB_MEDIAN = 45.0  # surface brightness at re, sky-noise units: matches the real frames' radial profiles


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
