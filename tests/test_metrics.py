"""Scores and how sure they are: exact RMSE and its per-galaxy statistics, the bootstrap on known cases (intervals
that shrink like 1/sqrt(N), identical predictions, coverage near 95 %), and the label-noise floor against the
synthetic truth."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from galaxylib import metrics, synth, tree
from galaxylib.metrics import noise


def _fake(rng: np.random.Generator, n: int, scales: dict[str, float], seeds: int = 3, rho: float = 0.8,
          spread: float = 0.3) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:  # fmt: skip
    """Labels and per-row, per-seed predictions whose error sd is scale * g_i (g_i: the galaxy's difficulty,
    lognormal), correlated across rows through a shared component, as two models' errors are."""
    truth = rng.uniform(0, 1, (n, 37))
    g = np.exp(rng.normal(0, spread, n))[:, None]
    common = rng.standard_normal((n, 37))
    runs = {name: [truth + g * scale * (rho * common + math.sqrt(1 - rho**2) * rng.standard_normal((n, 37)))
                   for _ in range(seeds)] for name, scale in scales.items()}  # fmt: skip
    return truth, runs


G_RMS = math.exp(0.3**2)  # sqrt(E[g^2]) for g ~ lognormal(0, 0.3): the population RMSE is scale * G_RMS


# ----------------------------------------------------------------------------------------------------------
# scores


def test_rmse_skips_unlabelled_entries_and_matches_its_per_galaxy_statistics():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, (50, 37))
    truth[rng.uniform(size=truth.shape) < 0.3] = np.nan
    pred = rng.uniform(0, 1, (50, 37))
    labelled = ~np.isnan(truth)
    direct = math.sqrt(np.mean((pred[labelled] - truth[labelled]) ** 2))
    assert metrics.rmse(pred, truth) == pytest.approx(direct, rel=1e-12)
    sse, count = metrics.per_galaxy_stats(pred, truth)
    assert count.sum() == labelled.sum()
    assert metrics.rmse_from_stats(sse, count) == pytest.approx(direct, rel=1e-12)
    idx = rng.integers(0, 50, 50)  # a resample's RMSE from the statistics = the RMSE of the resampled arrays
    weights = np.bincount(idx, minlength=50)
    assert metrics.rmse_from_stats(sse, count, weights) == pytest.approx(metrics.rmse(pred[idx], truth[idx]))
    with pytest.raises(ValueError, match="shape"):
        metrics.per_galaxy_stats(pred[:, :36], truth)
    bad = pred.copy()
    bad[labelled] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        metrics.per_galaxy_stats(bad, truth)


def test_the_old_import_path_still_works():
    from galaxylib.metrics import mean_predictor, per_question_rmse, rmse, score_files  # noqa: F401

    labels = np.array([[0.2, np.nan], [0.4, 1.0]])
    assert metrics.mean_predictor(labels).tolist() == pytest.approx([0.3, 1.0])


def test_seed_summary():
    s = metrics.seed_summary([0.075, 0.076, 0.077])
    assert (s.mean, s.sd, s.n) == (pytest.approx(0.076), pytest.approx(0.001), 3)
    one = metrics.seed_summary([0.075])
    assert one.n == 1 and one.mean == 0.075 and math.isnan(one.sd) and "1 seed" in str(one)
    assert metrics.seed_summary([]).n == 0


# ----------------------------------------------------------------------------------------------------------
# the bootstrap on known cases


def test_interval_shrinks_like_one_over_sqrt_n():
    rng = np.random.default_rng(1)
    widths = {}
    for n in (100, 1600):
        w = []
        for rep in range(5):  # one small-N width is itself noisy: average five validation sets
            truth, runs = _fake(rng, n, {"m": 0.075}, seeds=1)
            res = metrics.bootstrap_rmse(runs["m"][0], truth, n_boot=1000, seed=rep)
            assert res.low < res.estimate < res.high and res.n_galaxies == n
            w.append(res.high - res.low)
        widths[n] = float(np.mean(w))
    assert 3.2 < widths[100] / widths[1600] < 4.8  # sqrt(1600 / 100) = 4


def test_bootstrap_is_reproducible_and_averages_the_seeds():
    truth, runs = _fake(np.random.default_rng(2), 300, {"m": 0.05}, seeds=2)
    a = metrics.bootstrap_rmse(runs["m"], truth, n_boot=500, seed=7, chunk=64)
    assert a == metrics.bootstrap_rmse(runs["m"], truth, n_boot=500, seed=7, chunk=64)
    assert a.n_seeds == 2 and a.estimate == pytest.approx(np.mean([metrics.rmse(p, truth) for p in runs["m"]]))


def test_identical_predictions_give_a_paired_difference_of_exactly_zero():
    truth, runs = _fake(np.random.default_rng(3), 400, {"m": 0.07}, seeds=3)
    copies = [p.copy() for p in runs["m"]]
    res = metrics.paired_difference(runs["m"], copies, truth, n_boot=1000)
    assert res.difference == 0.0 and res.interval == (0.0, 0.0)
    assert (res.n_galaxies, res.n_seeds_a, res.n_seeds_b, res.paired_seeds) == (400, 3, 3, True)
    single = metrics.paired_difference(runs["m"][0], copies[0], truth, n_boot=200, seed=1)
    assert single.difference == 0.0 and single.interval == (0.0, 0.0)


def test_pairing_makes_the_interval_narrower_and_unequal_seeds_are_resampled_independently():
    truth, runs = _fake(np.random.default_rng(4), 500, {"a": 0.070, "b": 0.072}, seeds=3)
    res = metrics.paired_difference(runs["a"], runs["b"][:2], truth, n_boot=1000)
    assert (res.n_seeds_a, res.n_seeds_b, res.paired_seeds) == (3, 2, False)
    assert res.low <= res.difference <= res.high < 0  # a is better, and the shared difficulty cancels
    single = [metrics.bootstrap_rmse(runs[k], truth, 1000, 5) for k in ("a", "b")]
    assert res.high - res.low < 0.5 * sum(r.high - r.low for r in single)
    with pytest.raises(ValueError, match="as many seeds"):
        metrics.paired_difference(runs["a"], runs["b"][:2], truth, n_boot=10, paired_seeds=True)


def test_paired_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(5)
    true_diff = (0.050 - 0.051) * G_RMS
    hits = 0
    for rep in range(200):
        truth, runs = _fake(rng, 200, {"a": 0.050, "b": 0.051}, seeds=1)
        res = metrics.paired_difference(runs["a"], runs["b"], truth, n_boot=200, seed=rep)
        hits += res.low <= true_diff <= res.high
    assert 0.88 <= hits / 200 <= 0.99


def test_rmse_interval_covers_the_population_rmse_about_95_percent_of_the_time():
    rng = np.random.default_rng(6)
    hits = 0
    for rep in range(200):
        truth, runs = _fake(rng, 200, {"m": 0.06}, seeds=1)
        res = metrics.bootstrap_rmse(runs["m"][0], truth, n_boot=200, seed=rep)
        hits += res.low <= 0.06 * G_RMS <= res.high
    assert 0.88 <= hits / 200 <= 0.99


# ----------------------------------------------------------------------------------------------------------
# the noise floor against the synthetic truth


def test_one_walk_for_one_galaxy_and_for_many():
    """The generator's single-galaxy walk is the batch walk of the noise floor, draw for draw."""
    for i in range(20):
        probs = synth.answer_probabilities(synth.sample_galaxy(synth.galaxy_streams(0, i)[0]))
        one = synth.simulate_votes(np.random.default_rng(i), probs, 40)
        many = synth.simulate_votes_many(np.random.default_rng(i), probs[None], 40)[0]
        np.testing.assert_array_equal(one, many)
        assert tree.check_constraints(one[None], [i], tol=1e-9) == []


@cache
def _synthetic(volunteers: int, n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels rounded as in the CSV, expected values, true vote counts) of n synthetic galaxies, no images."""
    labels, expected, votes = [], [], []
    for i in range(n):
        _, lab, exp = synth.make_galaxy(seed, i, volunteers)
        vote_rng = synth.galaxy_streams(seed, i)[1]  # make_galaxy's first draw from this stream is the count
        votes.append(max(1, int(round(volunteers * vote_rng.uniform(0.75, 1.25)))))
        labels.append(lab)
        expected.append(exp)
    return np.round(np.array(labels), 6), np.array(expected), np.array(votes)


@pytest.mark.parametrize("volunteers", [20, 40, 80])
def test_floor_estimated_from_the_labels_matches_the_synthetic_truth(volunteers):
    labels, expected, votes = _synthetic(volunteers)
    true = metrics.noise_floor_from_synthetic(labels, expected)
    closed = metrics.noise_floor(labels, votes=volunteers)
    boot = metrics.noise_floor_from_labels(labels, votes=volunteers, n_sim=20)
    assert closed.rmse == pytest.approx(true, rel=0.06)  # measured: within 3.4 % at 400 galaxies
    assert boot.rmse == pytest.approx(true, rel=0.06)
    assert boot.rmse == pytest.approx(closed.rmse, rel=0.02)  # two routes to the same quantity
    assert closed.votes == str(volunteers) and closed.n_galaxies == 400


def test_floor_scales_like_one_over_sqrt_votes_and_the_bias_correction_is_n_over_n_minus_1():
    floors = {v: metrics.noise_floor(_synthetic(v)[0], v).rmse for v in (20, 80)}
    assert floors[20] / floors[80] == pytest.approx(2.0, rel=0.1)
    labels, expected, votes = _synthetic(40)
    plug_in = metrics.noise_floor(labels, votes, unbiased=False).rmse
    unbiased = metrics.noise_floor(labels, votes).rmse
    assert unbiased / plug_in == pytest.approx(math.sqrt(40 / 39), rel=0.01)
    # with the true vote counts the estimate is close to the walk's exact expectation
    assert unbiased == pytest.approx(metrics.expected_floor(expected, votes), rel=0.03)


def test_floor_of_partial_labels_is_over_the_labelled_entries_only():
    labels = _synthetic(40)[0]
    partial = labels.copy()
    keep = np.r_[tree.QUESTIONS[0].slice, tree.QUESTIONS[1].slice]  # Q1 and Q2 only, as if the rest were absent
    partial[:, np.setdiff1d(np.arange(37), keep)] = np.nan
    var = noise.label_noise_variance(labels)
    assert metrics.noise_floor(partial).rmse == pytest.approx(math.sqrt(var[:, keep].mean()), rel=1e-12)
    assert metrics.noise_floor(labels, columns=tree.QUESTIONS[0].slice).rmse == pytest.approx(
        math.sqrt(var[:, tree.QUESTIONS[0].slice].mean()))
    with pytest.raises(ValueError, match="fully labelled"):
        metrics.noise_floor_from_labels(partial)


def test_vote_counts_are_recovered_from_synthetic_labels():
    labels, _, votes = _synthetic(40)
    found = metrics.infer_votes(labels, max_votes=100)
    assert np.all(votes % found == 0)  # always a divisor of the true count
    assert np.mean(metrics.resolve_votes(found, prior=40) == votes) > 0.97


def test_real_labels_are_weighted_so_no_vote_count_fits(sample_dir):
    from galaxylib.data import read_labels

    labels = read_labels([sample_dir]).to_numpy()
    assert (metrics.infer_votes(labels, max_votes=200) == 0).mean() > 0.95
    floor = metrics.noise_floor(labels)
    assert 0.03 < floor.rmse < 0.05  # ~0.040 at 40 votes (a lower bound: the labels are weighted)
    assert metrics.noise_floor_from_labels(labels, n_sim=10).rmse == pytest.approx(floor.rmse, rel=0.03)
