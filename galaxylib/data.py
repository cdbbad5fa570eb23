"""Kaggle-layout Galaxy Zoo data: read, validate, split, and decode once into a uint8 cache.

A data folder looks like the Kaggle download:

    training_solutions_rev1.csv          (or training_solutions_rev1*.csv: GalaxyID + any of the 37 columns)
    images_training_rev1/<GalaxyID>.jpg  424x424 RGB JPEG

Images and label rows are matched by GalaxyID, never by sort order (the paper's code relied on the sorted
file list and the CSV being in the same order; we check instead of assuming). A label file may hold any
subset of the 37 columns: missing columns are NaN, so partially labelled sets can be combined with full ones.

Nothing is dropped silently. Every problem in every folder is collected and reported together in one
`DataError` (one line each, naming the file, the GalaxyID and the column), or, with `skip_bad=True`, the bad
galaxies are left out and listed in `GalaxyData.skipped`.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from galaxylib import tree
from galaxylib.cli import UserError

LABELS_GLOB = "training_solutions_rev1*.csv"
IMAGES_DIRNAME = "images_training_rev1"
TEST_IMAGES_DIRNAME = "images_test_rev1"
SYNTHETIC_MARKER = "SYNTHETIC.json"  # written by galaxylib.synth at the root of a synthetic folder
IMAGE_SIZE = 424  # every Kaggle image is 424x424 RGB
FULL_TRAIN_COUNT = 61_578  # labelled training images in the Kaggle download
FULL_TEST_COUNT = 79_975
MAX_LISTED = 20  # problems printed in one error message; the rest are counted
CACHE_VERSION = 1  # bump when the cache's pixel recipe changes, so old caches are not reused
_PARALLEL_MIN = 512  # below this many images a process pool costs more than it saves
_CHUNK = 256  # images per pool task: small enough for a smooth progress bar, large enough to amortise IPC
_NUM = tree.NUM_OUTPUTS
_ID = tree.ID_COLUMN
_COLUMN_INDEX = {name: i for i, name in enumerate(tree.COLUMNS)}


class DataError(UserError):
    """Input data that cannot be used as it is: the message lists every problem, one per line."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located as precisely as possible."""

    file: Path
    what: str
    galaxy_id: int | None = None  # None: not tied to one galaxy, so skip_bad cannot skip it
    column: str | None = None

    def reason(self) -> str:
        """Where and what, without the GalaxyID (used in `GalaxyData.skipped`, which holds the id already)."""
        where = [str(self.file)] + ([f"column {self.column}"] if self.column else [])
        return ": ".join([*where, self.what])

    def __str__(self) -> str:
        where = [str(self.file)]
        where += [f"GalaxyID {self.galaxy_id}"] if self.galaxy_id is not None else []
        where += [f"column {self.column}"] if self.column else []
        return ": ".join([*where, self.what])


@dataclass
class GalaxyData:
    """Galaxies matched image-to-label by GalaxyID, sorted by GalaxyID."""

    ids: np.ndarray  # int64 (N,), ascending GalaxyID
    image_paths: list[Path]  # aligned with ids
    labels: np.ndarray | None  # float32 (N, 37), tree.COLUMNS order, NaN where not labelled; None: unlabelled
    skipped: list[tuple[int, str]] = field(default_factory=list)  # rows left out by skip_bad, with the reason
    folders: list[Path] = field(default_factory=list)  # where the data came from (for data_source)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64)
        if len(self.image_paths) != len(self.ids):
            raise ValueError(f"{len(self.ids)} ids but {len(self.image_paths)} image paths")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.float32)
            if self.labels.shape != (len(self.ids), _NUM):
                raise ValueError(f"labels have shape {self.labels.shape}, expected ({len(self.ids)}, {_NUM})")

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index) -> GalaxyData:
        """The galaxies at `index` (integer array or boolean mask), in that order."""
        index = np.asarray(index)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
        labels = None if self.labels is None else self.labels[index]
        paths = [self.image_paths[i] for i in index]
        return GalaxyData(self.ids[index], paths, labels, list(self.skipped), list(self.folders))

    def label_mask(self) -> np.ndarray:
        """(N, 37) bool: True where a value is labelled (for masked losses on partial labels)."""
        if self.labels is None:
            return np.zeros((len(self), _NUM), dtype=bool)
        return ~np.isnan(self.labels)

    def labelled_columns(self) -> list[str]:
        """Columns labelled for at least one galaxy, in tree.COLUMNS order."""
        mask = self.label_mask().any(0)
        return [name for name, has in zip(tree.COLUMNS, mask, strict=True) if has]


# ----------------------------------------------------------------------------------------------------------
# reading one folder


@dataclass
class _Scan:
    """One folder before combining: the usable rows and every problem seen."""

    folder: Path
    source: Path  # the label file (or the image folder when unlabelled): what messages name
    ids: np.ndarray
    paths: list[Path]
    values: np.ndarray | None  # float64 (n, 37), NaN where not labelled
    problems: list[Problem]


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, [_ID, *tree.COLUMNS], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _cell_problem(text: str, value: float) -> str:
    if text == "":
        return "empty cell"
    if math.isnan(value):
        missing = text.lower() in {"nan", "na", "n/a", "null", "none"}
        return "NaN value" if missing else f"non-numeric value {text!r}"
    return f"value {text} outside [0, 1]"


def _read_header(path: Path, problems: list[Problem]) -> dict[str, int] | None:
    """Column name -> position, or None when the file cannot be interpreted at all."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        problems.append(Problem(path, f"cannot be read ({err})"))
        return None
    if not header:
        problems.append(Problem(path, "is empty (no header line)"))
        return None
    known: dict[str, int] = {}
    for pos, raw in enumerate(header):
        name = raw.strip()
        if name in known:
            problems.append(Problem(path, "column appears twice in the header", column=name))
        elif name != _ID and name not in _COLUMN_INDEX:
            column = name or f"#{pos + 1} (empty name)"
            problems.append(Problem(path, f"unknown column{_suggest(name)}", column=column))
        else:
            known[name] = pos
    if _ID not in known:
        shown = ", ".join(h.strip() for h in header[:4])
        problems.append(Problem(path, f"no {_ID} column (header starts: {shown})"))
        return None
    if len(known) == 1:
        what = f"no label columns (expected some of {tree.COLUMNS[0]} ... {tree.COLUMNS[-1]})"
        problems.append(Problem(path, what))
    return known


def _column(series: pd.Series) -> tuple[np.ndarray, pd.Series | None]:
    """A CSV column -> (float64 values, NaN where unparsable; the stripped text, or None if already numeric).

    pandas parses clean numeric columns in C; only a column holding some text (an empty cell, a typo) is
    re-parsed cell by cell, so that each bad cell can be named.
    """
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, copy=True), None
    text = series.astype(str).str.strip()
    return pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan, copy=True), text


def _read_labels(path: Path, problems: list[Problem]) -> tuple[np.ndarray, np.ndarray]:
    """Parse and validate a label CSV -> (ids int64 (n,), values float64 (n, 37), NaN where absent or bad)."""
    empty = np.zeros(0, np.int64), np.zeros((0, _NUM))
    columns = _read_header(path, problems)
    if columns is None:
        return empty
    # na_filter=False: an empty or "nan" cell stays text, to be reported rather than read as NaN.
    # index_col=False + ParserWarning as an error: a row with extra fields fails instead of being trimmed.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, index_col=False, keep_default_na=False, na_filter=False,
                             encoding="utf-8-sig", low_memory=False)  # fmt: skip
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError, UnicodeDecodeError) as err:
        problems.append(Problem(path, f"cannot be parsed as CSV ({' '.join(str(err).split())})"))
        return empty
    raw_ids, id_text = _column(df.iloc[:, columns[_ID]])
    parsed = id_text is None
    if parsed:  # parsed by pandas: whole non-negative numbers are fine
        with np.errstate(invalid="ignore"):
            ok = (raw_ids >= 0) & (raw_ids < 1e18) & (raw_ids % 1 == 0)
        id_text = pd.Series(raw_ids).map("{:g}".format)
    else:
        ok = id_text.str.fullmatch(r"[0-9]{1,18}").to_numpy(dtype=bool)
    for row in np.flatnonzero(~ok):
        what = f"data row {row + 1}: {_ID} {id_text.iloc[row]!r} is not a whole number"
        problems.append(Problem(path, what))
    ids = raw_ids[ok].astype(np.int64) if parsed else id_text[ok].astype(np.int64).to_numpy()
    rows = np.flatnonzero(ok) + 1
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if dup.any():
        for gid, where in pd.Series(rows[dup]).groupby(ids[dup]):
            listed = ", ".join(map(str, where.to_numpy()))
            problems.append(Problem(path, f"duplicate {_ID} (data rows {listed})", galaxy_id=int(gid)))
    values = np.full((len(ids), _NUM), np.nan)
    for name, pos in columns.items():
        if name == _ID:
            continue
        num, text = _column(df.iloc[:, pos])
        num, text = num[ok], None if text is None else text[ok].reset_index(drop=True)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(num) | (num < 0) | (num > 1)
        for r in np.flatnonzero(bad):
            what = _cell_problem(f"{num[r]:g}" if text is None else text.iloc[r], num[r])
            problems.append(Problem(path, what, galaxy_id=int(ids[r]), column=name))
        num[bad] = np.nan  # a bad cell is reported once, not again as a tree violation
        values[:, _COLUMN_INDEX[name]] = num
    return ids, values


def _tree_problems(path: Path, ids: np.ndarray, values: np.ndarray, tol: float) -> list[Problem]:
    out = []
    for v in tree.check_constraints(values, ids, tol):
        q = tree.QUESTIONS[v.question - 1]
        parent = "1" if q.parent is None else tree.COLUMNS[q.parent]
        what = f"Q{q.number} answers differ from {parent} by {v.error:+.3g} (tolerance {tol:g})"
        out.append(Problem(path, what, galaxy_id=v.galaxy_id, column=" + ".join(q.columns)))
    return out


def _list_images(image_dir: Path, problems: list[Problem]) -> dict[int, Path]:
    """GalaxyID -> image path for every *.jpg in `image_dir` (one directory listing, no per-file stat)."""
    images: dict[int, Path] = {}
    for entry in os.scandir(image_dir):
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() not in (".jpg", ".jpeg"):
            continue  # not an image (.DS_Store, notes); no per-entry stat, which is slow on network disks
        path = Path(entry.path)
        if not re.fullmatch(r"[0-9]{1,18}", stem):
            problems.append(Problem(path, "image name is not <GalaxyID>.jpg, so it matches no label"))
            continue
        gid = int(stem)
        if gid in images:
            what = f"second image for this GalaxyID (also {images[gid].name})"
            problems.append(Problem(path, what, galaxy_id=gid))
        images[gid] = path
    return images


def _has_jpgs(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in (".jpg", ".jpeg") for p in folder.iterdir())


def _label_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(path.glob(LABELS_GLOB)) if path.is_dir() else []


def _scan_labelled(path: Path, tol: float, verify_images: bool, progress: bool) -> _Scan:
    path = Path(path)
    folder = path.parent if path.is_file() else path
    problems: list[Problem] = []
    nothing = _Scan(folder, path, np.zeros(0, np.int64), [], np.zeros((0, _NUM)), problems)
    if not path.exists():
        problems.append(Problem(path, "no such folder"))
        return nothing
    files = _label_files(path)
    if len(files) != 1:
        if files:
            what = f"several label files ({', '.join(f.name for f in files)}): keep one per folder"
        else:
            others = ", ".join(p.name for p in sorted(folder.glob("*.csv")))
            what = f"no label file {LABELS_GLOB}" + (f" (found {others})" if others else "")
        problems.append(Problem(folder, what))
        return nothing
    labels_file = files[0]
    nothing.source = labels_file
    ids, values = _read_labels(labels_file, problems)
    image_dir = folder / IMAGES_DIRNAME
    if not image_dir.is_dir():
        if not _has_jpgs(folder):
            problems.append(Problem(folder, f"no {IMAGES_DIRNAME}/ folder of <GalaxyID>.jpg images"))
            return _Scan(folder, labels_file, np.zeros(0, np.int64), [], np.zeros((0, _NUM)), problems)
        image_dir = folder  # images directly next to the label file
    images = _list_images(image_dir, problems)
    has_image = np.fromiter((gid in images for gid in ids.tolist()), dtype=bool, count=len(ids))
    for gid in ids[~has_image]:
        problems.append(Problem(labels_file, f"no image {image_dir.name}/{gid}.jpg", galaxy_id=int(gid)))
    labelled = set(ids.tolist())
    for gid in sorted(set(images) - labelled):
        problems.append(Problem(images[gid], f"image has no label row in {labels_file.name}", galaxy_id=gid))
    ids, values = ids[has_image], values[has_image]
    paths = [images[gid] for gid in ids.tolist()]
    if verify_images:
        problems += _check_images(ids, paths, progress=progress)
    problems += _tree_problems(labels_file, ids, values, tol)
    return _Scan(folder, labels_file, ids, paths, values, problems)


def _unlabelled_image_dir(path: Path) -> Path | None:
    if _has_jpgs(path):
        return path
    for name in (TEST_IMAGES_DIRNAME, IMAGES_DIRNAME):
        if (path / name).is_dir():
            return path / name
    return None


def _scan_unlabelled(path: Path, verify_images: bool, progress: bool) -> _Scan:
    path = Path(path)
    problems: list[Problem] = []
    image_dir = _unlabelled_image_dir(path) if path.is_dir() else None
    if image_dir is None:
        what = "no such folder" if not path.exists() else f"no images ({TEST_IMAGES_DIRNAME}/ or *.jpg files)"
        problems.append(Problem(path, what))
        return _Scan(path, path, np.zeros(0, np.int64), [], None, problems)
    images = _list_images(image_dir, problems)
    ids = np.array(sorted(images), dtype=np.int64)
    paths = [images[gid] for gid in ids.tolist()]
    if verify_images:
        problems += _check_images(ids, paths, progress=progress)
    return _Scan(path, image_dir, ids, paths, None, problems)


# ----------------------------------------------------------------------------------------------------------
# image checks and the process pool they share with the cache build


def _image_problem(path: str) -> str | None:
    """Why an image is unusable, or None. Decodes at 1/8 scale (JPEG draft mode): every byte of the
    entropy-coded data is still read, so truncated or corrupt files fail, at a quarter of the cost."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as img:
            if img.size != (IMAGE_SIZE, IMAGE_SIZE):
                return f"image is {img.width}x{img.height}, expected {IMAGE_SIZE}x{IMAGE_SIZE}"
            if img.mode != "RGB":
                return f"image mode is {img.mode}, expected RGB"
            img.draft("RGB", (img.width // 8, img.height // 8))
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return f"cannot be decoded ({type(err).__name__}: {err})"
    return None


def _check_chunk(paths: list[str]) -> list[tuple[int, str]]:
    return [(i, why) for i, p in enumerate(paths) if (why := _image_problem(p)) is not None]


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _plan(n: int, workers: int | None) -> tuple[int, list[tuple[int, int]]]:
    """(workers, [(start, stop), ...]): serial for small inputs unless workers is given explicitly."""
    if workers is None:
        workers = 1 if n < _PARALLEL_MIN else _cpu_count()
    workers = max(1, min(int(workers), n)) if n else 1
    size = max(1, min(_CHUNK, -(-n // (workers * 4))))
    return workers, [(s, min(s + size, n)) for s in range(0, n, size)]


def _run_chunks(fn: Callable, tasks: list, sizes: list[int], workers: int, desc: str, progress: bool) -> list:
    """fn(task) for every task, in a process pool when workers > 1; results in task order."""
    results: list = [None] * len(tasks)
    with tqdm(total=sum(sizes), desc=desc, unit="img", disable=None if progress else True) as bar:
        if workers == 1:
            for i, task in enumerate(tasks):
                results[i] = fn(task)
                bar.update(sizes[i])
            return results
        pool = ProcessPoolExecutor(max_workers=workers)
        try:
            futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update(sizes[futures[fut]])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return results


def _check_images(ids: np.ndarray, paths: list[Path], workers: int | None = None,
                  progress: bool = True) -> list[Problem]:  # fmt: skip
    workers, spans = _plan(len(paths), workers)
    tasks = [[str(p) for p in paths[a:b]] for a, b in spans]
    sizes = [b - a for a, b in spans]
    results = _run_chunks(_check_chunk, tasks, sizes, workers, "checking images", progress)
    return [Problem(paths[a + i], why, galaxy_id=int(ids[a + i]))
            for (a, _), bad in zip(spans, results, strict=True) for i, why in bad]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# combining folders, resolving problems


def _assemble(scans: list[_Scan], labelled: bool) -> tuple[np.ndarray, list[Path], np.ndarray | None, list]:
    """Concatenate folders, flag a GalaxyID found in two of them, sort by GalaxyID."""
    problems = [p for s in scans for p in s.problems]
    ids = np.concatenate([s.ids for s in scans]) if scans else np.zeros(0, np.int64)
    owner = np.concatenate([np.full(len(s.ids), k) for k, s in enumerate(scans)]) if scans else ids
    pairs = np.unique(np.stack([ids, owner], 1), axis=0) if len(ids) else np.zeros((0, 2), np.int64)
    uniq, counts = np.unique(pairs[:, 0], return_counts=True)
    for gid in uniq[counts > 1]:
        where = [scans[k].source for k in pairs[pairs[:, 0] == gid, 1]]
        others = " and ".join(map(str, where[1:]))
        problems.append(Problem(where[0], f"same GalaxyID also in {others}", galaxy_id=int(gid)))
    paths = [p for s in scans for p in s.paths]
    values = np.concatenate([s.values for s in scans]) if labelled and scans else None
    if labelled and values is None:
        values = np.zeros((0, _NUM))
    order = np.argsort(ids, kind="stable")
    values = None if values is None else values[order]
    return ids[order], [paths[i] for i in order], values, problems


def _format_problems(problems: list[Problem], skip_bad: bool) -> str:
    fatal = [p for p in problems if p.galaxy_id is None]
    per_galaxy = [p for p in problems if p.galaxy_id is not None]
    per_galaxy.sort(key=lambda p: (str(p.file), p.galaxy_id))
    galaxies = len({p.galaxy_id for p in per_galaxy})
    head = f"{len(problems)} problem{'s' * (len(problems) != 1)} in the data"
    if fatal and skip_bad:
        head += f" ({len(fatal)} not tied to one galaxy, which --skip-bad cannot skip)"
    elif not fatal:
        noun = "galaxy" if galaxies == 1 else "galaxies"
        head += f" (--skip-bad / skip_bad=True would leave out the {galaxies} {noun})"
    ordered = fatal + per_galaxy
    lines = [head + ":"] + [f"  {p}" for p in ordered[:MAX_LISTED]]
    if len(ordered) > MAX_LISTED:
        lines.append(f"  ... and {len(ordered) - MAX_LISTED} more")
    return "\n".join(lines)


def _resolve(problems: list[Problem], skip_bad: bool) -> list[tuple[int, str]]:
    """Raise one DataError for all problems, or (skip_bad) return (GalaxyID, reasons) for each bad galaxy."""
    if not problems:
        return []
    if not skip_bad or any(p.galaxy_id is None for p in problems):
        raise DataError(_format_problems(problems, skip_bad), problems)
    reasons: dict[int, list[str]] = {}
    for p in problems:
        reasons.setdefault(p.galaxy_id, []).append(p.reason())
    return [(gid, "; ".join(reasons[gid])) for gid in sorted(reasons)]


def _to_data(assembled, skipped: list[tuple[int, str]], folders: list[Path]) -> GalaxyData:
    ids, paths, values, _ = assembled
    keep = ~np.isin(ids, np.array([gid for gid, _ in skipped], dtype=np.int64))
    labels = None if values is None else values[keep].astype(np.float32)
    return GalaxyData(ids[keep], [p for p, k in zip(paths, keep, strict=True) if k], labels, skipped, folders)


def load_folders(paths: Sequence, *, tol: float = 1e-3, skip_bad: bool = False, verify_images: bool = True,
                 progress: bool = True) -> GalaxyData:  # fmt: skip
    """Read and validate labelled folders into one dataset sorted by GalaxyID.

    All folders are read before anything is reported, so one run shows every problem in all of them.
    A path may also be a label CSV itself (its images are then looked up next to it).
    """
    if tol < 0:
        raise DataError(f"tolerance must be >= 0, got {tol}")
    paths = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    scans = [_scan_labelled(p, tol, verify_images, progress) for p in paths]
    assembled = _assemble(scans, labelled=True)
    skipped = _resolve(assembled[3], skip_bad)
    return _to_data(assembled, skipped, [s.folder for s in scans])


def load_folder(path, *, tol: float = 1e-3, skip_bad: bool = False, verify_images: bool = True,
                progress: bool = True) -> GalaxyData:  # fmt: skip
    """Read and validate one labelled folder (labels file + images_training_rev1/)."""
    return load_folders([path], tol=tol, skip_bad=skip_bad, verify_images=verify_images, progress=progress)


def load_images(path, *, skip_bad: bool = False, verify_images: bool = True,
                progress: bool = True) -> GalaxyData:  # fmt: skip
    """Unlabelled images (labels None): a folder holding *.jpg, or one with images_test_rev1/
    (or images_training_rev1/, to predict on training images)."""
    scan = _scan_unlabelled(Path(path), verify_images, progress)
    assembled = _assemble([scan], labelled=False)
    skipped = _resolve(assembled[3], skip_bad)
    return _to_data(assembled, skipped, [scan.folder])


# ----------------------------------------------------------------------------------------------------------
# provenance and the paper's split


def _count_images(folder: Path) -> tuple[bool, int]:
    """(labelled?, number of <GalaxyID>.jpg images) without reading any image or label."""
    labelled = bool(_label_files(folder))
    image_dir = folder / IMAGES_DIRNAME
    if not image_dir.is_dir():
        image_dir = _unlabelled_image_dir(folder)
    if image_dir is None:
        return labelled, 0
    n = sum(1 for e in os.scandir(image_dir) if re.fullmatch(r"[0-9]+\.jpe?g", e.name, flags=re.IGNORECASE))
    return labelled, n


def data_source(paths) -> str:
    """What the data is, for labelling results: "synthetic", "full Kaggle" or "Kaggle sample".

    Synthetic folders carry a SYNTHETIC.json marker (galaxylib.synth writes it). Kaggle data counts as full
    when it holds all 61,578 labelled training images (or, unlabelled, all 79,975 test images). A mix of
    synthetic and Kaggle folders is reported as both, e.g. "synthetic + Kaggle sample".
    """
    folders = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    folders = [f.parent if f.is_file() else f for f in folders]
    synthetic = [f for f in folders if (f / SYNTHETIC_MARKER).exists()]
    kaggle = [f for f in folders if f not in synthetic]
    kinds = ["synthetic"] if synthetic else []
    if kaggle:
        counts = [_count_images(f) for f in kaggle]
        n_labelled = sum(n for lab, n in counts if lab)
        n_test = sum(n for lab, n in counts if not lab)
        full = n_labelled >= FULL_TRAIN_COUNT or (n_labelled == 0 and n_test >= FULL_TEST_COUNT)
        kinds.append("full Kaggle" if full else "Kaggle sample")
    return " + ".join(kinds) if kinds else "no data"


def paper_split(data: GalaxyData, test_size: float = 0.1, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The paper's train/validation split -> (train, val) integer indices into `data`, each sorted ascending.

    As in the paper's code: scikit-learn `train_test_split` over the GalaxyIDs in ascending order, test_size
    0.1, random_state 1, stratified on argmax(Class1.1..1.3) -> 55,420 / 6,158 on the full data. sklearn's
    shuffled order is not kept: sorted indices read the image cache in order, and training shuffles anyway.
    Tiny data where a Q1 class has fewer than 2 members cannot be stratified: it is split unstratified, with
    a warning. test_size=0 returns every galaxy for training (the paper's code allows this too).
    """
    from sklearn.model_selection import train_test_split  # imported here: sklearn is slow to import

    order = np.argsort(data.ids, kind="stable")  # == arange(N) for loader output
    if test_size == 0:
        return np.sort(order), np.zeros(0, np.int64)
    if data.labels is None:
        raise DataError("paper_split needs labels: it stratifies on the Q1 answer (Class1.1..1.3)")
    q1 = data.labels[order][:, tree.QUESTIONS[0].slice]
    missing = np.isnan(q1).any(1)
    if missing.any():
        example = ", ".join(map(str, data.ids[order][missing][:5]))
        raise DataError(f"paper_split stratifies on Q1, but {missing.sum()} galaxies have no Q1 labels "
                        f"(e.g. GalaxyID {example}); split only fully Q1-labelled data")  # fmt: skip
    strata = q1.argmax(1)
    classes, counts = np.unique(strata, return_counts=True)
    n_val = math.ceil(test_size * len(order)) if isinstance(test_size, float) else int(test_size)
    stratify = strata
    if counts.min() < 2 or n_val < len(classes) or len(order) - n_val < len(classes):
        sizes = dict(zip(classes.tolist(), counts.tolist(), strict=True))
        message = f"paper_split: Q1 class sizes {sizes} are too small to stratify {n_val} validation galaxies"
        warnings.warn(message + "; splitting unstratified", stacklevel=2)
        stratify = None
    train, val = train_test_split(order, test_size=test_size, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(val)


# ----------------------------------------------------------------------------------------------------------
# decode-once image cache


def default_cache_dir() -> Path:
    """$GALAXYLIB_CACHE_DIR, else ~/.cache/galaxylib."""
    env = os.environ.get("GALAXYLIB_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "galaxylib"


class _CropError(ValueError):
    """The requested crop does not fit the image (a settings problem, not a corrupt file)."""


def load_image(path, crop: int = IMAGE_SIZE, size: int | None = None) -> np.ndarray:
    """One image -> uint8 (size, size, 3): RGB, centre crop of `crop` px, PIL bilinear resize to `size`.

    The same steps as the paper's eval transform (CenterCrop then Resize, PIL antialiasing when shrinking);
    the centre offset is rounded like torchvision's CenterCrop.
    """
    size = crop if size is None else size
    with Image.open(path) as img:
        img = img.convert("RGB")
    w, h = img.size
    if crop > min(w, h):
        raise _CropError(f"crop {crop} is larger than the {w}x{h} image")
    left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    if size != crop:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _decode_chunk(task: tuple[str, int, list[str], int, int]) -> list[tuple[str, str]]:
    """Decode images into rows start.. of the memmap at `file`; returns (path, reason) for each failure."""
    file, start, paths, crop, size = task
    out = np.lib.format.open_memmap(file, mode="r+")
    bad = []
    for i, p in enumerate(paths):
        try:
            out[start + i] = load_image(p, crop, size)
        except _CropError as err:
            bad.append((p, str(err)))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            bad.append((p, f"cannot be decoded ({type(err).__name__}: {err})"))
    out.flush()
    del out
    return bad


def _cache_key(paths: list[Path], crop: int, size: int) -> str:
    """Hash of the recipe and of every input's path, size and mtime: any change to the data rebuilds."""
    recipe = f"galaxylib image cache v{CACHE_VERSION} crop={crop} size={size} n={len(paths)}\n"
    h = hashlib.sha256(recipe.encode())
    missing = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            missing.append(p)
            continue
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    if missing:
        problems = [Problem(p, "image not found") for p in missing]
        raise DataError(_format_problems(problems, skip_bad=False), problems)
    return h.hexdigest()[:20]


def build_cache(paths: Sequence[Path], *, crop: int = IMAGE_SIZE, size: int, cache_dir: Path | None = None,
                workers: int | None = None, progress: bool = True) -> np.ndarray:  # fmt: skip
    """Decode every image once -> read-only memmap (N, size, size, 3) uint8, rows aligned with `paths`.

    The file is named by a hash of the recipe and the inputs, so a second call reuses it and changed data
    gets a new one (old caches are left in place; delete the folder to reclaim space). It is written to a
    temporary name and renamed when complete, so an interrupted build is never mistaken for a cache.
    Several processes building the same cache at once each write their own and the last rename wins.
    """
    paths = [Path(p) for p in paths]
    if crop < 1 or size < 1:
        raise ValueError(f"crop and size must be positive, got crop={crop}, size={size}")
    shape = (len(paths), size, size, 3)
    if not paths:
        return np.zeros(shape, np.uint8)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"images-n{len(paths)}-crop{crop}-size{size}-{_cache_key(paths, crop, size)}.npy"
    if final.exists():
        cached = np.lib.format.open_memmap(final, mode="r")
        if cached.shape == shape and cached.dtype == np.uint8:
            return cached
    need, free = math.prod(shape) + 4096, shutil.disk_usage(cache_dir).free
    if need > free:
        message = f"the image cache needs {need / 1e9:.1f} GB but {cache_dir} has {free / 1e9:.1f} GB free"
        raise DataError(message + "; set GALAXYLIB_CACHE_DIR to a larger disk")
    fd, tmp = tempfile.mkstemp(prefix=final.stem + ".", suffix=".partial.npy", dir=cache_dir)
    os.close(fd)
    try:
        del_me = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        del del_me  # header written, file sized; workers fill it by index
        workers, spans = _plan(len(paths), workers)
        tasks = [(tmp, a, [str(p) for p in paths[a:b]], crop, size) for a, b in spans]
        results = _run_chunks(_decode_chunk, tasks, [b - a for a, b in spans], workers,
                              f"caching {size}px images", progress)  # fmt: skip
        problems = [Problem(Path(p), why) for bad in results for p, why in bad]
        if problems:
            raise DataError(_format_problems(problems, skip_bad=False), problems)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return np.lib.format.open_memmap(final, mode="r")


# ----------------------------------------------------------------------------------------------------------
# `python -m galaxylib check-data`


def _is_unlabelled_folder(path: Path) -> bool:
    """A test-style folder: images_test_rev1/ or bare *.jpg and no label file. A folder with only
    images_training_rev1/ is treated as labelled, so a missing or misnamed label file is reported."""
    if not path.is_dir() or _label_files(path):
        return False
    return (path / TEST_IMAGES_DIRNAME).is_dir() or _has_jpgs(path)


def _question_coverage(data: GalaxyData) -> tuple[list[str], list[str]]:
    """(complete questions, partial questions with their labelled-row counts)."""
    mask = data.label_mask()
    complete, partial = [], []
    for q in tree.QUESTIONS:
        rows = mask[:, q.slice].all(1).sum()
        if rows == len(data) and len(data):
            complete.append(f"Q{q.number}")
        elif rows:
            partial.append(f"Q{q.number} ({rows}/{len(data)})")
    return complete, partial


def _summary(data: GalaxyData, tol: float) -> list[str]:
    if data.labels is None:
        return [f"  unlabelled images: {len(data)}"]
    complete, partial = _question_coverage(data)
    columns = data.labelled_columns()
    labels = data.labels.astype(np.float64)
    err = np.abs(tree.question_sums(labels) - tree.parent_weights(labels))
    max_err = float(np.nanmax(err)) if np.isfinite(err).any() else float("nan")
    lines = [
        f"  galaxies:          {len(data)} labelled, each with its image",
        f"  labelled columns:  {len(columns)} of {_NUM}",
        f"  complete questions: {', '.join(complete) or 'none'}",
    ]
    if partial:
        lines.append(f"  partly labelled:   {', '.join(partial)}")
    lines.append(f"  tree constraints:  satisfied, max error {max_err:.2g} (tolerance {tol:g})")
    return lines


def run_check_data(args) -> int:
    """Validate folders and print a summary; a DataError (exit 2) lists every problem when they are bad."""
    tol, skip_bad = float(args.tol), bool(args.skip_bad)
    if tol < 0:
        raise DataError(f"--tol must be >= 0, got {tol}")
    dirs = [Path(d) for d in args.dirs]
    unlabelled = [d for d in dirs if _is_unlabelled_folder(d)]
    labelled = [d for d in dirs if d not in unlabelled]
    groups = []
    if labelled:
        groups.append(_assemble([_scan_labelled(d, tol, True, True) for d in labelled], labelled=True))
    if unlabelled:
        groups.append(_assemble([_scan_unlabelled(d, True, True) for d in unlabelled], labelled=False))
    skipped = _resolve([p for g in groups for p in g[3]], skip_bad)
    datasets = [_to_data(g, skipped, []) for g in groups]
    print(f"checked {len(dirs)} folder{'s' * (len(dirs) != 1)}: {', '.join(map(str, dirs))}")
    for data in datasets:
        for line in _summary(data, tol):
            print(line)
    print(f"  data source:       {data_source(dirs)}")
    if skipped:
        print(f"  skipped:           {len(skipped)} galaxies (--skip-bad):")
        for gid, reason in skipped:
            print(f"    GalaxyID {gid}: {reason}")
    print("valid" if not skipped else "valid after skipping the galaxies listed above")
    return 0
