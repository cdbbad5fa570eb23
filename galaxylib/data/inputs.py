"""What `predict` reads: image files, each with an ID, from folders or from a catalogue CSV.

    folders     each folder's own images (*.jpg, *.jpeg, *.png), else its images_test_rev1/ (else its
                images_training_rev1/); the ID is the file name without its suffix
    catalogue   a CSV with an ID column (id_str, as Zoobot's catalogues, or GalaxyID) and a path column
                (file_loc, as Zoobot's, or path); relative paths are taken from the catalogue's folder

When every ID is a whole number (Kaggle's GalaxyIDs are) the output is a Kaggle submission: a GalaxyID column,
rows sorted by GalaxyID for folders, checked as a submission. Other IDs (survey names such as
"J112953.88+204753.6") are kept as text in an `id_str` column, sorted as text for folders; such a file is
checked for its own rules (the header, one row per image in order, every value in [0, 1]) but not as a
Kaggle submission. A catalogue's rows keep the catalogue's order.

Only file names are listed here (one directory listing, no image opened), so listing millions of images is
quick; an unreadable or wrongly sized image is reported when prediction reaches it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from galaxylib import layout, tree
from galaxylib.data.problems import MAX_LISTED
from galaxylib.errors import UserError

SUFFIXES = (*layout.IMAGE_SUFFIXES, ".png")
ID_COLUMNS = ("id_str", tree.ID_COLUMN)  # accepted in a catalogue, first found wins
PATH_COLUMNS = ("file_loc", "path")
OTHER_ID_COLUMN = "id_str"  # the output's ID column when the IDs are not Kaggle GalaxyIDs
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


@dataclass
class Inputs:
    """Images to predict, in output order, each with its ID (as text)."""

    ids: list[str]
    paths: list[Path]
    source: str  # what they came from, for messages

    def __post_init__(self) -> None:
        self.kaggle = all(_WHOLE_NUMBER.fullmatch(i) for i in self.ids)
        if self.kaggle and len({int(i) for i in self.ids}) != len(self.ids):
            first: dict[int, str] = {}
            same = [f"{i!r} and {first[int(i)]!r}" for i in self.ids if first.setdefault(int(i), i) != i]
            raise _listed(same, f"{self.source}: {len(same)} IDs name the same GalaxyID (leading zeros?):")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def id_column(self) -> str:
        """GalaxyID for Kaggle IDs, else id_str."""
        return tree.ID_COLUMN if self.kaggle else OTHER_ID_COLUMN

    def galaxy_ids(self) -> np.ndarray:
        """The IDs as int64 GalaxyIDs (Kaggle IDs only)."""
        if not self.kaggle:
            raise UserError(f"{self.source}: the image IDs are not Kaggle GalaxyIDs (whole numbers)")
        return np.asarray([int(i) for i in self.ids], np.int64)

    def subset(self, keep: Sequence[bool]) -> Inputs:
        """The inputs where `keep` is true, in the same order."""
        pairs = [(i, p) for i, p, k in zip(self.ids, self.paths, keep, strict=True) if k]
        return Inputs([i for i, _ in pairs], [p for _, p in pairs], self.source)

    def fingerprint(self) -> str:
        """A hash of every ID and path, in order: part of the key a resumed prediction must match."""
        h = hashlib.sha256()
        for i, p in zip(self.ids, self.paths, strict=True):
            h.update(f"{i}\0{os.path.abspath(p)}\n".encode())
        return h.hexdigest()


def _image_dir(folder: Path) -> Path | None:
    """The folder itself when it holds images, else its images_test_rev1/ or images_training_rev1/."""
    with os.scandir(folder) as entries:
        if any(os.path.splitext(e.name)[1].lower() in SUFFIXES for e in entries):
            return folder
    for name in (layout.TEST_IMAGES_DIR, layout.TRAIN_IMAGES_DIR):
        if (folder / name).is_dir():
            return folder / name
    return None


def _listed(problems: list[str], head: str) -> UserError:
    lines = problems[:MAX_LISTED] + ([f"... and {len(problems) - MAX_LISTED} more"] if len(problems) > MAX_LISTED
                                     else [])  # fmt: skip
    return UserError("\n".join([head, *(f"  {line}" for line in lines)]))


def _in_id_order(found: dict[str, Path], problems: list[str], source: str) -> Inputs:
    """The images found, sorted by ID (numerically when every ID is a whole number); refused, listed, when two
    files share an ID."""
    if problems:
        raise _listed(problems, f"{len(problems)} images share an ID with another image:")
    ids = list(found)
    ids.sort(key=int if all(_WHOLE_NUMBER.fullmatch(i) for i in ids) else None)
    return Inputs(ids, [found[i] for i in ids], source)


def from_folders(folders: Sequence[Path]) -> Inputs:
    """Every image in the folders, its ID from its file name (see the module docstring).

    Raises:
        UserError: a folder missing or without images, or one ID for two files (listed).
    """
    found: dict[str, Path] = {}
    problems = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise UserError(f"{folder}: no such image folder")
        image_dir = _image_dir(folder)
        if image_dir is None:
            raise UserError(f"{folder}: no images (*.jpg, *.jpeg, *.png, or {layout.TEST_IMAGES_DIR}/)")
        with os.scandir(image_dir) as entries:
            for e in entries:
                stem, ext = os.path.splitext(e.name)
                if ext.lower() not in SUFFIXES:
                    continue
                if stem in found:
                    problems.append(f"{e.path}: ID {stem!r} also names {found[stem]}")
                    continue
                found[stem] = Path(e.path)
    return _in_id_order(found, problems, "folders " + ", ".join(map(str, folders)))


def from_paths(paths: Sequence[Path]) -> Inputs:
    """Image files named one by one, their IDs from their file names, in ID order (as for folders).

    Raises:
        UserError: a file missing, or one ID for two files.
    """
    found: dict[str, Path] = {}
    problems = []
    for path in map(Path, paths):
        if not path.is_file():
            raise UserError(f"{path}: no such image file")
        if path.stem in found:
            problems.append(f"{path}: ID {path.stem!r} also names {found[path.stem]}")
        found.setdefault(path.stem, path)
    return _in_id_order(found, problems, f"{len(found)} image files")


def from_catalog(path: Path) -> Inputs:
    """The images a catalogue CSV lists, in its order (see the module docstring for its columns).

    Raises:
        UserError: the file unreadable, a column missing, an empty cell, a repeated ID or a missing image.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such catalogue file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{path}: not a readable CSV ({' '.join(str(err).split())})") from err
    columns = [c.strip() for c in df.columns]
    df.columns = columns
    id_col = next((c for c in ID_COLUMNS if c in columns), None)
    path_col = next((c for c in PATH_COLUMNS if c in columns), None)
    if id_col is None or path_col is None:
        raise UserError(f"{path}: a catalogue needs an ID column ({' or '.join(ID_COLUMNS)}) and a path column "
                        f"({' or '.join(PATH_COLUMNS)}); its columns are {', '.join(columns) or 'none'}")
    ids = df[id_col].str.strip().tolist()
    names = df[path_col].str.strip().tolist()
    problems = [f"row {r + 2}: empty {id_col if not i else path_col}"
                for r, (i, p) in enumerate(zip(ids, names, strict=True)) if not i or not p]  # fmt: skip
    seen: dict[str, int] = {}
    for r, i in enumerate(ids):
        if i and i in seen:
            problems.append(f"row {r + 2}: {id_col} {i!r} repeats row {seen[i] + 2}")
        seen.setdefault(i, r)
    base = path.parent
    paths = [Path(p) if os.path.isabs(p) else base / p for p in names]
    problems += [f"row {r + 2}: no image {p}" for r, p in enumerate(paths) if names[r] and not p.is_file()]
    if problems:
        raise _listed(problems, f"{path}: {len(problems)} problems in the catalogue:")
    if not ids:
        raise UserError(f"{path}: the catalogue lists no images")
    return Inputs(ids, paths, f"catalogue {path}")
