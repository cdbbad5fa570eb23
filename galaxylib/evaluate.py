"""Scores and predictions: exact RMSE (overall and per question), TTA prediction, Kaggle submission files.

The paper averaged per-batch RMSE values, which over-weights the last partial batch; here the RMSE is exact:
the square root of the mean squared error over every labelled entry (NaN entries of partial labels are skipped).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galaxylib import tree
from galaxylib.augment import affine_resample, tta_params
from galaxylib.cli import UserError


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Kaggle's RMSE over all entries where `truth` is labelled (not NaN)."""
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


def per_column_rmse(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {c: rmse(pred[:, i], truth[:, i]) for i, c in enumerate(tree.COLUMNS)}


def mean_predictor(train_labels: np.ndarray) -> np.ndarray:
    """The reference every model must beat: each column's mean over the training labels."""
    means = np.nanmean(np.asarray(train_labels, np.float64), axis=0)
    return np.nan_to_num(means, nan=0.0)


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, *, source_crop: int, out_size: int, eval_crop: int,
            tta: int = 1, batch_size: int = 256, device: torch.device | str = "cpu",
            amp_dtype: torch.dtype | None = None, channels_last: bool = False,
            progress: bool = False) -> np.ndarray:
    """Predict the 37 values for every cached image (N, S, S, 3) uint8, averaged over `tta` views.

    `tta` = 1 is the plain evaluation transform; `tta` = 2k is the paper's k rotations x {flip, no flip}
    (16 = 8 x 2 by default); an odd `tta` > 1 uses that many rotations without flips. The views are averaged
    with equal weight, as the paper averaged its submission files.
    """
    device = torch.device(device)
    views = [(0.0, False)] if tta <= 1 else (tta_params(tta // 2, True) if tta % 2 == 0 else tta_params(tta, False))
    model.eval()
    out = np.zeros((len(images), tree.NUM_OUTPUTS), np.float64)
    batches = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"predict ({len(views)} views)", unit="batch")
    for start in batches:
        x = images[start : start + batch_size].to(device, non_blocking=True).permute(0, 3, 1, 2)
        acc = torch.zeros((x.shape[0], tree.NUM_OUTPUTS), device=device)
        for angle, flip in views:
            n = x.shape[0]
            v = affine_resample(x, source_crop=source_crop, out_size=out_size,
                                crop=torch.full((n,), float(eval_crop), device=device), max_crop=eval_crop,
                                angle_deg=torch.full((n,), angle, device=device),
                                hflip=torch.full((n,), flip, device=device))
            if channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
            ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
            with ctx:
                acc += model(v).float()
        out[start : start + len(x)] = (acc / len(views)).cpu().numpy()
    return out


def images_in(folders, progress: bool = True) -> tuple[np.ndarray, list[Path]]:
    """GalaxyIDs and paths of every JPEG in the folders (images_test_rev1/, a Kaggle folder, or bare *.jpg)."""
    from galaxylib import data as gdata

    for folder in folders:
        if not Path(folder).is_dir():
            raise UserError(f"{folder}: no such image folder")
    found = [gdata.load_images(folder, progress=progress) for folder in folders]
    return np.concatenate([f.ids for f in found]), [p for f in found for p in f.image_paths]


def predict_files(model: torch.nn.Module, cfg, paths: list[Path], *, tta: int, device: str = "auto",
                  batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """Predictions for image files with a run's settings (`cfg`: a RunConfig): decode once, then `predict`."""
    from galaxylib import data as gdata
    from galaxylib.train import amp_dtype

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    cache = gdata.build_cache(paths, crop=cfg.source_crop, size=cfg.cache_size, progress=progress)
    return predict(model.to(dev), torch.from_numpy(np.array(cache)), source_crop=cfg.source_crop,
                   out_size=cfg.img_size, eval_crop=cfg.eval_crop, tta=tta, batch_size=batch_size, device=dev,
                   amp_dtype=amp_dtype("auto", dev), progress=progress)


def write_submission(galaxy_ids: Iterable[int], preds: np.ndarray, path: str | Path) -> Path:
    """A Kaggle submission: header GalaxyID + the 37 columns in order, one row per image."""
    path = Path(path)
    df = pd.DataFrame(np.asarray(preds, np.float64), columns=list(tree.COLUMNS))
    df.insert(0, tree.ID_COLUMN, np.asarray(list(galaxy_ids), np.int64))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False, float_format="%.6f")
    tmp.replace(path)
    return path


def check_submission(path: str | Path, expected_ids: Iterable[int] | None = None) -> pd.DataFrame:
    """Validate a submission file; raise UserError naming the first problems found. Returns it as a frame."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such submission file")
    try:
        df = pd.read_csv(path)
    except Exception as err:  # pandas raises many types for unreadable files
        raise UserError(f"{path}: not a readable CSV ({err})") from err
    problems = []
    header = list(df.columns)
    expected_header = [tree.ID_COLUMN, *tree.COLUMNS]
    if header != expected_header:
        if header and header[0] == "GalaxyId":  # the spelling of Kaggle's own example file
            header[0] = tree.ID_COLUMN
            df.columns = header
        if header != expected_header:
            missing = [c for c in expected_header if c not in header]
            extra = [c for c in header if c not in expected_header]
            problems.append(f"{path}: header must be GalaxyID + the 37 columns in order"
                            + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else ""))
    if not problems:
        values = df[list(tree.COLUMNS)].apply(pd.to_numeric, errors="coerce")
        bad = values.isna() | (values < 0) | (values > 1)
        for row, col in zip(*np.nonzero(bad.to_numpy()), strict=True):
            problems.append(f"{path}: GalaxyID {df.iloc[row, 0]}, column {tree.COLUMNS[col]}: "
                            f"{df.iloc[row, col + 1]!r} is not a number in [0, 1]")
            if len(problems) >= 10:
                break
        dup = df[tree.ID_COLUMN][df[tree.ID_COLUMN].duplicated()]
        problems += [f"{path}: GalaxyID {g} appears more than once" for g in dup.head(5)]
        if expected_ids is not None:
            want, have = set(map(int, expected_ids)), set(df[tree.ID_COLUMN].astype(np.int64))
            missing = sorted(want - have)
            if missing:
                problems.append(f"{path}: {len(missing)} images have no row, e.g. GalaxyID {missing[0]}")
            extra = sorted(have - want)
            if extra:
                problems.append(f"{path}: {len(extra)} rows have no image, e.g. GalaxyID {extra[0]}")
    if problems:
        raise UserError("\n".join(problems))
    return df


def _read_labels(paths: list[Path]) -> pd.DataFrame:
    frames = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("training_solutions_rev1*.csv"))
            if not found:
                raise UserError(f"{p}: no training_solutions_rev1*.csv in this folder")
            p = found[0]
        if not p.is_file():
            raise UserError(f"{p}: no such label file")
        frames.append(pd.read_csv(p))
    df = pd.concat(frames, ignore_index=True)
    if tree.ID_COLUMN not in df.columns:
        raise UserError(f"{paths[0]}: no {tree.ID_COLUMN} column")
    return df.set_index(tree.ID_COLUMN).reindex(columns=list(tree.COLUMNS))


def score_files(pred_path: Path, truth_paths: list[Path]) -> dict[str, float]:
    """RMSE of a submission against label files (matched by GalaxyID; partial labels allowed)."""
    pred = check_submission(pred_path).set_index(tree.ID_COLUMN)
    truth = _read_labels(truth_paths)
    missing = pred.index.difference(truth.index)
    if len(missing):
        raise UserError(f"{pred_path}: {len(missing)} GalaxyIDs have no label row, e.g. {missing[0]}")
    truth = truth.loc[pred.index]
    return per_question_rmse(pred.to_numpy(np.float64), truth.to_numpy(np.float64))


def run_score(args: argparse.Namespace) -> int:
    scores = score_files(args.pred, args.truth)
    print(f"RMSE over all labelled entries: {scores['all']:.5f}")
    for q in tree.QUESTIONS:
        value = scores[f"Q{q.number}"]
        text = "not labelled" if np.isnan(value) else f"{value:.5f}"
        print(f"  Q{q.number:<2} {q.text:<32} {text}")
    return 0
