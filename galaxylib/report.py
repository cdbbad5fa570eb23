"""Tables and figures for the notebooks: our runs' metrics beside the paper's numbers, always labelled.

Every number in a table comes from a run's metrics.json (written by galaxylib.train), except the paper's own
numbers, which come from results/paper_reference.csv (typed in once from the paper and labelled as the
paper's). Every table and figure carries its provenance: the data (synthetic / Kaggle sample / full Kaggle),
the profile, the device and whether the weights were pretrained. Synthetic numbers are never a reproduction.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from galaxylib import tree
from galaxylib.cli import UserError
from galaxylib.experiments import EXPERIMENTS

PAPER_REFERENCE = Path(__file__).resolve().parents[1] / "results" / "paper_reference.csv"
PAPER_SOURCE = "Ng 2024, Tables I and II (Kaggle private leaderboard RMSE)"
TABLE_I = ("baseline", "baseline_cbam")
TABLE_II = ("baseline", "baseline_cbam", "resnet50_scratch", "resnet50", "resnet101", "convnext_large",
            "dinov2_base")  # fmt: skip
FOUNDATION = TABLE_II[2:]


# ----------------------------------------------------------------------------------------------------------
# provenance


@dataclass(frozen=True)
class Provenance:
    """Where a number comes from: shown in every table caption and figure title."""

    data_source: str  # synthetic | Kaggle sample | full Kaggle
    profile: str
    device: str
    pretrained: str = ""  # "" when it differs per row (the table says it per row then)

    def line(self) -> str:
        parts = [f"data: {self.data_source}", f"profile: {self.profile}", f"device: {self.device}"]
        if self.pretrained:
            parts.append(f"pretrained: {self.pretrained}")
        return " | ".join(parts)

    def caveat(self) -> str:
        return data_caveat(self.data_source, self.profile)


def data_caveat(data_source: str, profile: str) -> str:
    """One sentence on what the numbers can and cannot be compared with."""
    if "synthetic" in data_source:
        return ("Synthetic data: these numbers test the pipeline; they are not a reproduction of the paper "
                "and cannot be compared with its scores.")
    if data_source != "full Kaggle":
        return ("A sample of the Kaggle data (far fewer than the paper's 61,578 galaxies): not comparable "
                "with the paper's scores.")
    if profile != "paper":
        return (f"Full Kaggle data, but the '{profile}' profile trains fewer epochs on fewer, smaller "
                "images: not the paper's setting.")
    return ("Full Kaggle data, paper profile. Ours: RMSE on the paper's 10% validation split; the paper's: "
            "the Kaggle private leaderboard.")


def describe_device(device: str = "auto") -> str:
    """'NVIDIA H100 ...' or 'cpu: x86_64 (2 cores)', as train.py records it in metrics.json."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return (platform.processor() or platform.machine()) + f" ({os.cpu_count()} cores)"


def pretrained_label(experiment: str, metrics: Mapping) -> str:
    """The pretrained column: as the paper, loaded, or (never silently) missing."""
    exp = EXPERIMENTS[experiment]
    if not exp.pretrained:
        return "no"
    if metrics.get("pretrained"):
        return f"yes ({exp.paper_weights})" if exp.paper_weights else "yes"
    return "no (weights not found)"


def provenance_of(metrics: Mapping, experiment: str | None = None) -> Provenance:
    exp = experiment or metrics.get("experiment")
    pretrained = pretrained_label(exp, metrics) if exp in EXPERIMENTS else ""
    get = metrics.get
    return Provenance(get("data_source", "?"), get("profile", "?"), get("device", "?"), pretrained)


def common_provenance(metrics: Mapping[str, Mapping]) -> Provenance:
    """The provenance shared by several runs; a field that differs is listed with all its values."""

    def joined(key: str) -> str:
        values = sorted({str(m.get(key, "?")) for m in metrics.values()})
        return " / ".join(values) if values else "?"

    return Provenance(joined("data_source"), joined("profile"), joined("device"))


# ----------------------------------------------------------------------------------------------------------
# reading runs and the paper's numbers


def load_metrics(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: no metrics.json (the run has not finished)")
    return json.loads(path.read_text())


def load_history(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        raise UserError(f"{run_dir}: no history.csv")
    return pd.read_csv(path)


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


# ----------------------------------------------------------------------------------------------------------
# figures


def save_figure(fig, out_dir: str | Path, name: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_history(histories: Mapping[str, pd.DataFrame], title: str):
    """The paper's Fig. 3 / 5: loss, RMSE and learning rate per epoch; training solid, validation dashed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, (label, h) in enumerate(histories.items()):
        colour = f"C{i}"
        for ax, key in zip(axes[:2], ("loss", "rmse"), strict=True):
            ax.plot(h["epoch"], h[f"train_{key}"], "-o", ms=3, color=colour, label=f"{label} train")
            ax.plot(h["epoch"], h[f"val_{key}"], "--s", ms=3, color=colour, label=f"{label} validation")
        axes[2].plot(h["epoch"], h["lr"], "-o", ms=3, color=colour, label=label)
    for ax, name in zip(axes, ("MSE loss", "RMSE", "learning rate"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_model_comparison(table: pd.DataFrame, title: str):
    """Our validation RMSE (TTA) and seconds per epoch beside the paper's, one bar pair per model."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    x = np.arange(len(table))
    pairs = zip(table["Model"], table["Pretrained"], strict=True)
    labels = [f"{m}\n({p})" if str(p).startswith("no (") else m for m, p in pairs]
    for ax, ours, theirs, name in ((axes[0], "Val RMSE (TTA)", "Paper score", "RMSE"),
                                   (axes[1], "s / epoch", "Paper s / epoch", "seconds per epoch")):
        ax.bar(x - 0.2, table[ours].astype(float), 0.4, label=f"ours ({name})")
        if name == "RMSE":  # the bar every model must clear: each answer's training mean
            ax.scatter(x - 0.2, table["Mean-predictor RMSE"].astype(float), marker="_", s=400, color="k",
                       zorder=3, label="ours: mean predictor")
        if theirs in table:
            ax.bar(x + 0.2, table[theirs].astype(float), 0.4, label=f"paper ({name})", color="grey")
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].set_ylim(0, axes[0].get_ylim()[1] * 1.4)  # room above the bars for the legend
    axes[1].set_ylim(top=axes[1].get_ylim()[1] * 30)
    for ax in axes:
        ax.legend(fontsize=8, loc="upper left", ncols=3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def leading_answers(labels: np.ndarray, k: int = 2) -> list[str]:
    """The Q1 answer and the strongest deeper answer, e.g. ['Q1 smooth 0.71', 'Q7 in between 0.52']."""
    out = []
    q1 = tree.QUESTIONS[0]
    i = int(np.nanargmax(labels[q1.slice]))
    out.append(f"Q1 {q1.answers[i]} {labels[q1.slice][i]:.2f}")
    deeper = [(labels[c], c) for c in range(q1.slice.stop, tree.NUM_OUTPUTS)
              if tree.question_of_column(c).number != 6 and not np.isnan(labels[c])]  # fmt: skip
    for value, c in sorted(deeper, reverse=True)[: k - 1]:
        q = tree.question_of_column(c)
        out.append(f"Q{q.number} {q.answers[c - q.start]} {value:.2f}")
    return out


def plot_galaxy_grid(images: Sequence[np.ndarray], ids: Sequence[int], labels: np.ndarray | None, title: str,
                     ncols: int = 6):
    """Galaxies with their GalaxyID and leading answers (vote fractions)."""
    import matplotlib.pyplot as plt

    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (img, gid) in enumerate(zip(images, ids, strict=True)):
        ax = axes.flat[i]
        ax.imshow(img)
        text = [str(gid)] + ([] if labels is None else leading_answers(labels[i]))
        ax.set_title("\n".join(text), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_label_distributions(labels: np.ndarray, title: str):
    """One box plot per question: the distribution of each answer's vote fraction."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 6, figsize=(16, 6))
    for ax, q in zip(axes.flat, tree.QUESTIONS, strict=False):
        values = [v[~np.isnan(v)] for v in labels[:, q.slice].T]
        ax.boxplot(values, showfliers=False, showmeans=True)  # means show the rare answers too
        ax.set_xticks(range(1, len(q.answers) + 1), q.answers, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"Q{q.number} {q.text}", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
    axes.flat[-1].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


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
            "Answers sum to": "1" if q.parent is None else tree.COLUMNS[q.parent],
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


def plot_views(rows: Mapping[str, Sequence[np.ndarray]], titles: Mapping[str, Sequence[str]], title: str):
    """Rows of images (e.g. several training views of one galaxy, then its test-time views)."""
    import matplotlib.pyplot as plt

    ncols = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.7 * ncols, 2.0 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (name, images) in enumerate(rows.items()):
        for c, img in enumerate(images):
            axes[r, c].imshow(img)
            axes[r, c].set_title(titles[name][c], fontsize=7)
        axes[r, 0].text(-0.1, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def to_rgb(x) -> np.ndarray:
    """A normalised (3, H, W) tensor (mean = std = 0.5) back to an (H, W, 3) image in [0, 1]."""
    arr = x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, np.float32)
    return np.clip(arr.transpose(1, 2, 0) * 0.5 + 0.5, 0, 1)


def plot_cam_grid(inputs: Sequence[np.ndarray], maps: Mapping[str, np.ndarray], row_titles: Sequence[str],
                  title: str):
    """The paper's Fig. 8 layout: input, then one overlaid AblationCAM map per model, one row per
    (galaxy, answer). `maps[model]` is (rows, H, W)."""
    import matplotlib.pyplot as plt

    from galaxylib.cam import overlay

    ncols = 1 + len(maps)
    fig, axes = plt.subplots(len(inputs), ncols, figsize=(2.4 * ncols, 2.4 * len(inputs)), squeeze=False)
    for r, img in enumerate(inputs):
        axes[r, 0].imshow(img)
        axes[r, 0].set_title(row_titles[r], fontsize=7)
        for c, (name, m) in enumerate(maps.items(), start=1):
            axes[r, c].imshow(overlay(img, m[r]))
            axes[r, c].set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
