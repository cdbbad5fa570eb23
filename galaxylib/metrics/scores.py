"""Scores: exact RMSE over every labelled entry (overall, per question, per galaxy), the mean-predictor
reference, and scoring a submission file against label files.

The paper averaged per-batch RMSE values, which over-weights the last partial batch; here the RMSE is exact:
the square root of the mean squared error over every labelled entry (NaN entries of partial labels are skipped).
Its per-galaxy sufficient statistics (sum of squared errors, number of labelled entries) give the RMSE of any
resample of galaxies in one product, which is what makes the bootstrap (galaxylib.metrics.bootstrap) fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from galaxylib import tree
from galaxylib.errors import UserError


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Kaggle's RMSE over all entries where `truth` is labelled (not NaN); NaN when nothing is labelled."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    mask = ~np.isnan(truth)
    if not mask.any():
        return float("nan")
    return float(np.sqrt(np.mean((pred[mask] - truth[mask]) ** 2)))


def per_galaxy_stats(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-galaxy sufficient statistics of the RMSE.

    Args:
        pred: (N, K) predictions.
        truth: (N, K) labels; NaN marks an unlabelled entry, which is left out.

    Returns:
        (sse, count): (N,) sums of squared errors over the labelled entries and (N,) numbers of labelled entries,
        so that rmse = sqrt(sse.sum() / count.sum()).

    Raises:
        ValueError: on mismatched shapes, or a NaN prediction where a label exists.
    """
    p, t = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and labels {t.shape} must be the same (galaxies, outputs) shape")
    labelled = ~np.isnan(t)
    if np.isnan(p[labelled]).any():
        raise ValueError("a prediction is NaN where a label exists")
    diff = np.where(labelled, p - np.where(labelled, t, 0.0), 0.0)
    return np.einsum("ij,ij->i", diff, diff), labelled.sum(1).astype(np.float64)


def rmse_from_stats(sse: np.ndarray, count: np.ndarray, weights: np.ndarray | None = None) -> float:
    """RMSE of a (weighted) set of galaxies from their per-galaxy statistics.

    Args:
        sse: (N,) sums of squared errors.
        count: (N,) numbers of labelled entries.
        weights: (N,) galaxy multiplicities (a bootstrap resample); default all 1.

    Returns:
        sqrt(sum w*sse / sum w*count); NaN when nothing is labelled.
    """
    sse, count = np.asarray(sse, np.float64), np.asarray(count, np.float64)
    w = np.ones_like(sse) if weights is None else np.asarray(weights, np.float64)
    total = float(w @ count)
    return float(np.sqrt(float(w @ sse) / total)) if total > 0 else float("nan")


def per_question_rmse(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE of each question's columns (NaN where that question is not labelled), plus the overall value."""
    out = {f"Q{q.number}": rmse(pred[:, q.slice], truth[:, q.slice]) for q in tree.QUESTIONS}
    out["all"] = rmse(pred, truth)
    return out


def mean_predictor(train_labels: np.ndarray) -> np.ndarray:
    """The reference every model must beat: each column's mean over the training labels (0 where unlabelled)."""
    labels = np.asarray(train_labels, np.float64)
    labelled = ~np.isnan(labels)
    sums = np.where(labelled, labels, 0.0).sum(0)
    counts = labelled.sum(0)
    return np.divide(sums, counts, out=np.zeros(labels.shape[1]), where=counts > 0)


def score_files(pred_path: str | Path, truth_paths) -> dict[str, float]:
    """RMSE of a submission against label files (matched by GalaxyID; partial labels allowed).

    Both files are validated first (the submission as Kaggle's format, the labels as check-data does).

    Args:
        pred_path: a submission CSV (GalaxyID + the 37 columns).
        truth_paths: label CSVs or Kaggle-layout folders holding one.

    Returns:
        {"Q1": ..., ..., "Q11": ..., "all": ...}.
    """
    from galaxylib.data import read_labels
    from galaxylib.prediction import check_submission

    pred = check_submission(pred_path).set_index(tree.ID_COLUMN)
    truth = read_labels(truth_paths)
    missing = pred.index.difference(truth.index)
    if len(missing):
        raise UserError(f"{pred_path}: {len(missing)} GalaxyIDs have no label row, e.g. {missing[0]}")
    truth = truth.loc[pred.index]
    if truth.isna().all(axis=None):
        raise UserError(f"{pred_path}: nothing to score: the label files hold no values for its "
                        f"{len(pred)} galaxies")
    return per_question_rmse(pred.to_numpy(np.float64), truth.to_numpy(np.float64))
