"""Figures: the paper's training histories (Figs. 3, 5), the model comparison, galaxies and their views, label
distributions and AblationCAM grids (Fig. 8)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from galaxylib import tree


def save_figure(fig, out_dir: str | Path, name: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_history(histories: Mapping[str, pd.DataFrame], title: str, noise_floor: float | None = None):
    """The paper's Fig. 3 / 5: loss, RMSE and learning rate per epoch; training solid, validation dashed; the
    label-noise floor of the validation labels, when given, as a horizontal line under the RMSE curves."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, (label, h) in enumerate(histories.items()):
        colour = f"C{i}"
        for ax, key in zip(axes[:2], ("loss", "rmse"), strict=True):
            ax.plot(h["epoch"], h[f"train_{key}"], "-o", ms=3, color=colour, label=f"{label} train")
            ax.plot(h["epoch"], h[f"val_{key}"], "--s", ms=3, color=colour, label=f"{label} validation")
        axes[2].plot(h["epoch"], h["lr"], "-o", ms=3, color=colour, label=label)
    if noise_floor is not None and math.isfinite(noise_floor):
        axes[1].axhline(noise_floor, color="k", ls=":", lw=1, label=f"label-noise floor {noise_floor:.4f}")
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
    """Our validation RMSE (TTA, mean over seeds, with the 95 % interval over galaxies where the table has one)
    and seconds per epoch beside the paper's, one bar pair per model; the mean predictor and the label-noise
    floor of each row's validation labels as horizontal marks (the floor also as a line when the rows share it)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    x = np.arange(len(table))
    pairs = zip(table["Model"], table["Pretrained"], strict=True)
    labels = [f"{m}\n({p})" if str(p).startswith("no (") else m for m, p in pairs]
    for ax, ours, theirs, name in ((axes[0], "Val RMSE (TTA)", "Paper score", "RMSE"),
                                   (axes[1], "s / epoch", "Paper s / epoch", "seconds per epoch")):
        values = table[ours].astype(float)
        ci = [c for c in table.columns if str(c).endswith("CI low")] if name == "RMSE" else []
        errors = None
        if ci:
            low, high = table[ci[0]].astype(float), table[ci[0].replace("low", "high")].astype(float)
            errors = np.vstack([values - low, high - values])
        ax.bar(x - 0.2, values, 0.4, yerr=errors, capsize=3, label=f"ours ({name})")
        if name == "RMSE":  # the bar every model must clear: each answer's training mean
            ax.scatter(x - 0.2, table["Mean-predictor RMSE"].astype(float), marker="_", s=400, color="k",
                       zorder=3, label="ours: mean predictor")
            if "Noise floor" in table and table["Noise floor"].notna().any():
                floors = table["Noise floor"].astype(float)
                ax.scatter(x - 0.2, floors, marker="_", s=400, color="C3", zorder=3,
                           label="label-noise floor (40 votes)")
                if floors.nunique() == 1:
                    ax.axhline(float(floors.iloc[0]), color="C3", ls=":", lw=1)
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


def _wrap_lines(text: str, width: int) -> str:
    """Each line of `text` wrapped at `width` characters (a panel's header must not run into its neighbour's)."""
    import textwrap

    return "\n".join(textwrap.fill(line, width) if line else line for line in text.split("\n"))


def plot_cam_grid(inputs: Sequence[np.ndarray], maps: Mapping[str, np.ndarray], row_titles: Sequence[str],
                  title: str, column_titles: Mapping[str, str] | None = None, alpha: float = 0.45,
                  cell_inches: float = 1.9):
    """The paper's Fig. 8 layout: the input, then each model's AblationCAM map over it, one row per (galaxy,
    answer), and one colour bar for all maps.

    Args:
        inputs: the images (H, W, 3) in [0, 1], one per row.
        maps: model -> (rows, h, w) maps in [0, 1] (min-max scaled per map, as grad-cam returns them).
        row_titles: one per row, over the input (galaxy, answer, predicted and true value).
        title: the figure's title (what and on which data).
        column_titles: model -> the header over its column (e.g. with the layer and its grid); default the key.
        alpha: opacity of the heat map over the galaxy.
        cell_inches: the side of one panel.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    column_titles = dict(column_titles or {})
    ncols = 1 + len(maps)
    fig, axes = plt.subplots(len(inputs), ncols, figsize=(cell_inches * ncols + 1.0, cell_inches * len(inputs) + 0.9),
                             squeeze=False, layout="constrained")  # fmt: skip
    heat = None
    for r, img in enumerate(inputs):
        h, w = np.asarray(img).shape[:2]
        axes[r, 0].imshow(img)
        axes[r, 0].set_title(row_titles[r], fontsize=7)
        for c, (name, m) in enumerate(maps.items(), start=1):
            ax = axes[r, c]
            ax.imshow(img)
            # drawn over the image at its extent: bilinear from the map's own resolution, 0..1 as scaled
            heat = ax.imshow(m[r], cmap="jet", vmin=0.0, vmax=1.0, alpha=alpha, extent=(0, w, h, 0),
                             interpolation="bilinear")  # fmt: skip
            if float(np.ptp(m[r])) < 1e-6:  # the weighted activations are <= 0 everywhere
                ax.text(w / 2, h / 2, "flat map:\nno positive\nevidence", ha="center", va="center",
                        fontsize=7, color="white")
            if r == 0:
                ax.set_title(_wrap_lines(column_titles.get(name, name), int(cell_inches * 17)), fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    if heat is not None:
        bar = fig.colorbar(heat, ax=axes[:, 1:], location="right", shrink=min(1.0, 3.0 / len(inputs) + 0.2),
                           aspect=25, pad=0.02)  # fmt: skip
        bar.ax.set_facecolor("black")  # the bar's translucent colours as they look over the dark sky
        bar.set_ticks([0, 0.5, 1], labels=["0 least", "0.5", "1 most"], fontsize=7)
        bar.set_label("relative importance (AblationCAM,\nmin-max scaled per map)", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig
