"""Figures: the paper's training histories (Figs. 3, 5), the model comparison, galaxies and their views, label
distributions and AblationCAM grids (Fig. 8)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from galaxylib import tree
from galaxylib.report.provenance import WEIGHTS_NOT_FOUND


def save_figure(fig, out_dir: str | Path, name: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_history(histories: Mapping[str, pd.DataFrame], title: str, noise_floor: float | None = None):
    """The paper's Fig. 3 / 5: loss, RMSE and learning rate per epoch; training solid, validation dashed; the
    label-noise floor of the validation labels, when given, as a horizontal line under the RMSE curves.

    The legends sit under the panels, never over the curves: one row of line styles, then one entry per run
    (its colour)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), layout="constrained")
    for i, h in enumerate(histories.values()):
        colour = f"C{i % 10}"
        for ax, key in zip(axes[:2], ("loss", "rmse"), strict=True):
            ax.plot(h["epoch"], h[f"train_{key}"], "-o", ms=3, color=colour)
            ax.plot(h["epoch"], h[f"val_{key}"], "--s", ms=3, color=colour)
        axes[2].plot(h["epoch"], h["lr"], "-o", ms=3, color=colour)
    epochs = sorted({int(e) for h in histories.values() for e in h["epoch"]})
    runs = [Line2D([], [], color=f"C{i % 10}", lw=2.5, label=str(label)) for i, label in enumerate(histories)]
    styles = [Line2D([], [], color="0.35", ls="-", marker="o", ms=3, label="training (augmented views)"),
              Line2D([], [], color="0.35", ls="--", marker="s", ms=3, label="validation (one centre crop)")]
    if noise_floor is not None and math.isfinite(noise_floor):
        axes[1].axhline(noise_floor, color="k", ls=":", lw=1)
        styles.append(Line2D([], [], color="k", ls=":", lw=1, label=f"label-noise floor {noise_floor:.4f}"))
    for ax, name in zip(axes, ("MSE loss", "RMSE", "learning rate"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        if len(epochs) <= 15:  # every epoch a tick (MaxNLocator falls back to fractions below 2 integers)
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_yscale("log")
    _plain_log_labels(axes[0])
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    # under the panels: the line styles in one row, the runs (colours) in rows below; a legend fills its columns
    # first, so the rows are laid out as a grid, padded with blank entries, and handed over column by column
    ncols = max(len(styles), min(len(runs), 5))
    blank = Line2D([], [], alpha=0, label=" ")
    grid = [styles + [blank] * (ncols - len(styles))]
    grid += [runs[i:i + ncols] + [blank] * (ncols - len(runs[i:i + ncols])) for i in range(0, len(runs), ncols)]
    handles = [row[c] for c in range(ncols) for row in grid]
    fig.legend(handles=handles, labels=[h.get_label() for h in handles], loc="outside lower center", ncols=ncols,
               fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig


def _plain_log_labels(ax) -> None:
    """Tick labels of a log-scale y axis as plain numbers (0.05, not 5 x 10^-2): every tick on a short axis, on
    longer ones the powers of ten and the 2s and 5s (and 3s) between them, so that labels never crowd."""
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _pos) -> str:
        low, high = ax.get_ylim()
        span = high / low if low > 0 else math.inf
        shown = "123456789" if span < 3 else "1235" if span < 10 else "125"  # leading digits that get a label
        if f"{value:.1e}"[0] not in shown:
            return ""
        return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"  # 1,000, not 1e+03

    ax.yaxis.set_major_formatter(FuncFormatter(label))
    ax.yaxis.set_minor_formatter(FuncFormatter(label))


def _tick_labels(table: pd.DataFrame, with_images: bool = False) -> list[str]:
    """Model names for the x axis; a row that missed its pretrained weights says so, and with `with_images` each
    says what it trained on (the seconds per epoch depend on it)."""
    labels = []
    for _, row in table.iterrows():
        label = str(row["Model"])
        if str(row.get("Pretrained", "")) == WEIGHTS_NOT_FOUND:
            label += "\n(random init)"
        if with_images and not pd.isna(row.get("Train galaxies")) and not pd.isna(row.get("Image px")):
            label += f"\n{int(row['Train galaxies']):,} x {int(row['Image px'])} px"
        labels.append(label)
    return labels


def plot_model_comparison(table: pd.DataFrame, title: str):
    """Our scores and times, and the paper's, one panel per kind of number (a scores_table as input).

    Top left: our validation RMSE (TTA, mean over seeds, the 95 % interval over galaxies where the table has
    one), with the mean predictor and the label-noise floor as marks. Top right: the paper's leaderboard RMSE in
    its own panel, unless our data is the full Kaggle set (provenance.comparable_with_paper): then the paper's
    bars stand beside ours on the left and the right panel shows ours minus the paper's. Bottom: seconds per
    epoch, ours on this machine (each bar labelled with its training images) and the paper's on its RTX A6000,
    never in one panel: different machines and images. Every panel's title names its data and machine.
    """
    import matplotlib.pyplot as plt

    from galaxylib.report.display import ci_columns, common_value
    from galaxylib.report.provenance import PAPER_DATA, PAPER_MACHINE, comparable_with_paper

    data, profile, device = common_value(table, "Data"), common_value(table, "Profile"), common_value(table, "Device")
    comparable = comparable_with_paper(data)
    has_paper = "Paper score" in table and table["Paper score"].notna().any()
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5), layout="constrained")
    x = np.arange(len(table))
    names = _tick_labels(table)
    ours = table["Val RMSE (TTA)"].astype(float)
    errors = None
    ci = ci_columns(table)
    if ci is not None:
        lo, hi = table[ci[0]].astype(float), table[ci[1]].astype(float)
        errors = np.vstack([ours - lo, hi - ours])
    ax = axes[0, 0]
    width = 0.4 if comparable and has_paper else 0.6
    shift = -0.2 if comparable and has_paper else 0.0
    ax.bar(x + shift, ours, width, yerr=errors, capsize=3, color="C0", label="ours (95% interval over galaxies)")
    ax.scatter(x + shift, table["Mean-predictor RMSE"].astype(float), marker="_", s=500, color="k", zorder=3,
               label="mean predictor (each answer's training mean)")
    if "Noise floor" in table and table["Noise floor"].notna().any():
        ax.scatter(x + shift, table["Noise floor"].astype(float), marker="_", s=500, color="C3", zorder=3,
                   label="label-noise floor (40 votes)")
    if comparable and has_paper:
        ax.bar(x + 0.2, table["Paper score"].astype(float), 0.4, color="0.6", label="paper (Kaggle private LB)")
    ax.set_title(f"Ours: validation RMSE (16-view TTA, mean over seeds)\n{data} data, {profile} profile"
                 + (", beside the paper's" if comparable and has_paper else ""), fontsize=9)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    ax = axes[0, 1]
    if not has_paper:
        ax.axis("off")
    elif comparable:
        diff = table["Ours - paper"].astype(float)
        ax.bar(x, diff, 0.6, color=np.where(diff > 0, "C3", "C2"))
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title("Ours minus the paper's RMSE (negative: ours is lower)", fontsize=9)
    else:
        paper = table["Paper score"].astype(float)
        bars = ax.bar(x, paper, 0.6, color="0.6")
        ax.bar_label(bars, fmt="%.5f", fontsize=7, padding=2)
        finite = paper.dropna()
        ax.set_ylim(finite.min() * 0.97, finite.max() * 1.015)  # its differences are ~1 %: zoomed in
        ax.set_title(f"The paper's RMSE (Kaggle private leaderboard), its own numbers\n{PAPER_DATA}: not "
                     "comparable with ours (left)", fontsize=9)
    for ax, ticks in zip(axes[0], (names, list(table["Model"])), strict=True):  # the paper's rows as it names them
        ax.set_xticks(x, ticks, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("RMSE")
        ax.grid(axis="y", alpha=0.3)
    ax = axes[1, 0]
    if "s / epoch" in table and table["s / epoch"].notna().any():
        ax.bar(x, table["s / epoch"].astype(float), 0.6, color="C1")
        ax.set_yscale("log")
    ax.set_title(f"Ours: seconds per epoch (median over seeds) on {device}\neach row on its own training "
                 "images (under its name)", fontsize=9)
    ax.set_xticks(x, _tick_labels(table, with_images=True), rotation=30, ha="right", fontsize=8)
    ax = axes[1, 1]
    if has_paper and "Paper s / epoch" in table:
        ax.bar(x, table["Paper s / epoch"].astype(float), 0.6, color="0.6")
        ax.set_yscale("log")
        ax.set_title(f"The paper's seconds per epoch on {PAPER_MACHINE}\n{PAPER_DATA}", fontsize=9)
        ax.set_xticks(x, list(table["Model"]), rotation=30, ha="right", fontsize=8)
    else:
        ax.axis("off")
    for ax in axes[1]:
        ax.set_ylabel("seconds per epoch (log scale)")
        if ax.get_yscale() == "log":
            _plain_log_labels(ax)
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
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
