"""How sure a score is: percentile bootstrap intervals over galaxies (and seeds), paired differences between two
models on the same galaxies, and the spread of a score over seeds.

The RMSE of any resample of galaxies follows from the per-galaxy statistics (sum of squared errors sse_i, number
of labelled entries n_i; galaxylib.metrics.scores.per_galaxy_stats):

    RMSE(resample with galaxy multiplicities w) = sqrt(sum_i w_i sse_i / sum_i w_i n_i)

so a replicate is one matrix-vector product and n_boot replicates are computed in chunks (memory ~ chunk x N x 8
bytes; 2,000 replicates of 6,158 galaxies take ~0.1 s).

Pairing: a paired difference draws one galaxy resample per replicate for both models, so galaxy difficulty,
which both share, cancels, and the interval is much narrower than the two single-model intervals combined.
Seeds: with several training seeds per model the statistic is the mean over seeds of each seed's RMSE, and each
replicate also resamples the seeds with replacement. With 3 seeds or fewer that part of the interval is too
narrow (a bootstrap over 3 values underestimates their spread): read the seed sd beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from galaxylib.metrics.scores import per_galaxy_stats

Runs = Sequence[np.ndarray]  # one (N, 37) prediction array per seed, all on the same galaxies

DEFAULT_CHUNK = 256  # replicates at once: 256 x 6,158 x 8 B = 12.6 MB for the weight matrix
N_BOOT = 2000
LEVEL = 0.95


def percentile_interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap draws (NaN draws ignored; NaN, NaN if all are)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    good = np.asarray(draws, np.float64)
    good = good[~np.isnan(good)]
    if good.size == 0:
        return math.nan, math.nan
    alpha = (1 - level) / 2
    low, high = np.quantile(good, [alpha, 1 - alpha])
    return float(low), float(high)


def _galaxy_weights(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(size, n) multiplicities of n galaxies in `size` resamples with replacement (each row sums to n)."""
    idx = rng.integers(0, n, size=(size, n))
    idx += (np.arange(size) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


def _seed_weights(rng: np.random.Generator, n_seeds: int, size: int) -> np.ndarray:
    """(size, n_seeds) weights of seeds resampled with replacement, each row summing to 1."""
    if n_seeds == 1:
        return np.ones((size, 1))
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=size) / n_seeds


def _stack(preds: np.ndarray | Runs, truth: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, S) per-galaxy sse of each seed and the (N,) label counts (the same for every seed)."""
    runs = [preds] if isinstance(preds, np.ndarray) and preds.ndim == 2 else list(preds)
    if not runs:
        raise ValueError(f"{name}: no runs (seeds) given")
    sses, count = [], None
    for k, run in enumerate(runs):
        try:
            sse, count = per_galaxy_stats(run, truth)
        except ValueError as err:
            raise ValueError(f"{name}, seed {k + 1}: {err}") from err
        sses.append(sse)
    return np.stack(sses, axis=1), count


def _mean_seed_rmse(sse: np.ndarray, count: np.ndarray) -> float:
    """The point estimate: each seed's RMSE over every galaxy, averaged over the seeds."""
    return float(np.mean(np.sqrt(sse.sum(0) / count.sum())))


def _rmse_per_seed(weights: np.ndarray, sse: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(B, S) RMSE of each seed in each of B resamples: (B, N) weights, (N, S) sse, (N,) count."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt((weights @ sse) / (weights @ count)[:, None])


@dataclass(frozen=True)
class BootstrapResult:
    """A (mean-over-seeds) RMSE and its percentile interval over galaxies.

    Attributes:
        estimate: the RMSE on all galaxies (the mean over seeds of each seed's RMSE).
        low: lower end of the interval.
        high: upper end.
        level: nominal coverage, e.g. 0.95.
        n_boot: bootstrap replicates.
        n_galaxies: galaxies scored.
        n_seeds: seeds averaged.
    """

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int
    n_galaxies: int
    n_seeds: int


def bootstrap_rmse(pred: np.ndarray | Runs, truth: np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
                   level: float = LEVEL, *, resample_seeds: bool = False,
                   chunk: int = DEFAULT_CHUNK) -> BootstrapResult:  # fmt: skip
    """Percentile bootstrap of the RMSE over galaxies.

    Args:
        pred: one (N, K) prediction array, or one per seed (then the statistic is the mean over seeds).
        truth: (N, K) labels, NaN where unlabelled.
        n_boot: replicates.
        seed: seed of the generator that draws the resamples.
        level: nominal coverage.
        resample_seeds: resample the seeds too (default: galaxies only, i.e. how much the score would move on
            another validation set of the same size).
        chunk: replicates computed at once.

    Returns:
        A BootstrapResult.
    """
    t = np.asarray(truth, np.float64)
    sse, count = _stack(pred, t, "pred")
    n, s = sse.shape
    estimate = _mean_seed_rmse(sse, count)
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        per_seed = _rmse_per_seed(_galaxy_weights(rng, n, size), sse, count)
        sw = _seed_weights(rng, s, size) if resample_seeds else np.full((size, s), 1.0 / s)
        draws[start : start + size] = (per_seed * sw).sum(1)
    low, high = percentile_interval(draws, level)
    return BootstrapResult(estimate, low, high, level, n_boot, n, s)


@dataclass(frozen=True)
class PairedResult:
    """A paired bootstrap of mean-over-seeds RMSE(a) minus RMSE(b) on the same galaxies (negative: a is better).

    Attributes:
        difference: RMSE(a) - RMSE(b) on all galaxies (each the mean over its seeds).
        low: lower end of the interval.
        high: upper end.
        level: nominal coverage.
        n_galaxies: galaxies scored (the same for both).
        n_seeds_a: seeds of a.
        n_seeds_b: seeds of b.
        rmse_a: RMSE of a.
        rmse_b: RMSE of b.
        paired_seeds: whether seed k of a was resampled together with seed k of b.
        draws: the replicates (kept only with keep_draws, e.g. for an adjusted level).
    """

    difference: float
    low: float
    high: float
    level: float
    n_galaxies: int
    n_seeds_a: int
    n_seeds_b: int
    rmse_a: float
    rmse_b: float
    paired_seeds: bool
    draws: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def interval(self) -> tuple[float, float]:
        """(low, high)."""
        return self.low, self.high


def paired_difference(preds_a: np.ndarray | Runs, preds_b: np.ndarray | Runs, truth: np.ndarray,
                      n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL, *,
                      paired_seeds: bool | None = None, chunk: int = DEFAULT_CHUNK,
                      keep_draws: bool = False) -> PairedResult:  # fmt: skip
    """Paired bootstrap of mean_s RMSE(a_s) - mean_t RMSE(b_t) on the same galaxies.

    Each replicate draws one galaxy resample for both models and, for each, a resample of its seeds.

    Args:
        preds_a: (N, K) predictions of model a per seed (or one array: one seed).
        preds_b: the same for model b, same galaxies in the same order; its number of seeds may differ.
        truth: (N, K) labels, NaN where unlabelled.
        n_boot: replicates.
        seed: seed of the generator that draws the resamples.
        level: nominal coverage.
        paired_seeds: resample seed k of a together with seed k of b (right when run k of both shares a training
            seed, hence its batch order). Default: paired when both have as many seeds. With paired seeds,
            identical inputs give exactly 0 in every replicate, hence the interval (0, 0).
        chunk: replicates computed at once.
        keep_draws: keep the replicates in the result.

    Returns:
        A PairedResult.

    Raises:
        ValueError: on mismatched shapes, or paired_seeds=True with unequal seed counts.
    """
    t = np.asarray(truth, np.float64)
    sse_a, count = _stack(preds_a, t, "model a")
    sse_b, _ = _stack(preds_b, t, "model b")
    n, sa = sse_a.shape
    sb = sse_b.shape[1]
    paired_seeds = sa == sb if paired_seeds is None else paired_seeds
    if paired_seeds and sa != sb:
        raise ValueError(f"paired seeds need as many seeds on both sides, got {sa} and {sb}")
    rmse_a, rmse_b = _mean_seed_rmse(sse_a, count), _mean_seed_rmse(sse_b, count)
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        w = _galaxy_weights(rng, n, size)
        swa = _seed_weights(rng, sa, size)
        swb = swa if paired_seeds else _seed_weights(rng, sb, size)
        draws[start : start + size] = ((_rmse_per_seed(w, sse_a, count) * swa).sum(1)
                                       - (_rmse_per_seed(w, sse_b, count) * swb).sum(1))  # fmt: skip
    low, high = percentile_interval(draws, level)
    return PairedResult(rmse_a - rmse_b, low, high, level, n, sa, sb, rmse_a, rmse_b, bool(paired_seeds),
                        draws if keep_draws else np.empty(0))  # fmt: skip


@dataclass(frozen=True)
class SeedSummary:
    """A score over seeds.

    Attributes:
        mean: mean over seeds.
        sd: sample standard deviation (ddof=1); NaN for one seed.
        n: seeds.
    """

    mean: float
    sd: float
    n: int

    def __str__(self) -> str:
        if self.n == 0:
            return "no runs"
        sd = "n/a (1 seed)" if self.n == 1 else f"{self.sd:.5f}"
        return f"{self.mean:.5f} ± {sd} (n={self.n})"


def seed_summary(values: Sequence[float] | np.ndarray) -> SeedSummary:
    """Mean, sample sd (ddof=1) and number of per-seed scores (sd NaN for one seed; all NaN for none)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return SeedSummary(math.nan, math.nan, 0)
    return SeedSummary(float(v.mean()), float(np.std(v, ddof=1)) if v.size > 1 else math.nan, int(v.size))
