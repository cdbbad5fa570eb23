"""`check-data`: validate folders and summarise what they hold, in lines a user reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from galaxylib import tree
from galaxylib.data.read import GalaxyData, data_source, read_any_folders
from galaxylib.errors import DataError


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
        f"  labelled columns:  {len(columns)} of {tree.NUM_OUTPUTS}",
        f"  complete questions: {', '.join(complete) or 'none'}",
    ]
    if partial:
        lines.append(f"  partly labelled:   {', '.join(partial)}")
    lines.append(f"  tree constraints:  satisfied, max error {max_err:.2g} (tolerance {tol:g})")
    return lines


def check_folders(dirs: list[Path], *, tol: float = 1e-3, skip_bad: bool = False) -> list[str]:
    """Validate data folders (labelled or not) and return the summary lines check-data prints.

    Raises:
        DataError: every problem in every folder, one per line.
    """
    if tol < 0:
        raise DataError(f"--tol must be >= 0, got {tol}")
    dirs = [Path(d) for d in dirs]
    found = read_any_folders(dirs, tol=tol, skip_bad=skip_bad)
    lines = [f"checked {len(dirs)} folder{'s' * (len(dirs) != 1)}: {', '.join(map(str, dirs))}"]
    for data in (found.labelled, found.unlabelled):
        if data is not None:
            lines += _summary(data, tol)
    lines.append(f"  data source:       {data_source(dirs)}")
    if found.skipped:
        lines.append(f"  skipped:           {len(found.skipped)} galaxies (--skip-bad):")
        lines += [f"    GalaxyID {gid}: {reason}" for gid, reason in found.skipped]
    lines.append("valid" if not found.skipped else "valid after skipping the galaxies listed above")
    return lines
