"""Scores: exact RMSE over every labelled entry (overall and per question), the mean-predictor reference, and
scoring a submission file against label files.

The paper averaged per-batch RMSE values, which over-weights the last partial batch; here the RMSE is exact:
the square root of the mean squared error over every labelled entry (NaN entries of partial labels are skipped).
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
    from galaxylib.predict import check_submission

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
