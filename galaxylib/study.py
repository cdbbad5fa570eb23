"""`python -m galaxylib study`: train some experiments with several seeds on given data and write their tables
only, into results/<name>/ — the scores over seeds with intervals and the noise floor, the claims, and, with
--holdout, the scores on galaxies no run trained or validated on.

No notebooks and no figures: this is what `make sample` commits for the real Kaggle sample, whose images (and
anything made from their pixels) must not enter the repository; numbers are fine.

    results/<name>/RESULTS.md      what was run: the command, data, profile, seeds, machine, and the tables
    results/<name>/tables/         CSV (full precision) + Markdown (captioned)
    results/<name>/runs/           the training runs (git-ignored), reused or resumed by train()
"""

from __future__ import annotations

import datetime
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from galaxylib import layout, rundir, tree
from galaxylib.errors import UserError
from galaxylib.experiments import get_experiment, resolve

SAMPLE_RESULTS = Path(__file__).resolve().parents[1] / "results" / "sample"  # what `make sample` commits
HOLDOUT_PREDICTIONS = "holdout_predictions.csv"
HOLDOUT_PREDICTIONS_1VIEW = "holdout_predictions_1view.csv"
HOLDOUT_IDS = "holdout_ids.csv"
RESULTS_MD = "RESULTS.md"


@dataclass
class Study:
    """What `run_study` wrote."""

    root: Path
    tables: dict[str, pd.DataFrame]
    seconds: float


def _predict_holdout(run_dir: Path, held, device: str, progress: bool) -> None:
    """The final model's predictions for the held-out galaxies, with TTA and with one view, beside the run's own
    validation predictions (computed once; a retrained run gets new ones)."""
    from galaxylib import prediction

    files = [run_dir / HOLDOUT_PREDICTIONS, run_dir / HOLDOUT_PREDICTIONS_1VIEW]
    last = run_dir / rundir.LAST
    if all(f.is_file() and f.stat().st_mtime >= last.stat().st_mtime for f in files):
        return
    cfg, model = rundir.load_run(run_dir, "last")  # the final model, as for the validation scores
    for path, tta in zip(files, (cfg.tta, 1), strict=True):
        preds = prediction.predict_files(model, cfg, list(held.image_paths), tta=tta, device=device, progress=progress)
        prediction.write_submission(held.ids, preds, path)


def _mean_predictors(run_dirs: dict[str, list[Path]], labels: pd.DataFrame) -> dict[str, list[np.ndarray]]:
    """Each run's mean predictor: the column means of its own training labels."""
    from galaxylib.metrics import mean_predictor

    return {e: [mean_predictor(labels.loc[sorted(rundir.RunDir(d).ids_in("train"))].to_numpy()) for d in dirs]
            for e, dirs in run_dirs.items()}  # fmt: skip


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_study(name: str, experiments: Sequence[str], *, data_dirs: Sequence[str | Path], profile: str = "quick",
              results_dir: str | Path = "results", holdout: int = 0, seeds: int | None = None, device: str = "auto",
              retrain: bool = False, progress: bool = True, n_boot: int = 2000,
              command: str = "") -> Study:  # fmt: skip
    """Train `experiments` x seeds on `data_dirs` into results/<name>/runs/ and write the tables.

    Args:
        name: the results folder's name (e.g. "sample").
        experiments: the rows, e.g. ["baseline", "baseline_cbam"].
        data_dirs: Kaggle-layout folders.
        profile: how the rows are scaled.
        results_dir: the parent of results/<name>/.
        holdout: fully labelled galaxies set aside (data.split.holdout_split), scored once by each final model.
        seeds: seeds 1..seeds of every row (default: the profile's).
        device: auto | cpu | cuda.
        retrain: train every run again.
        progress: progress bars and one line per epoch.
        n_boot: bootstrap replicates per interval.
        command: the command line, for RESULTS.md.

    Returns:
        A Study: where it wrote and the tables.
    """
    from galaxylib import data as gdata
    from galaxylib import report
    from galaxylib.device import device_name, select_device
    from galaxylib.reproduce import seeds_for
    from galaxylib.training import train

    start = time.perf_counter()
    dirs = [Path(d).expanduser().resolve() for d in data_dirs]
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"{d}: no such data folder")
    for e in experiments:
        get_experiment(e)  # every name checked before anything trains
    root = Path(results_dir).expanduser().resolve() / name
    tables_dir, runs_dir = root / "tables", root / "runs"
    run_dirs: dict[str, list[Path]] = {}
    configs = {}
    for e in experiments:
        for seed in seeds_for(e, profile, seeds):
            cfg = resolve(e, profile, device=device, data_dirs=[str(d) for d in dirs], seed=seed, holdout=holdout)
            run_dir = runs_dir / cfg.run_name()
            if progress:
                print(f"== {e} seed {seed}: {cfg.epochs} epochs at {cfg.img_size} px -> {run_dir}", flush=True)
            train(cfg, run_dir, progress=progress, retrain=retrain)
            run_dirs.setdefault(e, []).append(run_dir)
            configs[e] = cfg
    evidence = report.collect_evidence(run_dirs, dirs)
    prov = evidence.provenance()
    line, caveat = f"{prov.line()}", prov.caveat()
    metrics = {e: r.metrics for e, r in evidence.rows.items()}
    tables = {
        "scores": (report.scores_table(metrics, report.load_paper_reference(), list(experiments), evidence,
                                       n_boot=n_boot),
                   f"Validation scores over seeds, beside the paper's ({report.PAPER_SOURCE}). "
                   f"{report.SCORES_NOTE}"),
        "claims": (report.claims_table(evidence, n_boot=n_boot),
                   f"The paper's claims on our validation split. {report.CLAIMS_RULE}"),
        "noise_floor": (report.noise_floor_table(evidence),
                        "The label-noise floor of the validation labels (at 40 votes; a lower bound on these "
                        "consistency-weighted labels)."),
    }  # fmt: skip
    held = None
    data = gdata.load_folders(dirs, progress=False, verify_images=False)  # training has checked the images
    dev = select_device(device)
    if holdout:
        held = gdata.holdout_split(data, holdout)[1]
        for d in (d for ds in run_dirs.values() for d in ds):
            _predict_holdout(d, held, str(dev), progress)
        views = {report.TTA: HOLDOUT_PREDICTIONS, report.ONE_VIEW: HOLDOUT_PREDICTIONS_1VIEW}
        held_evidence = report.collect_evidence(run_dirs, dirs, views=views)
        labels = gdata.read_labels(dirs)
        tables["holdout"] = (
            report.heldout_table(held_evidence, _mean_predictors(run_dirs, labels), n_boot=n_boot),
            f"The final models on {len(held)} held-out, fully labelled galaxies that no run trained, validated or "
            f"selected on (the first {holdout} of numpy default_rng({gdata.HOLDOUT_SEED}).permutation of the "
            "fully labelled galaxies in GalaxyID order). 'Ratio' is our RMSE over the mean predictor's (each "
            "seed's own training means): below 1 the model generalises, the quick profile's target is <= 0.85.")
        tables["claims_holdout"] = (report.claims_table(held_evidence, n_boot=n_boot),
                                    f"The paper's claims on the held-out galaxies. {report.CLAIMS_RULE}")
        tables["noise_floor_holdout"] = (report.noise_floor_table(held_evidence),
                                         "The label-noise floor of the held-out labels (40 votes; a lower bound).")
    tables_dir.mkdir(parents=True, exist_ok=True)
    kinds = {"scores": "scores", "claims": "claims", "claims_holdout": "claims", "holdout": "heldout",
             "noise_floor": "noise_floor", "noise_floor_holdout": "noise_floor"}  # how each .md reads
    for table_name, (table, caption) in tables.items():
        report.save_table(table, tables_dir, table_name, f"{caption} {line}. {caveat}", kind=kinds[table_name])
    if held is not None:
        pd.DataFrame({tree.ID_COLUMN: held.ids}).to_csv(tables_dir / HOLDOUT_IDS, index=False)
    seconds = time.perf_counter() - start
    _write_manifest(root / RESULTS_MD, name=name, command=command, dirs=dirs, data=data, data_dirs=data_dirs,
                    profile=profile, configs=configs, evidence=evidence, holdout=holdout, tables=list(tables),
                    device=device_name(dev), seconds=seconds, line=line, caveat=caveat)  # fmt: skip
    return Study(root, {k: v[0] for k, v in tables.items()}, seconds)


def _write_manifest(path: Path, *, name: str, command: str, dirs: list[Path], data, data_dirs: Sequence,
                    profile: str, configs: dict, evidence, holdout: int, tables: list[str], device: str,
                    seconds: float, line: str, caveat: str) -> None:  # fmt: skip
    """RESULTS.md: how to make these tables again and what they were made from (`data`: the loaded folders)."""
    from galaxylib.fileio import atomic_write_text

    full = int((~np.isnan(data.labels).any(1)).sum())
    label_files = [f for d in dirs for f in sorted(d.glob(layout.LABELS_GLOB))]
    rows = []
    for e, r in evidence.rows.items():
        cfg = configs[e]
        rows.append(f"| {r.label} | {', '.join(map(str, r.seeds))} | {cfg.epochs} | {cfg.img_size} | "
                    f"{r.metrics[0]['n_train']} | {r.metrics[0]['n_val']} | "
                    f"{np.mean([m['total_seconds'] for m in r.metrics]):.0f} |")
    text = f"""# results/{name}: {evidence.provenance().data_source}, tables only

Written by `python -m galaxylib study` on {datetime.date.today().isoformat()} (galaxylib commit {_git_commit()}).
{line}. {caveat}

Command (from the repository root):

```
{command or "python -m galaxylib study ..."}
```

- Data: {', '.join(str(d) for d in data_dirs)}: {len(data)} labelled galaxies, {full} of them with all 37 columns
  (label files: {', '.join(f"{f.name} sha256 {rundir.sha256_of(f)[:16]}" for f in label_files)}).
- Held out: {holdout} fully labelled galaxies{f" (GalaxyIDs in tables/{HOLDOUT_IDS})" if holdout else ""}, never
  trained, validated or selected on; scored once by each run's final model.
- Profile: {profile}; machine: {device}. This call took {seconds / 60:.1f} min (runs already finished are reused,
  not trained again). The training seconds below are one measurement on this machine, not a benchmark.

| row | seeds | epochs | px | train galaxies | val galaxies | training s per run |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Tables (CSV full precision, Markdown captioned): {', '.join(f"`tables/{t}`" for t in tables)}.
No figures and no images: anything made from the Kaggle pixels stays out of the repository.
"""
    atomic_write_text(path, text)
