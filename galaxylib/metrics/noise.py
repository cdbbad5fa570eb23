"""The label-noise floor: the RMSE a perfect model would score, because each galaxy's labels come from ~40
volunteers rather than infinitely many.

Model (the walk of galaxylib.synth.volunteers): each volunteer walks the decision tree independently. Every
cumulative Kaggle value except Q6 and Q8 is (volunteers whose path passes through that answer) / n, so its count
is exactly Binomial(n, pi) with pi the infinite-volunteer value: Var = pi (1 - pi) / n, whatever the tree. Q6 and
Q8 are counts over the m = n (1 - Class1.3) volunteers who did not answer star/artifact: Var = pi (1 - pi) / m.
For a label v = k/n, E[v (1 - v)] = pi (1 - pi) (1 - 1/n), so v (1 - v) / (n - 1) is an unbiased estimate of each
entry's squared error against the truth; the floor is the root of its mean over the labelled entries
(`noise_floor`, which handles partial labels the way the RMSE does).

The second route, `noise_floor_from_labels`, is a parametric bootstrap: take the labels as the truth, let n
volunteers walk the tree again (the same walk that made the synthetic labels) and average the squared error,
corrected by n / (n - 1) for the same plug-in bias. The two agree within 1 %; on synthetic data, where the true
floor is known (`noise_floor_from_synthetic`: expected_solutions.csv holds the infinite-volunteer values), both
land within a few per cent of it (tests/test_metrics.py).

Real Galaxy Zoo 2 labels are consistency-weighted vote fractions (Willett et al. 2013): the variance of a
weighted fraction is pi (1 - pi) / n_eff with n_eff <= n, so the binomial floor at the raw vote count is a lower
bound there. The vote count cannot be read off the real labels (they are not multiples of 1/n); on synthetic
labels it can (`infer_votes`, `resolve_votes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from galaxylib import tree
from galaxylib.metrics.scores import rmse

VOTES = 40  # the typical number of classifications per Kaggle galaxy (40-50; the synthetic default too)

_STAR = tree.COLUMNS.index("Class1.3")
# Q6 is asked of every volunteer who did not answer star/artifact, and Q8 of those who said "odd" there: Kaggle
# divided both by the non-star volunteers, every other value by all volunteers
_NOT_STAR_COLUMNS = np.r_[tree.QUESTIONS[5].slice, tree.QUESTIONS[7].slice]
_ALL_VOTER_COLUMNS = np.setdiff1d(np.arange(tree.NUM_OUTPUTS), _NOT_STAR_COLUMNS)


@dataclass(frozen=True)
class NoiseFloor:
    """An estimate of the label-noise floor.

    Attributes:
        rmse: the floor (RMSE of the finite-vote labels against the infinite-vote truth).
        sd: Monte-Carlo sd of one simulated floor (parametric bootstrap); 0 for the closed form.
        votes: the vote counts assumed ("40", or "per galaxy ...").
        method: how it was computed.
        n_galaxies: galaxies it was computed on.
    """

    rmse: float
    sd: float
    votes: str
    method: str
    n_galaxies: int

    def describe(self) -> str:
        """One line for captions, e.g. 'label-noise floor 0.0402 (binomial, 40 votes per galaxy, 150 galaxies)'."""
        return (f"label-noise floor {self.rmse:.4f} ({self.method}, {self.votes} votes per galaxy, "
                f"{self.n_galaxies} galaxies)")  # fmt: skip


def _votes_array(votes, n: int) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(votes, dtype=np.float64), (n,)).copy()
    if np.isnan(arr).any() or (arr < 1).any():
        raise ValueError("votes must be at least 1 for every galaxy")
    return arr


def _describe_votes(votes: np.ndarray) -> str:
    if votes.size and np.all(votes == votes[0]):
        return f"{votes[0]:g}"
    return f"per galaxy (mean {votes.mean():.1f}, {votes.min():g}-{votes.max():g})"


def label_noise_variance(labels: np.ndarray, votes=VOTES, *, unbiased: bool = True) -> np.ndarray:
    """(N, 37) estimated squared error of each label against its infinite-volunteer value (NaN where unlabelled).

    v (1 - v) / (n - 1) for the all-voter columns and v (1 - v) / (m - 1) for Q6 and Q8, m = n (1 - Class1.3)
    (module docstring); with unbiased=False the plug-in v (1 - v) / n. Where Class1.3 is not labelled, m = n;
    where (almost) everyone answered star (m <= 1), Q6 and Q8 count 0.

    Args:
        labels: (N, 37) cumulative Kaggle values, NaN where unlabelled.
        votes: volunteers per galaxy, a number or (N,).
        unbiased: divide by n - 1 (unbiased) instead of n.

    Returns:
        (N, 37) variances.
    """
    v = np.clip(np.asarray(labels, np.float64), 0.0, 1.0)
    if v.ndim != 2 or v.shape[1] != tree.NUM_OUTPUTS:
        raise ValueError(f"labels must be (galaxies, {tree.NUM_OUTPUTS}), got {v.shape}")
    n = _votes_array(votes, v.shape[0])[:, None]
    star = np.nan_to_num(v[:, _STAR : _STAR + 1], nan=0.0)
    m = n * (1.0 - star)
    shift = 1.0 if unbiased else 0.0
    var = v * (1 - v)
    out = var / np.maximum(n - shift, 1.0)
    not_star = np.where(m > shift, var[:, _NOT_STAR_COLUMNS] / np.maximum(m - shift, 1.0), 0.0)
    out[:, _NOT_STAR_COLUMNS] = np.where(np.isnan(var[:, _NOT_STAR_COLUMNS]), np.nan, not_star)
    return out


def noise_floor(labels: np.ndarray, votes=VOTES, *, columns: slice | None = None,
                unbiased: bool = True) -> NoiseFloor:  # fmt: skip
    """The closed-form binomial noise floor of a set of labels: the root of the mean estimated squared error over
    the labelled entries, i.e. the floor of the RMSE computed on the same entries.

    Args:
        labels: (N, 37) labels, NaN where unlabelled (partial labels are fine).
        votes: volunteers per galaxy, a number or (N,).
        columns: only these columns (e.g. one question's slice); default all 37.
        unbiased: the n - 1 estimate (default) or the plug-in.

    Returns:
        A NoiseFloor (NaN when nothing is labelled).
    """
    var = label_noise_variance(labels, votes, unbiased=unbiased)
    if columns is not None:
        var = var[:, columns]
    labelled = ~np.isnan(var)
    floor = math.sqrt(float(var[labelled].mean())) if labelled.any() else math.nan
    n = _votes_array(votes, var.shape[0])
    return NoiseFloor(floor, 0.0, _describe_votes(n), "binomial" + ("" if unbiased else ", plug-in"), var.shape[0])


def noise_floor_from_synthetic(labels: np.ndarray, expected: np.ndarray) -> float:
    """The true floor of synthetic data: RMSE of the finite-volunteer labels against the infinite-volunteer values
    (expected_solutions.csv of a synth folder)."""
    return rmse(labels, expected)


def conditionals_from_labels(labels: np.ndarray) -> np.ndarray:
    """(N, 37) conditional answer distributions recovered from full cumulative labels.

    Each question's answers are divided by their sum (the parent weight, up to the labels' 6-decimal rounding),
    so each slice sums to exactly 1. A question nobody reached gets the uniform distribution: no simulated
    volunteer reaches it either, so any valid one will do.

    Raises:
        ValueError: when a label is NaN (the walk needs every question).
    """
    v = np.clip(np.asarray(labels, np.float64), 0.0, None)
    if np.isnan(v).any():
        raise ValueError("the parametric noise floor needs fully labelled galaxies (no NaN)")
    cond = np.empty_like(v)
    for s in tree.QUESTION_SLICES:
        part = v[:, s]
        total = part.sum(1, keepdims=True)
        reached = total > 1e-9
        cond[:, s] = np.where(reached, part / np.where(reached, total, 1.0), 1.0 / part.shape[1])
    return cond


def noise_floor_from_labels(labels: np.ndarray, votes=VOTES, n_sim: int = 20, seed: int = 0, *,
                            bias_correction: bool = True) -> NoiseFloor:  # fmt: skip
    """Parametric-bootstrap noise floor: re-run the volunteers' walk on the labels taken as the truth.

    Args:
        labels: (N, 37) full labels.
        votes: volunteers per galaxy (a number, or (N,)); rounded to integers.
        n_sim: re-simulations, each over all galaxies at once.
        seed: seed of the generator.
        bias_correction: multiply each galaxy's squared error by n / (n - 1) (module docstring).

    Returns:
        A NoiseFloor whose sd is the spread of one simulated floor of N galaxies.
    """
    from galaxylib.synth.volunteers import simulate_votes_many  # the walk that made the synthetic labels

    v = np.asarray(labels, np.float64)
    cond = conditionals_from_labels(v)
    n = np.maximum(np.rint(_votes_array(votes, v.shape[0])), 1)
    factor = n / np.maximum(n - 1, 1) if bias_correction else np.ones_like(n)
    rng = np.random.default_rng(seed)
    mses = np.empty(n_sim)
    for k in range(n_sim):
        sse = ((simulate_votes_many(rng, cond, n) - v) ** 2).sum(1)
        mses[k] = float((sse * factor).sum() / v.size)
    sd = float(np.std(np.sqrt(mses), ddof=1)) if n_sim > 1 else math.nan
    method = "parametric bootstrap" + ("" if bias_correction else ", plug-in")
    return NoiseFloor(math.sqrt(float(mses.mean())), sd, _describe_votes(n), method, v.shape[0])


def expected_floor(expected: np.ndarray, votes) -> float:
    """The exact expected floor when the truth is known (synthetic): sqrt(E[MSE(labels, truth)]) under the walk.

    pi (1 - pi) / n for the all-voter columns; for Q6 and Q8 the expectation over m ~ Binomial(n, 1 - pi_star) of
    pi (1 - pi) / m (m > 0), plus the m = 0 case (Q6 = (0, 1), Q8 = 0).

    Args:
        expected: (N, 37) infinite-volunteer values.
        votes: volunteers per galaxy, a number or (N,) integers.
    """
    from scipy.stats import binom

    e = np.asarray(expected, np.float64)
    n = np.rint(_votes_array(votes, e.shape[0])).astype(np.int64)
    var = e * (1 - e)
    total = float((var[:, _ALL_VOTER_COLUMNS].sum(1) / n).sum())
    q6, q8 = tree.QUESTIONS[5].slice, tree.QUESTIONS[7].slice
    for i in range(e.shape[0]):
        k = np.arange(n[i] + 1)
        pmf = binom.pmf(k, n[i], 1.0 - e[i, _STAR])
        inv = float((pmf[1:] / k[1:]).sum())  # E[1/m; m > 0]
        everyone_star = ((e[i, q6] - (0.0, 1.0)) ** 2).sum() + (e[i, q8] ** 2).sum()
        total += var[i, _NOT_STAR_COLUMNS].sum() * inv + pmf[0] * everyone_star
    return math.sqrt(total / e.size)


def infer_votes(labels: np.ndarray, max_votes: int = 200, decimals: int = 6) -> np.ndarray:
    """Per galaxy, the smallest n for which every all-voter value is a multiple of 1/n (0: none up to max_votes).

    Synthetic labels are exact k/n fractions, so this is n / gcd(n, all counts), a divisor of the true n
    (`resolve_votes` picks the multiple nearest a prior). Q6 and Q8 are left out (their denominator is the
    non-star count). Real Galaxy Zoo labels are weighted and fit no n (module docstring).

    Args:
        labels: (N, 37) labels rounded to `decimals` decimals (as in the CSV files).
        max_votes: the largest n tried.
        decimals: the rounding of the stored values; the tolerance is half a unit of it, times n.
    """
    v = np.asarray(labels, np.float64)[:, _ALL_VOTER_COLUMNS]
    tol = 0.5 * 10.0**-decimals + 1e-12
    found = np.zeros(v.shape[0], np.int64)
    todo = np.ones(v.shape[0], bool)
    for n in range(1, max_votes + 1):
        k = v[todo] * n
        fits = np.all(np.abs(k - np.rint(k)) <= tol * n, axis=1)
        idx = np.flatnonzero(todo)[fits]
        found[idx] = n
        todo[idx] = False
        if not todo.any():
            break
    return found


def resolve_votes(denominators: np.ndarray, prior: float = VOTES) -> np.ndarray:
    """Per-galaxy vote counts: the multiple of each inferred denominator nearest `prior` (0 -> `prior`)."""
    d = np.asarray(denominators, np.float64)
    multiple = np.maximum(np.rint(prior / np.where(d > 0, d, 1.0)), 1.0)
    return np.where(d > 0, d * multiple, float(prior))
