"""Tables: our runs' metrics beside the paper's numbers, rounded Markdown for reading and full-precision CSV.

Every number in a table comes from a run's metrics.json (written by galaxylib.train), except the paper's own
numbers, which come from results/paper_reference.csv (typed in once from the paper and labelled as the
paper's).
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
from galaxylib.report.provenance import pretrained_label

PAPER_REFERENCE = Path(__file__).resolve().parents[2] / "results" / "paper_reference.csv"
PAPER_SOURCE = "Ng 2024, Tables I and II (Kaggle private leaderboard RMSE)"


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


def scores_table(metrics: Mapping[str, Mapping], paper: pd.DataFrame | None = None,
                 experiments: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per experiment: our scores and timings from metrics.json, the paper's beside them.

    `metrics` maps experiment name -> its metrics.json contents; `paper` is load_paper_reference().
    'Ours - paper' is our validation RMSE with TTA minus the paper's leaderboard score.
    """
    rows = []
    for name in experiments or list(metrics):
        if name not in metrics:
            continue
        m = metrics[name]
        row = {
            "Model": EXPERIMENTS[name].label if name in EXPERIMENTS else name,
            "Experiment": name,
            "Run": m.get("run_name"),
            "Data": m.get("data_source"),
            "Profile": m.get("profile"),
            "Device": m.get("device"),
            "Pretrained": pretrained_label(name, m) if name in EXPERIMENTS else m.get("pretrained"),
            "Epochs": m.get("epochs"),
            "Image px": m.get("img_size"),
            "Train galaxies": m.get("n_train"),
            "Val galaxies": m.get("n_val"),
            "Val RMSE": m.get("val_rmse"),
            "Val RMSE (TTA)": m.get("val_rmse_tta"),
            "Mean-predictor RMSE": m.get("mean_predictor_rmse"),
            "s / epoch": m.get("seconds_per_epoch"),
            "Total s": m.get("total_seconds"),
        }
        if paper is not None:
            ref = paper.loc[name] if name in paper.index else None
            row["Paper score"] = None if ref is None else float(ref["score"])
            row["Paper epochs"] = None if ref is None else int(ref["epochs"])
            row["Paper s / epoch"] = None if ref is None else float(ref["seconds_per_epoch"])
            ours = row["Val RMSE (TTA)"]
            row["Ours - paper"] = (None if ref is None or ours is None else float(ours) - float(ref["score"]))
        rows.append(row)
    return pd.DataFrame(rows)


def per_question_table(metrics: Mapping[str, Mapping],
                       experiments: Sequence[str] | None = None) -> pd.DataFrame:
    """RMSE per question (validation, with TTA), one row per experiment."""
    rows = []
    for name in experiments or list(metrics):
        if name not in metrics:
            continue
        per_q = metrics[name].get("per_question_rmse_tta", {})
        row = {"Model": EXPERIMENTS[name].label if name in EXPERIMENTS else name, "Experiment": name}
        row.update({f"Q{q.number}": per_q.get(f"Q{q.number}") for q in tree.QUESTIONS})
        row["all"] = per_q.get("all")
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(value, floatfmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        return format(float(value), floatfmt)
    return str(value).replace("|", "\\|")


SECONDS_FORMAT = ".1f"


def to_markdown(df: pd.DataFrame, floatfmt: str = ".5f", formats: Mapping[str, str] | None = None) -> str:
    """A GitHub Markdown table (no tabulate dependency). RMSEs get 5 decimals, seconds columns one."""
    formats = dict(formats or {})
    for column in df.columns:
        if str(column) == "Total s" or str(column).endswith(("s / epoch", "runtime_s", "seconds_per_epoch")):
            formats.setdefault(column, SECONDS_FORMAT)
    fmts = [formats.get(c, floatfmt) for c in df.columns]
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v, f) for v, f in zip(row, fmts, strict=True)) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def save_table(df: pd.DataFrame, out_dir: str | Path, name: str, caption: str) -> tuple[Path, Path]:
    """`name`.csv (full precision, for code) and `name`.md (caption + rounded table, for reading)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    df.to_csv(csv_path, index=False)
    md_path.write_text(f"{caption}\n\n{to_markdown(df)}")
    return csv_path, md_path


def paper_table(paper: pd.DataFrame, experiments: Sequence[str]) -> pd.DataFrame:
    """The paper's own rows, labelled as the paper's."""
    rows = paper.loc[[e for e in experiments if e in paper.index]].reset_index()
    cols = ["model", "score", "epochs", "pretrained_dataset", "total_runtime_s", "seconds_per_epoch"]
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
