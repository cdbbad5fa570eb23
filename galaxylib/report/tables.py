"""Tables: our runs' metrics beside the paper's numbers, rounded Markdown for reading and full-precision CSV.

Every number in a table comes from a run's metrics.json or predictions (written by galaxylib.training), except the
paper's own numbers, which come from galaxylib/report/paper_reference.csv (typed in once from the paper and labelled as
the paper's). A row with several training seeds shows the mean over seeds, their sd and their number; with the
runs' predictions (report.evidence) also a 95 % bootstrap interval over galaxies; and every score table has the
label-noise floor beside the scores (galaxylib.metrics.noise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from galaxylib import tree
from galaxylib.errors import UserError
from galaxylib.experiments import EXPERIMENTS
from galaxylib.metrics import (
    LEVEL,
    N_BOOT,
    VOTES,
    bootstrap_rmse,
    noise_floor,
    noise_floor_from_labels,
    noise_floor_from_synthetic,
    rmse,
    seed_summary,
)
from galaxylib.report.display import markdown, to_markdown
from galaxylib.report.evidence import ONE_VIEW, label_of
from galaxylib.report.provenance import pretrained_label

PAPER_REFERENCE = Path(__file__).resolve().parent / "paper_reference.csv"  # package data: works installed too
PAPER_SOURCE = "Ng 2024, Tables I and II (Kaggle private leaderboard RMSE)"
SCORES_NOTE = ("Our scores are means over the training seeds ('Seeds'; 'SD over seeds' is their spread, empty for one "
               "seed); the 95% CI, where shown, is a bootstrap over the validation galaxies of that mean; 'Noise "
               "floor' is the RMSE a perfect model would score against labels from 40 volunteers (binomial; a lower "
               "bound on the real, consistency-weighted labels), 'True noise floor' the synthetic data's own.")


def load_paper_reference(path: str | Path = PAPER_REFERENCE) -> pd.DataFrame:
    """The paper's own numbers, indexed by experiment name."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: the paper's reference numbers are missing")
    df = pd.read_csv(path)
    missing = {"experiment", "model", "score", "epochs", "seconds_per_epoch"} - set(df.columns)
    if missing:
        raise UserError(f"{path}: missing columns {sorted(missing)}")
    return df.set_index("experiment")


# ----------------------------------------------------------------------------------------------------------
# tables


def _mean(values: Sequence) -> float | None:
    known = [float(v) for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _seed_metrics(metrics: Mapping, name: str) -> list[dict]:
    """The metrics.json contents of one row: one per seed (a lone mapping is one seed)."""
    runs = metrics.get(name)
    return [runs] if isinstance(runs, Mapping) else list(runs or [])


def scores_table(metrics: Mapping[str, Mapping | Sequence[Mapping]], paper: pd.DataFrame | None = None,
                 experiments: Sequence[str] | None = None, evidence=None, *, n_boot: int = N_BOOT,
                 level: float = LEVEL) -> pd.DataFrame:  # fmt: skip
    """One row per experiment: our scores and timings, over its seeds, the paper's beside them.

    Args:
        metrics: experiment -> its metrics.json contents, or a list of them, one per training seed.
        paper: load_paper_reference() (None: no paper columns).
        experiments: the rows, in order (default: every key of `metrics`).
        evidence: report.collect_evidence of the same runs: adds the bootstrap interval over galaxies of the
            mean-over-seeds RMSE (TTA) and, on synthetic data, the true noise floor.
        n_boot: bootstrap replicates.
        level: the interval's coverage.

    Returns:
        The table. Scores are means over seeds; 'SD over seeds' is their sample sd (empty for one seed); 'Noise
        floor' is the binomial label-noise floor of the validation labels at 40 votes (a lower bound on real,
        consistency-weighted labels); 'Ours - paper' is our mean validation RMSE with TTA minus the paper's
        leaderboard score.
    """
    pct = f"{round(level * 100):d}%"
    rows = []
    for k, name in enumerate(experiments or list(metrics)):
        runs = _seed_metrics(metrics, name)
        if not runs:
            continue
        m = runs[0]
        tta = seed_summary([r.get("val_rmse_tta") for r in runs])
        row = {
            "Model": label_of(name),
            "Experiment": name,
            "Run": ", ".join(str(r.get("run_name")) for r in runs),
            "Data": m.get("data_source"),
            "Profile": m.get("profile"),
            "Device": m.get("device"),
            "Pretrained": pretrained_label(name, m) if name in EXPERIMENTS else m.get("pretrained"),
            "Seeds": tta.n,
            "Epochs": m.get("epochs"),
            "Image px": m.get("img_size"),
            "Train galaxies": m.get("n_train"),
            "Val galaxies": m.get("n_val"),
            "Val RMSE": _mean([r.get("val_rmse") for r in runs]),
            "Val RMSE (TTA)": tta.mean,
            "SD over seeds": tta.sd,
            f"{pct} CI low": None,
            f"{pct} CI high": None,
            "Mean-predictor RMSE": _mean([r.get("mean_predictor_rmse") for r in runs]),
            "Noise floor": _mean([r.get("noise_floor") for r in runs]),
            "s / epoch": float(np.median([r["seconds_per_epoch"] for r in runs]))
            if all(r.get("seconds_per_epoch") is not None for r in runs) else None,
            "Total s": _mean([r.get("total_seconds") for r in runs]),
        }  # fmt: skip
        if evidence is not None and evidence.has(name):
            ids = evidence.galaxies([name])
            truth = evidence.truth(ids)
            boot = bootstrap_rmse(evidence.predictions(name, ids), truth, n_boot, seed=k, level=level)
            row[f"{pct} CI low"], row[f"{pct} CI high"] = boot.low, boot.high
            if evidence.expected is not None:
                row["True noise floor"] = noise_floor_from_synthetic(truth, evidence.expected.loc[ids].to_numpy())
        if paper is not None:
            ref = paper.loc[name] if name in paper.index else None
            row["Paper score"] = None if ref is None else float(ref["score"])
            row["Paper epochs"] = None if ref is None else int(ref["epochs"])
            row["Paper s / epoch"] = None if ref is None else float(ref["seconds_per_epoch"])
            ours = row["Val RMSE (TTA)"]
            row["Ours - paper"] = (None if ref is None or ours is None else float(ours) - float(ref["score"]))
        rows.append(row)
    table = pd.DataFrame(rows)
    if "Paper epochs" in table:
        table["Paper epochs"] = table["Paper epochs"].astype("Int64")  # an integer, also beside rows the paper lacks
    if evidence is None:
        table = table.drop(columns=[f"{pct} CI low", f"{pct} CI high"], errors="ignore")
    if "True noise floor" in table:  # beside the estimate it checks
        columns = [c for c in table.columns if c != "True noise floor"]
        columns.insert(columns.index("Noise floor") + 1, "True noise floor")
        table = table[columns]
    return table


def per_question_table(metrics: Mapping[str, Mapping | Sequence[Mapping]], experiments: Sequence[str] | None = None,
                       floor_labels: np.ndarray | None = None, floor_name: str = "") -> pd.DataFrame:  # fmt: skip
    """RMSE per question (validation, with TTA; the mean over seeds), one row per experiment.

    Args:
        metrics: experiment -> metrics.json contents (or one per seed).
        experiments: the rows in order (default: every key).
        floor_labels: (N, 37) validation labels: adds a last row with the label-noise floor of each question.
        floor_name: which galaxies those are, for that row's name.
    """
    rows = []
    for name in experiments or list(metrics):
        runs = _seed_metrics(metrics, name)
        if not runs:
            continue
        per_q = [r.get("per_question_rmse_tta", {}) for r in runs]
        row = {"Model": label_of(name), "Experiment": name,
               "Seeds": len(runs)}  # fmt: skip
        row.update({key: _mean([p.get(key) for p in per_q]) for key in [f"Q{q.number}" for q in tree.QUESTIONS]})
        row["all"] = _mean([p.get("all") for p in per_q])
        rows.append(row)
    if floor_labels is not None:
        row = {"Model": f"label-noise floor ({VOTES} votes{', ' + floor_name if floor_name else ''})",
               "Experiment": "", "Seeds": None}  # fmt: skip
        row.update({f"Q{q.number}": noise_floor(floor_labels, columns=q.slice).rmse for q in tree.QUESTIONS})
        row["all"] = noise_floor(floor_labels).rmse
        rows.append(row)
    table = pd.DataFrame(rows)
    table["Seeds"] = table["Seeds"].astype("Int64")
    return table


def heldout_table(evidence, mean_predictors: Mapping[str, Sequence[np.ndarray]], *, n_boot: int = N_BOOT,
                  level: float = LEVEL) -> pd.DataFrame:  # fmt: skip
    """Scores on a held-out set (evidence whose views are the held-out predictions), against the mean predictor.

    Args:
        evidence: report.collect_evidence with the held-out prediction files as its views.
        mean_predictors: experiment -> each seed's (37,) mean predictor (its own training means), in seed order.
        n_boot: bootstrap replicates.
        level: the interval's coverage.

    Returns:
        One row per experiment: RMSE with TTA (mean over seeds, sd, interval over galaxies), with one view, the
        mean predictor's, 'Ratio' (ours / mean predictor, mean over seeds) and 'Worst seed ratio', the noise floor.
    """
    pct = f"{round(level * 100):d}%"
    prov = evidence.provenance()
    rows = []
    for k, (name, row_runs) in enumerate(evidence.rows.items()):
        if not evidence.has(name):
            continue
        ids = evidence.galaxies([name])
        truth = evidence.truth(ids)
        preds = evidence.predictions(name, ids)
        tta = [rmse(p, truth) for p in preds]
        one = ([rmse(p, truth) for p in evidence.predictions(name, ids, ONE_VIEW)] if evidence.has(name, ONE_VIEW)
               else [])  # fmt: skip
        reference = [rmse(np.broadcast_to(m, truth.shape), truth) for m in mean_predictors[name]]
        ratios = [a / b for a, b in zip(tta, reference, strict=True)]
        boot = bootstrap_rmse(preds, truth, n_boot, seed=k, level=level)
        summary = seed_summary(tta)
        rows.append({
            "Model": row_runs.label, "Experiment": name, "Seeds": summary.n, "Held-out galaxies": len(ids),
            "RMSE (TTA)": summary.mean, "SD over seeds": summary.sd, f"{pct} CI low": boot.low,
            f"{pct} CI high": boot.high, "RMSE (1 view)": _mean(one), "Mean-predictor RMSE": _mean(reference),
            "Ratio": float(np.mean(ratios)), "Worst seed ratio": float(np.max(ratios)),
            "Noise floor": noise_floor(truth).rmse, "Data": prov.data_source, "Profile": prov.profile,
        })  # fmt: skip
    return pd.DataFrame(rows)


def noise_floor_table(evidence, experiments: Sequence[str] | None = None, n_sim: int = 20) -> pd.DataFrame:
    """The label-noise floor of each validation set the rows were scored on, by every method we have.

    Rows trained on the same galaxies share a validation set (the paper's split of the profile's subset): one
    line per set, naming its rows. Columns: the binomial floor at 40 votes (the one beside every score), its
    plug-in version, the parametric bootstrap (fully labelled sets only), the true floor (synthetic data only,
    from expected_solutions.csv), and the best row's score with the part of it a model could still remove,
    sqrt(RMSE^2 - floor^2) (treating label noise as independent of the model's error).

    Args:
        evidence: report.collect_evidence.
        experiments: the rows to cover (default all that have predictions).
        n_sim: re-simulations of the parametric bootstrap.
    """
    names = [e for e in (experiments or list(evidence.rows)) if evidence.has(e)]
    groups: dict[tuple, list[str]] = {}
    for e in names:
        groups.setdefault(tuple(evidence.galaxies([e]).tolist()), []).append(e)
    rows = []
    for ids, members in groups.items():
        ids = np.asarray(ids)
        labels = evidence.truth(ids)
        full = not np.isnan(labels).any()
        scores = {e: float(np.mean([rmse(p, labels) for p in evidence.predictions(e, ids)])) for e in members}
        best = min(scores, key=scores.get)
        best_rmse = scores[best]
        floor = noise_floor(labels)
        row = {
            "Validation set of": ", ".join(map(label_of, members)),
            "Galaxies": len(ids), "Fully labelled": int((~np.isnan(labels).any(1)).sum()),
            "Votes assumed": VOTES, "Noise floor (binomial)": floor.rmse,
            "Plug-in (/n)": noise_floor(labels, unbiased=False).rmse,
            "Parametric bootstrap": noise_floor_from_labels(labels, n_sim=n_sim).rmse if full else None,
            "True noise floor": None if evidence.expected is None else noise_floor_from_synthetic(
                labels, evidence.expected.loc[ids].to_numpy()),
            "Best row": label_of(best), "Best RMSE (TTA)": best_rmse,
            "Removable by a model": math.sqrt(max(best_rmse**2 - floor.rmse**2, 0.0)),
        }  # fmt: skip
        rows.append(row)
    table = pd.DataFrame(rows)
    prov = evidence.provenance()
    table["Data"], table["Profile"] = prov.data_source, prov.profile
    return table.dropna(axis=1, how="all")


def save_table(df: pd.DataFrame, out_dir: str | Path, name: str, caption: str,
               kind: str | None = None) -> tuple[Path, Path]:  # fmt: skip
    """`name`.csv (full precision, every column, for code) and `name`.md (caption + rounded table, for reading).

    Args:
        df: the table.
        out_dir: the tables folder.
        name: the files' name.
        caption: the Markdown file's first paragraph (what, which data, profile and machine).
        kind: a report.display kind: the Markdown file shows the reading table (the columns a reader needs, human
            headers, ours apart from the paper's unless the data is the full Kaggle set); None: every column.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    df.to_csv(csv_path, index=False)
    md_path.write_text(f"{caption}\n\n{to_markdown(df) if kind is None else markdown(df, kind)}")
    return csv_path, md_path


def load_table(folder: str | Path, name: str) -> tuple[pd.DataFrame, str]:
    """A table save_table wrote: (`name`.csv as a frame, the caption of `name`.md, "" when there is none).

    Raises:
        UserError: no `name`.csv in `folder`.
    """
    folder = Path(folder)
    csv_path, md_path = folder / f"{name}.csv", folder / f"{name}.md"
    if not csv_path.is_file():
        raise UserError(f"{csv_path}: no such table")
    caption = md_path.read_text().split("\n\n", 1)[0].strip() if md_path.is_file() else ""
    return pd.read_csv(csv_path), caption


def paper_table(paper: pd.DataFrame, experiments: Sequence[str]) -> pd.DataFrame:
    """The paper's own rows, labelled as the paper's."""
    rows = paper.loc[[e for e in experiments if e in paper.index]].reset_index()
    cols = ["model", "score", "epochs", "pretrained_dataset", "total_runtime_s", "seconds_per_epoch", "table", "note"]
    out = rows[[c for c in cols if c in rows.columns]].copy()
    out.insert(0, "Source", "paper (Ng 2024)")
    return out


def constraint_table(labels: np.ndarray, ids: np.ndarray, tol: float = 1e-3) -> pd.DataFrame:
    """Per question: what its answers sum to, the largest deviation, how many galaxies exceed `tol`."""
    labels = np.asarray(labels, np.float64)
    err = np.abs(tree.question_sums(labels) - tree.parent_weights(labels))
    violations = tree.check_constraints(labels, ids, tol)
    rows = []
    for j, q in enumerate(tree.QUESTIONS):
        col = err[:, j]
        rows.append({
            "Question": f"Q{q.number} {q.text}",
            "Answers sum to": q.parent_name,
            "Checked galaxies": int(np.isfinite(col).sum()),
            "Max |sum - parent|": float(np.nanmax(col)) if np.isfinite(col).any() else None,
            f"Violations (> {tol:g})": sum(v.question == q.number for v in violations),
        })  # fmt: skip
    return pd.DataFrame(rows)


def split_table(labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> pd.DataFrame:
    """Sizes of the paper's split and its Q1 strata (argmax of Class1.1..1.3) in each part."""
    q1 = tree.QUESTIONS[0]
    rows = []
    for part, idx in (("train", train_idx), ("validation", val_idx)):
        strata = np.nanargmax(labels[idx][:, q1.slice], axis=1) if len(idx) else np.zeros(0, int)
        row = {"Part": part, "Galaxies": len(idx)}
        for a, answer in enumerate(q1.answers):
            row[f"Q1 {answer} (share)"] = float(np.mean(strata == a)) if len(idx) else None
        rows.append(row)
    return pd.DataFrame(rows)
