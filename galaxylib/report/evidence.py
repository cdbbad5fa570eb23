"""What the intervals, the claims and the noise floor are computed from: each row's runs (one per training seed),
their per-galaxy predictions and the labels, matched by GalaxyID.

A run folder keeps its final model's validation predictions with 16-view TTA (val_predictions.csv) and with one
view (val_predictions_1view.csv); `collect_evidence` reads them for every run of every row, and the labels (and,
for synthetic data, the infinite-volunteer values) from the data folders. Everything here is a file written by
code: nothing is typed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

import numpy as np
import pandas as pd

from galaxylib import layout, rundir, tree
from galaxylib.errors import UserError
from galaxylib.experiments import EXPERIMENTS
from galaxylib.report.provenance import Provenance, common_provenance

TTA = "tta"
ONE_VIEW = "1view"
VIEWS: dict[str, str] = {TTA: rundir.VAL_PREDICTIONS, ONE_VIEW: rundir.VAL_PREDICTIONS_1VIEW}  # view -> file
EXPECTED_CSV = layout.EXPECTED_CSV


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions file (GalaxyID + the 37 columns) as a frame indexed by GalaxyID, in tree.COLUMNS order."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable predictions ({err})") from err
    missing = [c for c in (tree.ID_COLUMN, *tree.COLUMNS) if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing columns {missing[:3]}")
    return df.set_index(tree.ID_COLUMN)[list(tree.COLUMNS)].astype(np.float64)


def label_of(experiment: str) -> str:
    """A row's name in tables and figures: the experiment's label, or the name itself for one we do not know."""
    return EXPERIMENTS[experiment].label if experiment in EXPERIMENTS else experiment


@dataclass
class RowRuns:
    """One row of a table (an experiment): its runs, one per training seed, in seed order.

    Attributes:
        experiment: the experiment's name.
        metrics: each run's metrics.json.
        predictions: view name -> one frame per seed (GalaxyID index); a view is left out unless every run has it.
    """

    experiment: str
    metrics: list[dict]
    predictions: dict[str, list[pd.DataFrame]] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return [int(m.get("seed", 1)) for m in self.metrics]

    @property
    def label(self) -> str:
        return label_of(self.experiment)

    def not_the_papers_setting(self) -> str:
        """Why this row is not the paper's setting ("" when it is): a pretrained row trained from random weights."""
        exp = EXPERIMENTS.get(self.experiment)
        if exp is not None and exp.pretrained and not all(m.get("pretrained") for m in self.metrics):
            return f"{self.label} trained from random initialisation (pretrained weights not found)"
        return ""


@dataclass
class Evidence:
    """Per-galaxy predictions of every row and the labels they are scored against.

    Attributes:
        rows: experiment -> its runs.
        labels: GalaxyID -> the 37 label columns (NaN where unlabelled), every galaxy any run predicted.
        expected: the same galaxies' infinite-volunteer values when the data is synthetic, else None.
    """

    rows: dict[str, RowRuns]
    labels: pd.DataFrame
    expected: pd.DataFrame | None = None

    def has(self, experiment: str, view: str = TTA) -> bool:
        """True when the row was run and every seed has predictions for `view`."""
        row = self.rows.get(experiment)
        return row is not None and bool(row.predictions.get(view))

    def galaxies(self, experiments: Sequence[str], view: str | Sequence[str] = TTA) -> np.ndarray:
        """The GalaxyIDs predicted by every seed of every one of `experiments` (for each of `view`), sorted."""
        views = [view] if isinstance(view, str) else list(view)
        frames = [f for e in experiments for v in views for f in self.rows[e].predictions[v]]
        return np.sort(reduce(lambda a, b: a.intersection(b), (f.index for f in frames)).to_numpy())

    def predictions(self, experiment: str, ids: np.ndarray, view: str = TTA) -> list[np.ndarray]:
        """(len(ids), 37) predictions of each seed of `experiment` for `view`."""
        return [f.loc[ids].to_numpy(np.float64) for f in self.rows[experiment].predictions[view]]

    def truth(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), 37) labels, NaN where unlabelled."""
        return self.labels.loc[ids].to_numpy(np.float64)

    def provenance(self) -> Provenance:
        """What the rows share (data, profile, device)."""
        return common_provenance({f"{e}/{i}": m for e, r in self.rows.items() for i, m in enumerate(r.metrics)})


def _read_expected(data_dirs: Sequence[str | Path]) -> pd.DataFrame | None:
    """The infinite-volunteer values of synthetic folders (None unless every folder is synthetic)."""
    frames = []
    for d in map(Path, data_dirs):
        if not ((d / layout.SYNTHETIC_MARKER).is_file() and (d / EXPECTED_CSV).is_file()):
            return None
        frames.append(read_predictions(d / EXPECTED_CSV))
    return pd.concat(frames) if frames else None


def collect_evidence(runs: Mapping[str, Sequence], data_dirs: Sequence[str | Path], *,
                     views: Mapping[str, str] = VIEWS) -> Evidence:  # fmt: skip
    """Read every finished run's metrics and predictions, and the labels of the galaxies they predicted.

    Args:
        runs: experiment -> its runs, one per seed: run folders, or anything with a .run_dir (reproduce.Run); an
            empty list is a row that was not run.
        data_dirs: the data folders the runs trained on (labels, and expected_solutions.csv when synthetic).
        views: view name -> predictions file in each run folder (default: TTA and one view).

    Returns:
        The Evidence; runs are sorted by seed.
    """
    rows: dict[str, RowRuns] = {}
    for experiment, seeds in runs.items():
        metrics, preds = [], {v: [] for v in views}
        for run in (rundir.RunDir(getattr(r, "run_dir", r)) for r in seeds):
            metrics.append(run.metrics())
            for view, name in views.items():
                if run.file(name).is_file():
                    preds[view].append(read_predictions(run.file(name)))
        order = np.argsort([int(m.get("seed", 1)) for m in metrics], kind="stable")
        complete = {v: [p[i] for i in order] for v, p in preds.items() if p and len(p) == len(metrics)}
        rows[experiment] = RowRuns(experiment, [metrics[i] for i in order], complete)
    ids = sorted({int(g) for r in rows.values() for frames in r.predictions.values() for f in frames for g in f.index})
    from galaxylib.data import read_labels

    labels = read_labels(data_dirs).reindex(ids)
    if labels.isna().all(axis=1).any():
        missing = labels.index[labels.isna().all(axis=1)][0]
        raise UserError(f"GalaxyID {missing} was predicted but has no labels in {', '.join(map(str, data_dirs))}")
    expected = _read_expected(data_dirs)
    return Evidence(rows, labels, None if expected is None else expected.reindex(ids))

