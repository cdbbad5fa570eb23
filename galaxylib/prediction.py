"""Predictions: the 37 values for cached images with test-time views (batch by batch: predict_batches; for a
tensor in memory: predict), for image files with a run's settings (decoded as they are needed), and Kaggle
submission files (written atomically, checked before they are kept). Survey-scale runs that write their rows
as they go, resume and shard: galaxylib.survey."""

from __future__ import annotations

import contextlib
import csv
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galaxylib import tree
from galaxylib.augment import tta_views, views_for
from galaxylib.device import amp_dtype, select_device
from galaxylib.errors import UserError
from galaxylib.fileio import as_paths, atomic_path, ensure_parent

PREDICT_BATCH = 256  # images per forward pass when predicting (no gradients: larger batches than training fit)


@torch.no_grad()
def predict_batches(model: torch.nn.Module, batches: Iterable[torch.Tensor], *, source_crop: int, out_size: int,
                    eval_crop: int, tta: int = 1, device: torch.device | str = "cpu",
                    amp_dtype: torch.dtype | None = None,
                    channels_last: bool = False) -> Iterator[np.ndarray]:  # fmt: skip
    """The 37 values for each batch of cached images, averaged over `tta` views, one batch at a time.

    Args:
        model: a GalaxyModel (any module mapping (B, 3, H, W) to (B, 37)).
        batches: (B, 3, S, S) uint8 batches of the decode-once cache (any device, any memory format) covering
            the centre `source_crop` px of the frame.
        source_crop, out_size, eval_crop: the run's geometry (see galaxylib.augment).
        tta: test-time views (augment.views_for): 1 = one centre view, 16 = the paper's 8 rotations x 2 flips.
        device: where the model runs.
        amp_dtype: autocast dtype (None: fp32).
        channels_last: feed channels_last batches.

    Yields:
        (B, 37) float64 per batch, the views averaged with equal weight, as the paper averaged its submission
        files.
    """
    device = torch.device(device)
    views = views_for(tta)
    model.eval()
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    for batch in batches:
        x = batch.to(device, non_blocking=True)
        acc = torch.zeros((x.shape[0], tree.NUM_OUTPUTS), device=device)
        for v in tta_views(x, source_crop=source_crop, out_size=out_size, eval_crop=eval_crop, views=views):
            if channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
            with autocast:
                acc += model(v).float()
        yield (acc / len(views)).cpu().numpy().astype(np.float64)


def predict(model: torch.nn.Module, images: torch.Tensor, *, source_crop: int, out_size: int, eval_crop: int,
            tta: int = 1, batch_size: int = PREDICT_BATCH, device: torch.device | str = "cpu",
            amp_dtype: torch.dtype | None = None, channels_last: bool = False,
            progress: bool = False) -> np.ndarray:
    """Predict the 37 values for every cached image (N, S, S, 3) uint8 held in memory (see predict_batches).

    Args:
        images: the decode-once cache as a tensor (N, S, S, 3) uint8 covering the centre `source_crop` px.
        batch_size: images per forward pass.
        progress: a progress bar over batches.
        model, source_crop, out_size, eval_crop, tta, device, amp_dtype, channels_last: as for predict_batches.

    Returns:
        (N, 37) float64.
    """
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"predict ({len(views_for(tta))} views)", unit="batch", disable=None)
    batches = (images[s : s + batch_size].permute(0, 3, 1, 2) for s in starts)
    out = list(predict_batches(model, batches, source_crop=source_crop, out_size=out_size, eval_crop=eval_crop,
                               tta=tta, device=device, amp_dtype=amp_dtype, channels_last=channels_last))
    return np.concatenate(out) if out else np.zeros((0, tree.NUM_OUTPUTS), np.float64)


def images_in(folders, progress: bool = True) -> tuple[np.ndarray, list[Path]]:
    """GalaxyIDs and paths of every JPEG in the folders (images_test_rev1/, a Kaggle folder, or bare *.jpg)."""
    from galaxylib.data import load_images

    folders = as_paths(folders)
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: no such image folder")
    found = load_images(folders, progress=progress)
    return found.ids, found.image_paths


def predict_files(model: torch.nn.Module, cfg, paths: list[Path], *, tta: int, device: str = "auto",
                  batch_size: int = PREDICT_BATCH, progress: bool = True) -> np.ndarray:
    """Predictions for image files with a run's settings (`cfg`: a RunConfig), decoded batch by batch.

    Memory holds a few batches of images and the (N, 37) result; `galaxylib.survey.predict_to_file` writes
    the rows to a file as they come instead, and resumes.
    """
    from galaxylib.data.cache import decode_stream

    dev = select_device(device)
    model.to(dev)
    decoded = decode_stream(paths, crop=cfg.source_crop, size=cfg.cache_size, batch=batch_size)
    batches = (torch.from_numpy(x).permute(0, 3, 1, 2) for x, _ in decoded)
    out = predict_batches(model, batches, source_crop=cfg.source_crop, out_size=cfg.img_size,
                          eval_crop=cfg.eval_crop, tta=tta, device=dev, amp_dtype=amp_dtype("auto", dev))
    if progress:
        from tqdm import tqdm

        out = tqdm(out, total=-(-len(paths) // batch_size), desc=f"predict ({tta} views)", unit="batch",
                   disable=None)
    out = list(out)
    return np.concatenate(out) if out else np.zeros((0, tree.NUM_OUTPUTS), np.float64)


def submission_frame(galaxy_ids: Iterable[int], preds: np.ndarray) -> pd.DataFrame:
    """GalaxyID + the 37 columns in Kaggle's order, one row per image."""
    df = pd.DataFrame(np.asarray(preds, np.float64), columns=list(tree.COLUMNS))
    df.insert(0, tree.ID_COLUMN, np.asarray(list(galaxy_ids), np.int64))
    return df


def prediction_frame(inputs, preds: np.ndarray, start: int = 0) -> pd.DataFrame:
    """The predictions for `inputs`' images start.. as a table: GalaxyID (int64) + the 37 columns for Kaggle IDs
    (`submission_frame`), else id_str + the 37 columns.

    Args:
        inputs: a galaxylib.data.inputs.Inputs.
        preds: (N, 37) predictions for its images start .. start + N.
        start: the first image's index.
    """
    ids = inputs.ids[start : start + len(preds)]
    if inputs.kaggle:
        return submission_frame([int(i) for i in ids], preds)
    df = pd.DataFrame(np.asarray(preds, np.float64), columns=list(tree.COLUMNS))
    df.insert(0, inputs.id_column, ids)
    return df


def refuse_non_finite(ids, preds: np.ndarray, path: str | Path) -> None:
    """A UserError naming the first non-finite prediction (the CSV would show it as 'nan' or an empty cell).

    Args:
        ids: the IDs of the rows of `preds`.
        preds: (N, 37) predictions.
        path: the output file, named in the message (nothing is written to it).
    """
    bad = ~np.isfinite(preds)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise UserError(f"{path}: {int(bad.sum())} predictions are not finite numbers (e.g. GalaxyID {ids[row]}, "
                        f"column {tree.COLUMNS[col]}: {preds[row, col]}); nothing was written")


def write_submission(galaxy_ids: Iterable[int], preds: np.ndarray, path: str | Path) -> Path:
    """A Kaggle submission file (6 decimals): written to a temporary file, checked there (`check_submission`:
    header, values in [0, 1], one row per GalaxyID), and only then renamed over `path`, so an invalid
    submission never replaces a file already there.

    Raises:
        UserError: the submission is invalid (nothing is written) or `path` cannot be written.
    """
    path = Path(path)
    ids = np.asarray(list(galaxy_ids), np.int64)
    preds = np.asarray(preds, np.float64)
    refuse_non_finite(ids, preds, path)
    df = submission_frame(ids, preds)
    ensure_parent(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")
        check_submission(tmp, expected_ids=ids, name=path)
    return path


def _header_problem(name: Path, header: list[str]) -> str | None:
    expected = [tree.ID_COLUMN, *tree.COLUMNS]
    if header == expected:
        return None
    if len(header) == 1 and (sep := next((c for c in ";\t|" if c in header[0]), None)):
        return f"{name}: fields are separated by {sep!r}, not by commas"
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    twice = sorted({c for c in header if header.count(c) > 1})

    def listed(names: list[str]) -> str:
        return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")

    what = "header must be GalaxyID + the 37 columns in Kaggle's order"
    what += f"; missing {listed(missing)}" if missing else ""
    what += f"; unexpected {listed(extra)}" if extra else ""
    what += f"; twice: {listed(twice)}" if twice else ""
    return f"{name}: {what}"


def check_submission(path: str | Path, expected_ids: Iterable[int] | None = None,
                     name: str | Path | None = None) -> pd.DataFrame:
    """Validate a submission file; raise UserError naming the first problems found. Returns it as a frame.

    Args:
        path: the CSV to check.
        expected_ids: the GalaxyIDs it must hold, each once (None: any).
        name: how messages name the file (default `path`; the final name when checking a temporary file).
    """
    path = Path(path)
    name = path if name is None else Path(name)
    if path.is_dir():
        raise UserError(f"{name}: is a folder, not a submission file")
    if not path.is_file():
        raise UserError(f"{name}: no such submission file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = [c.strip() for c in next(csv.reader(f), [])]
        if not header:
            raise UserError(f"{name}: is empty (no header line)")
        if header[0] == "GalaxyId":  # the spelling of Kaggle's own example file
            header[0] = tree.ID_COLUMN
        problem = _header_problem(name, header)
        if problem:
            raise UserError(problem)
        # every cell as text: the IDs are checked as text, the values parsed below, so each bad cell is named
        with warnings.catch_warnings():  # a row with extra fields: an error, not a silent shift into an index
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", names=header,
                             skiprows=1, index_col=False)  # fmt: skip
    except UserError:
        raise
    except Exception as err:  # pandas and csv raise many types for unreadable files
        from galaxylib.data.read import extra_fields_problem

        what = extra_fields_problem(path) or f"not a readable CSV ({' '.join(str(err).split())})"
        raise UserError(f"{name}: {what}") from err
    if df.empty:
        raise UserError(f"{name}: has a header but no rows")
    problems = []
    id_text = df[tree.ID_COLUMN].str.strip()
    bad_id = ~id_text.str.fullmatch(r"[0-9]{1,18}")
    for row in np.flatnonzero(bad_id.to_numpy())[:5]:
        problems.append(f"{name}: row {row + 1}: GalaxyID {id_text.iloc[row]!r} is not a whole number of at most "
                        "18 digits")
    values = df[list(tree.COLUMNS)].apply(lambda c: pd.to_numeric(c.str.strip(), errors="coerce"))
    bad = values.isna() | ~np.isfinite(values) | (values < 0) | (values > 1)
    for row, col in list(zip(*np.nonzero(bad.to_numpy()), strict=True))[:10]:
        problems.append(f"{name}: GalaxyID {id_text.iloc[row]}, column {tree.COLUMNS[col]}: "
                        f"{df.iloc[row, col + 1]!r} is not a number in [0, 1]")
    if problems:
        raise UserError("\n".join(problems))
    ids = id_text.astype(np.int64)
    dup = ids[ids.duplicated()]
    problems += [f"{name}: GalaxyID {g} appears more than once" for g in dup.head(5)]
    if expected_ids is not None:
        want, have = set(map(int, expected_ids)), set(ids)
        missing = sorted(want - have)
        if missing:
            problems.append(f"{name}: {len(missing)} images have no row, e.g. GalaxyID {missing[0]}")
        extra = sorted(have - want)
        if extra:
            problems.append(f"{name}: {len(extra)} rows have no image, e.g. GalaxyID {extra[0]}")
    if problems:
        raise UserError("\n".join(problems))
    out = values.astype(np.float64)
    out.insert(0, tree.ID_COLUMN, ids.to_numpy())
    return out
