"""Simulated volunteers: what a volunteer answers at each of the 11 questions given a galaxy's latent truth, and
~40 volunteers walking the tree, turned into the 37 values exactly as Kaggle weighted them."""

from __future__ import annotations

import numpy as np

from galaxylib import tree
from galaxylib.synth.morphology import Galaxy, _face_on, _sigmoid

_Q = {q.number: q.slice for q in tree.QUESTIONS}


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
    """(37,) Kaggle values from `volunteers` simulated walks down the tree: `simulate_votes_many` for one galaxy
    (the same random stream, so one definition of the walk serves the generator and the noise-floor estimate)."""
    return simulate_votes_many(rng, np.asarray(probs)[None], np.asarray([volunteers]))[0]


def simulate_votes_many(rng: np.random.Generator, probs: np.ndarray, volunteers) -> np.ndarray:
    """(N, 37) Kaggle values from `volunteers` simulated walks down the tree, for N galaxies at once.

    Every volunteer answers Q1; smooth -> Q7; features -> Q2 (edge-on -> Q9; else Q3, Q4, [Q10, Q11], Q5);
    all but star/artifact answer Q6, and odd -> Q8. Answers at a question depend only on the galaxy, so
    the walks are drawn question by question as multinomials. As Kaggle did, each value is the fraction of
    all volunteers giving that answer (the conditional fraction times its parent value), except Q6 and Q8,
    which are fractions of the volunteers who did not answer star/artifact (Q6 sums to 1).

    Args:
        rng: the generator (for one galaxy, the same draws as the galaxy's own vote stream).
        probs: (N, 37) conditional answer probabilities, each question's slice summing to 1.
        volunteers: volunteers per galaxy, a number or (N,) integers.

    Returns:
        (N, 37) values.
    """
    probs = np.asarray(probs, np.float64)
    n = np.broadcast_to(np.asarray(volunteers), (probs.shape[0],)).astype(np.int64)
    counts = np.zeros_like(probs)

    def ask(question: int, k: np.ndarray) -> np.ndarray:
        c = rng.multinomial(k, probs[:, _Q[question]])
        counts[:, _Q[question]] = c
        return c

    q1 = ask(1, n)
    ask(7, q1[:, 0])
    q2 = ask(2, q1[:, 1])
    ask(9, q2[:, 0])
    ask(3, q2[:, 1])
    q4 = ask(4, q2[:, 1])
    ask(10, q4[:, 0])
    ask(11, q4[:, 0])
    ask(5, q2[:, 1])
    not_star = n - q1[:, 2]
    q6 = ask(6, not_star)
    ask(8, q6[:, 0])
    values = counts / n[:, None]
    seen = np.maximum(not_star, 1)[:, None]
    for question in (6, 8):
        values[:, _Q[question]] = counts[:, _Q[question]] / seen
    # everyone said star/artifact: nobody saw anything odd (Q6 must still sum to 1)
    values[not_star == 0, _Q[6]] = (0.0, 1.0)
    return values


def expected_values(probs: np.ndarray) -> np.ndarray:
    """(37,) values with infinitely many volunteers: the conditionals weighted down the tree."""
    return tree.conditionals_to_targets(probs[None])[0]
