"""Reading and validating Kaggle-layout folders: labels matched to images by GalaxyID, partial labels allowed.

A data folder looks like the Kaggle download (galaxylib.layout):

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
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from galaxylib import layout, tree
from galaxylib.data.pool import plan_chunks, run_chunks
from galaxylib.data.problems import Problem, raise_problems, resolve_problems
from galaxylib.errors import DataError
from galaxylib.fileio import as_paths

_NUM = tree.NUM_OUTPUTS
_ID = tree.ID_COLUMN
_COLUMN_INDEX = {name: i for i, name in enumerate(tree.COLUMNS)}
_ID_PATTERN = r"[0-9]{1,18}"


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
    if len(header) == 1 and (sep := next((c for c in ";\t|" if c in header[0]), None)):
        problems.append(Problem(path, f"fields are separated by {sep!r}, not by commas (header {header[0][:40]!r})"))
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


def extra_fields_problem(path: Path) -> str | None:
    """'data row 3 (line 4) has 39 fields, the header 38' for the first row longer than the header, else None
    (pandas names no row for a first row that is too long, and would silently shift it into an index)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f)
            header = next(rows, [])
            for number, row in enumerate(rows, start=1):
                if len(row) > len(header):
                    return f"data row {number} (line {rows.line_num}) has {len(row)} fields, the header {len(header)}"
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def _read_label_file(path: Path, problems: list[Problem]) -> tuple[np.ndarray, np.ndarray] | None:
    """Parse and validate a label CSV -> (ids int64 (n,), values float64 (n, 37), NaN where absent or bad), or
    None when the file cannot be interpreted at all (the problem is recorded)."""
    columns = _read_header(path, problems)
    if columns is None:
        return None
    # na_filter=False: an empty or "nan" cell stays text, to be reported rather than read as NaN.
    # index_col=False + ParserWarning as an error: a row with extra fields fails instead of being trimmed.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, index_col=False, keep_default_na=False, na_filter=False,
                             encoding="utf-8-sig", low_memory=False)  # fmt: skip
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError, UnicodeDecodeError) as err:
        what = extra_fields_problem(path) or f"cannot be parsed as CSV ({' '.join(str(err).split())})"
        problems.append(Problem(path, what))
        return None
    if df.empty:
        problems.append(Problem(path, "has a header but no data rows"))
        return None
    raw_ids, id_text = _column(df.iloc[:, columns[_ID]])
    parsed = id_text is None
    if parsed:  # parsed by pandas: whole non-negative numbers are fine
        with np.errstate(invalid="ignore"):
            ok = (raw_ids >= 0) & (raw_ids < 1e18) & (raw_ids % 1 == 0)
        id_text = pd.Series(raw_ids).map("{:g}".format)
    else:
        ok = id_text.str.fullmatch(_ID_PATTERN).to_numpy(dtype=bool)
    for row in np.flatnonzero(~ok):
        what = f"data row {row + 1}: {_ID} {id_text.iloc[row]!r} is not a whole number of at most 18 digits"
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
        what = f"Q{q.number} answers differ from {q.parent_name} by {v.error:+.3g} (tolerance {tol:g})"
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
        if not re.fullmatch(_ID_PATTERN, stem):
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
    return sorted(path.glob(layout.LABELS_GLOB)) if path.is_dir() else []


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
            what = f"no label file {layout.LABELS_GLOB}" + (f" (found {others})" if others else "")
        problems.append(Problem(folder, what))
        return nothing
    labels_file = files[0]
    nothing.source = labels_file
    parsed = _read_label_file(labels_file, problems)
    if parsed is None:  # every image would also be reported as unlabelled: the file's problem says it all
        return nothing
    ids, values = parsed
    image_dir = folder / layout.TRAIN_IMAGES_DIR
    if not image_dir.is_dir():
        if not _has_jpgs(folder):
            problems.append(Problem(folder, f"no {layout.TRAIN_IMAGES_DIR}/ folder of <GalaxyID>.jpg images"))
            return nothing
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
        problems += image_problems(paths, ids=ids, progress=progress)
    problems += _tree_problems(labels_file, ids, values, tol)
    return _Scan(folder, labels_file, ids, paths, values, problems)


def _unlabelled_image_dir(path: Path) -> Path | None:
    if _has_jpgs(path):
        return path
    for name in (layout.TEST_IMAGES_DIR, layout.TRAIN_IMAGES_DIR):
        if (path / name).is_dir():
            return path / name
    return None


def _scan_unlabelled(path: Path, verify_images: bool, progress: bool) -> _Scan:
    path = Path(path)
    problems: list[Problem] = []
    image_dir = _unlabelled_image_dir(path) if path.is_dir() else None
    if image_dir is None:
        what = "no such folder" if not path.exists() else f"no images ({layout.TEST_IMAGES_DIR}/ or *.jpg files)"
        problems.append(Problem(path, what))
        return _Scan(path, path, np.zeros(0, np.int64), [], None, problems)
    images = _list_images(image_dir, problems)
    ids = np.array(sorted(images), dtype=np.int64)
    paths = [images[gid] for gid in ids.tolist()]
    if verify_images:
        problems += image_problems(paths, ids=ids, progress=progress)
    return _Scan(path, image_dir, ids, paths, None, problems)


# ----------------------------------------------------------------------------------------------------------
# image checks and the process pool they share with the cache build


def _image_problem(path: str, decode: bool = True, kaggle_frame: bool = True) -> str | None:
    """Why an image is unusable, or None.

    decode: decode at 1/8 scale (JPEG draft mode): every byte of the entropy-coded data is still read, so
        truncated or corrupt files fail, at a quarter of the cost. False: the header only (format, size),
        some 20x cheaper, for inputs that are decoded anyway moments later (predict).
    kaggle_frame: require 424x424 RGB (False: any size and mode PIL converts to RGB, e.g. with --resize).
    """
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
    except FileNotFoundError:
        return "broken link (its target does not exist)" if os.path.islink(path) else "vanished while being read"
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    try:
        with Image.open(path) as img:
            if kaggle_frame and img.size != (layout.FRAME, layout.FRAME):
                return f"image is {img.width}x{img.height}, expected {layout.FRAME}x{layout.FRAME}"
            if kaggle_frame and img.mode != "RGB":
                return f"image mode is {img.mode}, expected RGB"
            if decode:
                img.draft("RGB", (img.width // 8, img.height // 8))
                img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return f"cannot be decoded ({type(err).__name__}: {err})"
    return None


def _check_chunk(task: tuple[list[str], bool, bool]) -> list[tuple[int, str]]:
    paths, decode, kaggle_frame = task
    return [(i, why) for i, p in enumerate(paths) if (why := _image_problem(p, decode, kaggle_frame)) is not None]


def image_problems(paths: list[Path], *, ids: np.ndarray | None = None, decode: bool = True,
                   kaggle_frame: bool = True, workers: int | None = None,
                   progress: bool = True) -> list[Problem]:  # fmt: skip
    """Every unusable image among `paths` (see `_image_problem`), checked in parallel; [] when all are fine.
    With `ids` (one GalaxyID per path) each problem names its galaxy too."""
    workers, spans = plan_chunks(len(paths), workers)
    tasks = [([str(p) for p in paths[a:b]], decode, kaggle_frame) for a, b in spans]
    sizes = [b - a for a, b in spans]
    results = run_chunks(_check_chunk, tasks, sizes, workers, "checking images", progress)
    return [Problem(paths[a + i], why, galaxy_id=None if ids is None else int(ids[a + i]))
            for (a, _), bad in zip(spans, results, strict=True) for i, why in bad]  # fmt: skip



# ----------------------------------------------------------------------------------------------------------
# combining folders


@dataclass
class _Assembled:
    """Several scanned folders as one, sorted by GalaxyID, with every problem seen in any of them."""

    ids: np.ndarray
    paths: list[Path]
    values: np.ndarray | None
    problems: list[Problem]

    def to_data(self, skipped: list[tuple[int, str]], folders: list[Path]) -> GalaxyData:
        """The galaxies without the skipped ones."""
        keep = ~np.isin(self.ids, np.array([gid for gid, _ in skipped], dtype=np.int64))
        labels = None if self.values is None else self.values[keep].astype(np.float32)
        paths = [p for p, k in zip(self.paths, keep, strict=True) if k]
        return GalaxyData(self.ids[keep], paths, labels, skipped, folders)


def _assemble(scans: list[_Scan], labelled: bool) -> _Assembled:
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
    values = None
    if labelled:
        values = np.concatenate([s.values for s in scans]) if scans else np.zeros((0, _NUM))
    order = np.argsort(ids, kind="stable")
    values = None if values is None else values[order]
    return _Assembled(ids[order], [paths[i] for i in order], values, problems)


def load_folders(paths, *, tol: float = 1e-3, skip_bad: bool = False, verify_images: bool = True,
                 progress: bool = True) -> GalaxyData:  # fmt: skip
    """Read and validate labelled folders into one dataset sorted by GalaxyID.

    All folders are read before anything is reported, so one run shows every problem in all of them.

    Args:
        paths: one folder or several (str or Path); a path may also be a label CSV itself (its images are
            then looked up next to it).
        tol: decision-tree constraint tolerance.
        skip_bad: leave out bad galaxies (listed in `skipped`) instead of failing.
        verify_images: decode every image (at 1/8 scale) to catch corrupt files now rather than mid-training.
        progress: show a progress bar for the image check.

    Returns:
        The galaxies, images matched to labels by GalaxyID.

    Raises:
        DataError: every problem in every folder, one per line.
    """
    if tol < 0:
        raise DataError(f"tolerance must be >= 0, got {tol}")
    scans = [_scan_labelled(p, tol, verify_images, progress) for p in as_paths(paths)]
    assembled = _assemble(scans, labelled=True)
    return assembled.to_data(resolve_problems(assembled.problems, skip_bad), [s.folder for s in scans])


def load_images(paths, *, skip_bad: bool = False, verify_images: bool = True,
                progress: bool = True) -> GalaxyData:  # fmt: skip
    """Unlabelled images (labels None) from one folder or several.

    Each folder holds *.jpg itself, or images_test_rev1/ (or images_training_rev1/, to predict on training
    images). A GalaxyID found in two folders is a problem, as for labelled data.
    """
    scans = [_scan_unlabelled(p, verify_images, progress) for p in as_paths(paths)]
    assembled = _assemble(scans, labelled=False)
    return assembled.to_data(resolve_problems(assembled.problems, skip_bad), [s.folder for s in scans])


def read_labels(paths, *, tol: float = 1e-3) -> pd.DataFrame:
    """Label files (or Kaggle-layout folders holding one) as one frame indexed by GalaxyID, 37 columns.

    The same validation as check-data (header, every cell, duplicates, the tree's constraints), but no images
    are needed: for scoring predictions against labels. Missing columns are NaN.

    Raises:
        DataError: every problem found, one per line.
    """
    problems: list[Problem] = []
    ids_all, values_all = [], []
    for path in as_paths(paths):
        files = _label_files(path)
        if not path.exists():
            problems.append(Problem(path, "no such label file or folder"))
            continue
        if len(files) != 1:
            what = f"several label files ({', '.join(f.name for f in files)})" if files else (
                f"no label file {layout.LABELS_GLOB}")
            problems.append(Problem(path, what))
            continue
        parsed = _read_label_file(files[0], problems)
        if parsed is None:
            continue
        ids, values = parsed
        problems += _tree_problems(files[0], ids, values, tol)
        ids_all.append(ids)
        values_all.append(values)
    ids = np.concatenate(ids_all) if ids_all else np.zeros(0, np.int64)
    per_file = np.concatenate([np.unique(i) for i in ids_all]) if ids_all else ids  # a file's own: reported above
    if len(np.unique(per_file)) != len(per_file):
        dup = pd.Series(per_file)[pd.Series(per_file).duplicated()].iloc[0]
        problems.append(Problem(as_paths(paths)[0], "GalaxyID found in more than one label file",
                                galaxy_id=int(dup)))
    raise_problems(problems)
    values = np.concatenate(values_all) if values_all else np.zeros((0, _NUM))
    frame = pd.DataFrame(values, columns=list(tree.COLUMNS), index=pd.Index(ids, name=_ID))
    return frame.sort_index()


# ----------------------------------------------------------------------------------------------------------
# provenance


def _count_images(folder: Path) -> tuple[bool, int]:
    """(labelled?, number of <GalaxyID>.jpg images) without reading any image or label."""
    labelled = bool(_label_files(folder))
    image_dir = folder / layout.TRAIN_IMAGES_DIR
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
    folders = [f.parent if f.is_file() else f for f in as_paths(paths)]
    synthetic = [f for f in folders if (f / layout.SYNTHETIC_MARKER).exists()]
    kaggle = [f for f in folders if f not in synthetic]
    kinds = ["synthetic"] if synthetic else []
    if kaggle:
        counts = [_count_images(f) for f in kaggle]
        n_labelled = sum(n for lab, n in counts if lab)
        n_test = sum(n for lab, n in counts if not lab)
        full = n_labelled >= layout.FULL_TRAIN_COUNT or (n_labelled == 0 and n_test >= layout.FULL_TEST_COUNT)
        kinds.append("full Kaggle" if full else "Kaggle sample")
    return " + ".join(kinds) if kinds else "no data"




def is_unlabelled_folder(path: Path) -> bool:
    """A test-style folder: images_test_rev1/ or bare *.jpg and no label file. A folder with only
    images_training_rev1/ is treated as labelled, so a missing or misnamed label file is reported."""
    path = Path(path)
    if not path.is_dir() or _label_files(path):
        return False
    return (path / layout.TEST_IMAGES_DIR).is_dir() or _has_jpgs(path)


@dataclass
class FolderContents:
    """What a set of folders holds: labelled galaxies, unlabelled images, and what was skipped."""

    labelled: GalaxyData | None
    unlabelled: GalaxyData | None
    skipped: list[tuple[int, str]]


def read_any_folders(paths, *, tol: float = 1e-3, skip_bad: bool = False, verify_images: bool = True,
                     progress: bool = True) -> FolderContents:  # fmt: skip
    """Labelled and unlabelled folders together (what check-data accepts), every problem reported at once."""
    paths = as_paths(paths)
    unlabelled = [p for p in paths if is_unlabelled_folder(p)]
    labelled = [p for p in paths if p not in unlabelled]
    groups = []
    if labelled:
        groups.append(_assemble([_scan_labelled(p, tol, verify_images, progress) for p in labelled], True))
    if unlabelled:
        groups.append(_assemble([_scan_unlabelled(p, verify_images, progress) for p in unlabelled], False))
    skipped = resolve_problems([p for g in groups for p in g.problems], skip_bad)
    datasets = [g.to_data(skipped, []) for g in groups]
    lab = datasets[0] if labelled else None
    unlab = datasets[-1] if unlabelled else None
    return FolderContents(lab, unlab, skipped)
