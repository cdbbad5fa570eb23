"""Tables for reading: report.tables' full-precision frames as a reader sees them in a notebook or a Markdown file.

    report.show(table2, kind="scores")          # in a notebook: a Styler, rounded, human headers, no index
    report.readable(table2, kind="scores")      # the same as a frame of strings (what show() and the .md files use)

What a reader gets, whatever the table:
- numbers rounded for reading: RMSE 5 decimals (4 per question), differences with their sign, seconds 1
  decimal, shares as percentages, intervals as "[0.1150, 0.1290]", spreads as "0.12201 ± 0.00231";
- the columns a reader needs, with human names (the CSV keeps every column, for code);
- no empty or NaN cells without a reason: a missing value is "—" and a note under the table says why;
- no comparison of unlike things: our scores stand beside the paper's, with a difference column, only on the full
  Kaggle data (provenance.comparable_with_paper); otherwise the paper's numbers sit in their own column group,
  labelled as the paper's, with its data and machine, and ours say which data, profile and machine they are.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from galaxylib import tree
from galaxylib.report.provenance import PAPER_DATA, PAPER_MACHINE, WEIGHTS_NOT_FOUND, comparable_with_paper

DASH = "—"
RMSE_DIGITS = 5
PAPER = f"Paper (Ng 2024): full Kaggle data, {PAPER_MACHINE}"
PAPER_CLAIMS = "Paper (Ng 2024): full Kaggle"  # over its differences (no machine: they are scores)
NO_WEIGHTS = ("no (weights not found): the pretrained weights are not on this machine, so the row trained from "
              "random initialisation: not the paper's setting")  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# cells


def missing(value) -> bool:
    """None, NaN, pd.NA: a cell with nothing in it."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def number(value, digits: int = RMSE_DIGITS, sign: bool = False) -> str:
    """A float rounded for reading ("—" when missing)."""
    if missing(value):
        return DASH
    return f"{float(value):{'+' if sign else ''}.{digits}f}"


def integer(value) -> str:
    """A count with thousands separators ("—" when missing)."""
    return DASH if missing(value) else f"{int(value):,}"


def seconds(value) -> str:
    """Seconds with one decimal and thousands separators ("—" when missing)."""
    return DASH if missing(value) else f"{float(value):,.1f}"


def percent(value) -> str:
    return DASH if missing(value) else f"{100 * float(value):.1f}%"


def interval(low, high, digits: int = 4, sign: bool = False) -> str:
    """"[0.1150, 0.1290]" ("—" when either end is missing)."""
    if missing(low) or missing(high):
        return DASH
    return f"[{number(low, digits, sign)}, {number(high, digits, sign)}]"


def mean_sd(mean, sd, digits: int = RMSE_DIGITS) -> str:
    """"0.12201 ± 0.00231", or the mean alone where there is no sd (one seed)."""
    if missing(mean):
        return DASH
    return number(mean, digits) if missing(sd) else f"{number(mean, digits)} ± {number(sd, digits)}"


def _text(value) -> str:
    return DASH if missing(value) else str(value)


def common_value(df: pd.DataFrame, column: str, default: str = "?") -> str:
    """The value a column has in every row ('a / b' when the rows differ)."""
    if column not in df:
        return default
    values = sorted({str(v) for v in df[column] if not missing(v)})
    return " / ".join(values) if values else default


def ci_columns(df: pd.DataFrame) -> tuple[str, str] | None:
    """The (low, high) interval columns of a table ('95% CI low', '95% CI high'), or None."""
    low = next((c for c in df.columns if str(c).endswith("CI low")), None)
    return (low, low.replace("low", "high")) if low is not None and low.replace("low", "high") in df else None


def _is_seconds(column: str) -> bool:
    """A column of seconds (shown with one decimal)."""
    return column == "Total s" or column.endswith(("s / epoch", "runtime_s", "seconds_per_epoch"))


def _ci_name(df: pd.DataFrame) -> str:
    pair = ci_columns(df)
    return pair[0].replace(" low", "") if pair else "95% CI"


class _Builder:
    """Columns of a reading table, grouped (the top header row), with notes that explain its dashes."""

    def __init__(self, n_rows: int):
        self.n = n_rows
        self.columns: dict[tuple[str, str], list[str]] = {}
        self.notes: list[str] = []

    def add(self, group: str, name: str, cells: Sequence[str]) -> None:
        cells = list(cells)
        assert len(cells) == self.n, (name, len(cells), self.n)
        self.columns[(group, name)] = cells

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def frame(self) -> pd.DataFrame:
        out = pd.DataFrame({k: v for k, v in self.columns.items()}, index=range(self.n))
        out.columns = pd.MultiIndex.from_tuples(list(self.columns))
        if all(g == "" for g, _ in self.columns):
            out.columns = out.columns.droplevel(0)
        out.attrs["notes"] = list(self.notes)
        return out


def _map(df: pd.DataFrame, column: str, cell: Callable) -> list[str]:
    return [cell(v) for v in df[column]] if column in df else [DASH] * len(df)


def _has(df: pd.DataFrame, column: str) -> bool:
    return column in df and df[column].map(lambda v: not missing(v)).any()


def _ours_group(df: pd.DataFrame) -> str:
    return (f"Ours: {common_value(df, 'Data')} data, {common_value(df, 'Profile')} profile"
            + (f", {common_value(df, 'Device')}" if "Device" in df else ""))  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# the kinds of table


def _scores(df: pd.DataFrame) -> _Builder:
    """report.scores_table: Tables I and II, the scores of notebooks 01-03 and 05."""
    b = _Builder(len(df))
    comparable = comparable_with_paper(common_value(df, "Data"))
    ours = _ours_group(df)
    b.add("", "Model", _map(df, "Model", _text))
    if "Pretrained" in df and (df["Pretrained"].astype(str) != "no").any():
        b.add(ours, "Pretrained", _map(df, "Pretrained", _text))
        if (df["Pretrained"].astype(str) == WEIGHTS_NOT_FOUND).any():
            b.note(NO_WEIGHTS)
    b.add(ours, "Seeds", _map(df, "Seeds", integer))
    b.add(ours, "Epochs", _map(df, "Epochs", integer))
    if "Train galaxies" in df and "Image px" in df:
        b.add(ours, "Training images", [DASH if missing(n) or missing(px) else f"{int(n):,} × {int(px)} px"
                                        for n, px in zip(df["Train galaxies"], df["Image px"], strict=True)])
    sd = df["SD over seeds"] if "SD over seeds" in df else [None] * len(df)
    b.add(ours, "Val RMSE (TTA), mean ± sd over seeds",
          [mean_sd(m, s) for m, s in zip(df["Val RMSE (TTA)"], sd, strict=True)])
    if "Seeds" in df and (df["Seeds"].fillna(1) == 1).any():
        b.note("one seed: no sd over seeds")
    ci = ci_columns(df)
    if ci and (_has(df, ci[0])):
        b.add(ours, f"{_ci_name(df)} over galaxies", [interval(lo, hi) for lo, hi in zip(df[ci[0]], df[ci[1]],
                                                                                          strict=True)])
    if "Mean-predictor RMSE" in df:
        b.add(ours, "Mean predictor", _map(df, "Mean-predictor RMSE", number))
    if "Noise floor" in df:
        b.add(ours, "Noise floor", _map(df, "Noise floor", number))
    if "s / epoch" in df:
        b.add(ours, "s / epoch", _map(df, "s / epoch", seconds))
    if "Paper score" in df:
        b.add(PAPER, "RMSE (Kaggle private LB)", _map(df, "Paper score", number))
        b.add(PAPER, "Epochs", _map(df, "Paper epochs", integer))
        b.add(PAPER, "s / epoch", _map(df, "Paper s / epoch", seconds))
        if not df["Paper score"].map(lambda v: not missing(v)).all():
            b.note("— in the paper's columns: the paper has no such row (our ablation)")
        if comparable and "Ours - paper" in df:
            b.add("", "Ours − paper (RMSE)", _map(df, "Ours - paper", lambda v: number(v, sign=True)))
    if "Paper score" in df or "s / epoch" in df:
        b.note("seconds per epoch are each machine's own: ours as measured on the machine named above, the "
               f"paper's on {PAPER_MACHINE}; they are not comparable with each other")
    if not comparable and "Paper score" in df:
        b.note(f"the paper's scores are shown as the paper's ({PAPER_DATA}): ours are on {common_value(df, 'Data')} "
               "data and are not compared with them")
    return b


def _paper(df: pd.DataFrame) -> _Builder:
    """report.paper_table: the paper's own numbers."""
    b = _Builder(len(df))
    models = df["model"].astype(str).tolist()
    pretrained = df["pretrained_dataset"] if "pretrained_dataset" in df else pd.Series([None] * len(df))
    labels = []
    for model, data in zip(models, pretrained, strict=True):
        if models.count(model) > 1:  # the paper's two "ResNet50" rows differ only by their pretraining
            model += " (from scratch)" if missing(data) else f" ({str(data).split()[0].split('-')[0]})"
        labels.append(model)
    b.add("", "Model", labels)
    if "table" in df:
        b.add(PAPER, "Table", _map(df, "table", _text))
    b.add(PAPER, "RMSE (Kaggle private LB)", _map(df, "score", number))
    b.add(PAPER, "Epochs", _map(df, "epochs", integer))
    b.add(PAPER, "Pretrained on", [("none (from scratch)" if missing(v) else str(v)) for v in pretrained])
    b.add(PAPER, "Total runtime (h)", _map(df, "total_runtime_s", lambda v: number(v / 3600, 1) if not missing(v)
                                            else DASH))
    b.add(PAPER, "s / epoch", _map(df, "seconds_per_epoch", seconds))
    if "note" in df:
        for model, note in zip(labels, df["note"], strict=True):
            extra = str(note).split(";", 1)[1].strip() if ";" in str(note) else ""
            if extra and extra != "not pretrained":
                b.note(f"{model}, total runtime: {extra}")
    return b


def _claims(df: pd.DataFrame) -> _Builder:
    """report.claims_table: each of the paper's claims, ours beside it, and the verdict."""
    b = _Builder(len(df))
    comparable = comparable_with_paper(common_value(df, "Data"))
    ours = _ours_group(df)
    b.add("", "Claim (a − b in RMSE; negative: a is better)", _map(df, "Claim", _text))
    b.add(PAPER_CLAIMS, "a − b", _map(df, "Paper difference", lambda v: number(v, sign=True)))
    b.add(ours, "a − b", _map(df, "Ours difference", lambda v: number(v, sign=True)))
    ci = ci_columns(df)
    if ci:
        b.add(ours, f"{_ci_name(df)} (paired)", [interval(lo, hi, 5, sign=True)
                                                 for lo, hi in zip(df[ci[0]], df[ci[1]], strict=True)])
    b.add(ours, "Galaxies", _map(df, "Galaxies", integer))
    b.add(ours, "Seeds (a/b)", _map(df, "Seeds (a/b)", _text))
    if comparable and "Paper diff in CI" in df:
        b.add("", "Paper's a − b in our CI", _map(df, "Paper diff in CI",
                                                  lambda v: DASH if missing(v) else ("yes" if v else "no")))
    b.add("", "Verdict", _map(df, "Verdict", _text))
    if df["Paper difference"].map(missing).any():
        b.note("— in the paper's column: the paper states a direction only, or gives no score for one side")
    if "Ours difference" in df and df["Ours difference"].map(missing).any():
        b.note("— in our columns: the claim was not run here (a row is missing, or is not the paper's setting)")
    return b


def _heldout(df: pd.DataFrame) -> _Builder:
    """report.heldout_table: scores on the held-out galaxies against the mean predictor."""
    b = _Builder(len(df))
    b.add("", "Model", _map(df, "Model", _text))
    b.add("", "Seeds", _map(df, "Seeds", integer))
    b.add("", "Held-out galaxies", _map(df, "Held-out galaxies", integer))
    b.add("", "RMSE (TTA), mean ± sd", [mean_sd(m, s) for m, s in zip(df["RMSE (TTA)"], df["SD over seeds"],
                                                                      strict=True)])
    ci = ci_columns(df)
    if ci:
        b.add("", f"{_ci_name(df)} over galaxies", [interval(lo, hi) for lo, hi in zip(df[ci[0]], df[ci[1]],
                                                                                         strict=True)])
    b.add("", "RMSE (1 view)", _map(df, "RMSE (1 view)", number))
    b.add("", "Mean predictor", _map(df, "Mean-predictor RMSE", number))
    b.add("", "Ratio to the mean predictor", _map(df, "Ratio", lambda v: number(v, 3)))
    b.add("", "Worst seed's ratio", _map(df, "Worst seed ratio", lambda v: number(v, 3)))
    b.add("", "Noise floor", _map(df, "Noise floor", number))
    return b


def _noise_floor(df: pd.DataFrame) -> _Builder:
    """report.noise_floor_table: the label-noise floor of each validation set, by every method."""
    b = _Builder(len(df))
    votes = common_value(df, "Votes assumed", "40")
    b.add("", "Validation set of", _map(df, "Validation set of", _text))
    b.add("", "Galaxies", _map(df, "Galaxies", integer))
    b.add("", "Fully labelled", _map(df, "Fully labelled", integer))
    b.add("", f"Floor (binomial, {votes} votes)", _map(df, "Noise floor (binomial)", number))
    if "Plug-in (/n)" in df:
        b.add("", "Plug-in (/n)", _map(df, "Plug-in (/n)", number))
    if "Parametric bootstrap" in df:
        b.add("", "Parametric bootstrap", _map(df, "Parametric bootstrap", number))
        if df["Parametric bootstrap"].map(missing).any():
            b.note("— under 'Parametric bootstrap': it needs every galaxy fully labelled")
    if "True noise floor" in df:
        b.add("", "True floor (synthetic)", _map(df, "True noise floor", number))
    b.add("", "Best row", _map(df, "Best row", _text))
    b.add("", "Best RMSE (TTA)", _map(df, "Best RMSE (TTA)", number))
    b.add("", "Removable by a model", _map(df, "Removable by a model", number))
    return b


def _per_question(df: pd.DataFrame) -> _Builder:
    """report.per_question_table: RMSE per question, and the noise floor's row."""
    b = _Builder(len(df))
    b.add("", "Model", _map(df, "Model", _text))
    b.add("", "Seeds", _map(df, "Seeds", integer))
    if df["Seeds"].map(missing).any():
        b.note("— under Seeds: the label-noise floor's row is the labels' own, no model's")
    for column in df.columns:
        if str(column).startswith("Q"):
            b.add("", str(column), _map(df, column, lambda v: number(v, 4)))
    b.add("", "All 37", _map(df, "all", lambda v: number(v, 4)))
    b.note("the questions: " + "; ".join(f"Q{q.number} {q.text}" for q in tree.QUESTIONS))
    return b


def _generic(df: pd.DataFrame) -> _Builder:
    """Any other table: floats rounded by what their column holds, counts as integers, missing cells as —."""
    b = _Builder(len(df))
    for column in df.columns:
        name = str(column)
        values = df[column]
        if name.endswith("(share)"):
            cells = _map(df, column, percent)
            name = name.replace(" (share)", "")
        elif _is_seconds(name):
            cells = _map(df, column, seconds)
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_object_dtype(values):
            cells = _map(df, column, _text)
        elif pd.api.types.is_integer_dtype(values):
            cells = _map(df, column, integer)
        elif pd.api.types.is_float_dtype(values):
            small = values.dropna().abs()
            tiny = len(small) and (small < 1e-4).all() and (small > 0).any()
            cells = _map(df, column, (lambda v: DASH if missing(v) else f"{float(v):.1e}") if tiny else number)
        else:
            cells = _map(df, column, _text)
        b.add("", name, cells)
    if any(missing(v) for v in np.ravel(df.to_numpy(dtype=object))):
        b.note("—: nothing to measure (no galaxies in that part)")
    return b


KINDS: dict[str, Callable[[pd.DataFrame], _Builder]] = {
    "scores": _scores, "paper": _paper, "claims": _claims, "heldout": _heldout, "noise_floor": _noise_floor,
    "per_question": _per_question, "table": _generic,
}  # fmt: skip


def readable(df: pd.DataFrame, kind: str = "table") -> pd.DataFrame:
    """A table of report.tables as a reader sees it: strings, rounded, human headers (two rows where ours and the
    paper's are grouped), every "—" explained in `.attrs["notes"]`.

    Args:
        df: the full-precision table (as saved to CSV).
        kind: scores | paper | claims | heldout | noise_floor | per_question | table (any other table).

    Returns:
        A frame of strings; its columns are a MultiIndex (group, column) when the table has groups.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown table kind {kind!r}; choose from {', '.join(KINDS)}")
    if df.empty:  # e.g. no finished runs: say so rather than fail on a missing column
        empty = pd.DataFrame({"": ["no rows: nothing was run or found for this table"]})
        empty.attrs["notes"] = []
        return empty
    return KINDS[kind](df.reset_index(drop=True)).frame()


def _cell(value, floatfmt: str) -> str:
    if value is None or (not isinstance(value, str | bool) and np.ndim(value) == 0 and pd.isna(value)):
        return ""
    if isinstance(value, float | np.floating):
        return format(float(value), floatfmt)
    return str(value).replace("|", "\\|")


SECONDS_FORMAT = ".1f"


def to_markdown(df: pd.DataFrame, floatfmt: str = ".5f", formats: Mapping[str, str] | None = None) -> str:
    """A GitHub Markdown table (no tabulate dependency). RMSEs get 5 decimals, seconds columns one."""
    formats = dict(formats or {})
    for column in df.columns:
        if _is_seconds(str(column)):
            formats.setdefault(column, SECONDS_FORMAT)
    fmts = [formats.get(c, floatfmt) for c in df.columns]
    header = "| " + " | ".join(str(c).replace("|", "\\|") for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v, f) for v, f in zip(row, fmts, strict=True)) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def flat_columns(table: pd.DataFrame) -> list[str]:
    """One header row for a grouped reading table (Markdown): the paper's columns say "Paper", ours need no
    prefix (the caption names our data)."""
    if not isinstance(table.columns, pd.MultiIndex):
        return [str(c) for c in table.columns]
    mixed = any(group and not group.startswith("Paper") for group, _ in table.columns)  # ours and the paper's
    return [f"Paper: {name}" if group.startswith("Paper") and mixed else str(name) for group, name in table.columns]


def markdown(df: pd.DataFrame, kind: str = "table") -> str:
    """The reading table as GitHub Markdown, its notes under it."""
    table = readable(df, kind)
    notes = table.attrs.get("notes", [])
    flat = pd.DataFrame(table.to_numpy(), columns=flat_columns(table))
    text = to_markdown(flat)
    return text + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")


def summarise_scores(table: pd.DataFrame) -> str:
    """A scores_table in words (Markdown): the setting, the best row, how the rows stand against the mean
    predictor and the label-noise floor, and which rows are not the paper's setting. The paper's numbers are
    named beside ours only where the data is the full Kaggle set."""
    if table.empty:
        return "No runs to summarise."
    data, profile, device = (common_value(table, c) for c in ("Data", "Profile", "Device"))
    seeds = sorted({int(s) for s in table["Seeds"].dropna()})
    lines = [f"**Setting.** {data} data, {profile} profile, on {device}: {len(table)} rows, "
             f"{' or '.join(map(str, seeds))} training seed{'s' if seeds[-1] > 1 else ''} each."]  # fmt: skip
    rows = table.dropna(subset=["Val RMSE (TTA)"])
    if rows.empty:
        return lines[0]
    best = rows.loc[rows["Val RMSE (TTA)"].idxmin()]
    ci = ci_columns(table)
    where = f", 95% interval over galaxies {interval(best[ci[0]], best[ci[1]])}" if ci else ""
    sd = "" if missing(best.get("SD over seeds")) else f" ± {number(best['SD over seeds'])} (sd over seeds)"
    n = int(best["Seeds"])
    text = (f"**Best row.** {best['Model']}: validation RMSE {number(best['Val RMSE (TTA)'])}{sd} over "
            f"{n} seed{'s' if n > 1 else ''}{where}.")
    if comparable_with_paper(data) and not missing(best.get("Paper score")):
        text += f" The paper's score for it: {number(best['Paper score'])} (Kaggle private leaderboard)."
    lines.append(text)
    if "Mean-predictor RMSE" in rows:
        beat = rows["Val RMSE (TTA)"] < rows["Mean-predictor RMSE"]
        low, high = (number(rows["Mean-predictor RMSE"].agg(f)) for f in ("min", "max"))
        spread = low if low == high else f"{low}–{high}"
        text = f"**Against the mean predictor** (each answer's training mean, {spread}; each row against its own): "
        if beat.all():
            text += f"all {len(rows)} rows score below it."
        elif not beat.any():
            text += (f"none of the {len(rows)} rows scores below it: at this scale no model has learnt more than "
                     "the mean.")
        else:
            text += (f"{int(beat.sum())} of {len(rows)} rows score below it; not "
                     + ", ".join(rows.loc[~beat, "Model"].astype(str)) + ".")
        lines.append(text)
    if "Noise floor" in rows and rows["Noise floor"].notna().any():
        floor = float(best["Noise floor"]) if not missing(best.get("Noise floor")) else float(rows["Noise floor"].min())
        removable = math.sqrt(max(float(best["Val RMSE (TTA)"]) ** 2 - floor**2, 0.0))
        lines.append(f"**Label noise.** The labels' own noise floor is {number(floor, 4)}: of the best row's "
                     f"{number(best['Val RMSE (TTA)'], 4)}, about {number(removable, 4)} (in quadrature) is left for "
                     "a better model to remove.")
    if "Pretrained" in rows:
        missed = rows.loc[rows["Pretrained"].astype(str) == WEIGHTS_NOT_FOUND, "Model"].astype(str).tolist()
        if missed:
            lines.append(f"**Not the paper's setting.** {', '.join(missed)}: pretrained weights not found, trained "
                         "from random initialisation.")
    if not comparable_with_paper(data):
        lines.append(f"**The paper's numbers** are not compared with these: they are on {PAPER_DATA}.")
    return "\n\n".join(lines)


STYLES = [
    {"selector": "", "props": "font-size: 12px; border-collapse: collapse; margin: 0.3em 0;"},
    {"selector": "th", "props": "text-align: center; padding: 3px 6px; font-weight: 600; vertical-align: bottom;"},
    {"selector": "th.col_heading.level0", "props": "border-bottom: 1px solid #bbb;"},
    {"selector": "td", "props": "padding: 3px 6px;"},
    {"selector": "caption", "props": "caption-side: bottom; text-align: left; font-size: 11px; color: #555; "
                                     "padding-top: 4px;"},
]  # fmt: skip
NUMERIC = r"^(—|[+\-]?[\d.,]+( ± [\d.]+)?|[\d.]+e[+\-]\d+|\[.*\]|[\d,]+ × \d+ px|[\d.]+%|\d+/\d+)$"  # right-aligned


def show(df: pd.DataFrame, kind: str = "table", caption: str | None = None):
    """A table for reading in a notebook: readable(df, kind) as a pandas Styler without the index, numbers
    right-aligned and kept on one line, text left-aligned and wrapped, its notes (and `caption`) under it.

    Args:
        df: the full-precision table.
        kind: as readable().
        caption: an optional line shown under the table before the notes.
    """
    table = readable(df, kind)
    lines = ([caption] if caption else []) + table.attrs.get("notes", [])
    # a stable id of its own (the CSS of two tables in one notebook must not mix; reruns give the same HTML)
    uuid = f"{kind}_{hashlib.sha1(table.to_csv().encode()).hexdigest()[:10]}"
    styler = table.style.hide(axis="index").set_table_styles(STYLES).set_uuid(uuid).format(escape="html")
    for k, col in enumerate(table.columns):
        numeric = k > 0 and table[col].astype(str).str.match(NUMERIC).all()
        props = ({"text-align": "right", "white-space": "nowrap"} if numeric else
                 {"text-align": "left", "white-space": "normal", "max-width": "22em",
                  "min-width": "9em" if k == 0 else "4em"})  # fmt: skip
        styler = styler.set_properties(subset=[col], **props)
    if lines:
        styler = styler.set_caption("<br>".join(_escape(s) for s in lines))
    return styler


def _escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

