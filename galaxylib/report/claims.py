"""The claims table: each comparison the paper makes, with the paper's difference, ours, a paired-bootstrap 95 %
interval over galaxies and seeds, and a verdict in words.

Differences are always a - b in RMSE, so negative means a is better. The verdict rule (`verdict`):

- the claim is the sign of the paper's difference (or a stated direction where the paper gives no numbers);
- *supported*: our 95 % interval excludes 0 on the paper's side;
- *contradicted*: it excludes 0 on the other side;
- *not resolved at this scale*: it contains 0 (touching counts), or the rows share too few galaxies;
- *not run here*: a row is missing, or it is not the paper's setting (a pretrained row whose weights were not
  found trains from random initialisation and cannot test a claim about pretrained models).

"Best of all" is an intersection-union test: supported only if the interval of (best - rival) lies below 0 for
every rival; contradicted if some rival beats it clearly (its Bonferroni-adjusted interval, level
1 - 0.05 / k, lies above 0); otherwise not resolved. A rival that was not run turns "supported" into "not resolved".

The paper's numbers come from galaxylib/report/paper_reference.csv (load_paper_reference). They are single runs on
the Kaggle private leaderboard; ours are on our validation split: compare signs and verdicts, not levels (the
column "Paper diff in CI" says whether the paper's size is inside our interval). With 3 seeds or fewer the
seed part of the interval is too narrow (galaxylib.metrics.bootstrap); the seed sd is in the scores tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from galaxylib.experiments import TABLE_II
from galaxylib.metrics import LEVEL, N_BOOT, PairedResult, paired_difference, percentile_interval
from galaxylib.report.evidence import ONE_VIEW, TTA, Evidence, label_of
from galaxylib.report.tables import load_paper_reference

SUPPORTED = "supported"
NOT_RESOLVED = "not resolved at this scale"
CONTRADICTED = "contradicted"
NOT_RUN = "not run here"
VERDICTS = (SUPPORTED, NOT_RESOLVED, CONTRADICTED, NOT_RUN)
MIN_GALAXIES = 20  # fewer galaxies in common than this cannot resolve anything: the claim reads "not resolved"


@dataclass(frozen=True)
class Claim:
    """One comparison, as data: a - b (a and b are experiments, each scored with its own view).

    Attributes:
        name: what the table calls it.
        a: the first experiment.
        b: the second; None for a "best of all" claim (a is the claimed best).
        view_a: a's predictions: "tta" (16 views, the paper's) or "1view".
        view_b: b's predictions.
        direction: -1 if the paper says a is better, +1 if worse; for claims without paper numbers.
        margin: makes it an equivalence claim ("a and b differ by less than margin").
        source: where the paper says it.
        rivals: for a best-of-all claim, the rows it must beat (default: the other rows of Table II).
    """

    name: str
    a: str
    b: str | None
    view_a: str = TTA
    view_b: str = TTA
    direction: int | None = None
    margin: float | None = None
    source: str = ""
    rivals: tuple[str, ...] | None = None

    def rows(self) -> tuple[str, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)


PAPER_CLAIMS: tuple[Claim, ...] = (
    Claim("CBAM improves the baseline", "baseline_cbam", "baseline", source="Table I"),
    Claim("Pretrained ResNet50 beats ResNet50 from scratch", "resnet50", "resnet50_scratch", source="Table II"),
    Claim("ResNet101 scores slightly worse than ResNet50", "resnet101", "resnet50", source="Table II"),
    Claim("ConvNeXt Large beats ResNet50", "convnext_large", "resnet50", source="Table II"),
    Claim("DINOv2 is the best of all", "dinov2_base", None, source="Table II",
          rivals=tuple(e for e in TABLE_II if e != "dinov2_base")),
    Claim("16-view TTA beats one view (baseline)", "baseline", "baseline", view_a=TTA, view_b=ONE_VIEW,
          direction=-1, source="'Augmentation of test dataset': TTA to reduce the variance; no one-view score"),
    Claim("Decision-tree output layer does worse than the sigmoid (our ablation)", "baseline_tree", "baseline",
          direction=+1, source="the paper: softmax and decision-tree weighting layers 'performed worse'; no score"),
)  # fmt: skip


def verdict(paper_diff: float | None, ours_diff: float, interval: tuple[float, float], *,
            margin: float | None = None, direction: int | None = None) -> str:  # fmt: skip
    """The verdict on one comparison a - b (module docstring).

    Args:
        paper_diff: the paper's a - b (its sign is the claim); None or NaN when the paper gives only a direction.
        ours_diff: our point difference (checked to lie in its interval).
        interval: our paired-bootstrap interval (low, high).
        margin: an equivalence claim: supported inside [-margin, margin], contradicted wholly outside it.
        direction: -1 (a better) or +1 (a worse); overrides the sign of paper_diff.

    Returns:
        SUPPORTED, NOT_RESOLVED or CONTRADICTED.

    Raises:
        ValueError: no claim (no nonzero paper difference, direction or margin), or a NaN interval, or a point
            difference outside its interval.
    """
    low, high = (float(x) for x in interval)
    if math.isnan(low) or math.isnan(high) or low > high:
        raise ValueError(f"invalid interval {interval}")
    if not low - 1e-12 <= ours_diff <= high + 1e-12:
        raise ValueError(f"our difference {ours_diff} lies outside its interval {interval}")
    if margin is not None:
        if low >= -margin and high <= margin:
            return SUPPORTED
        return CONTRADICTED if low > margin or high < -margin else NOT_RESOLVED
    sign = direction
    if sign is None:
        if paper_diff is None or math.isnan(paper_diff) or paper_diff == 0:
            raise ValueError("no claimed direction: give a nonzero paper difference, a direction or a margin")
        sign = 1 if paper_diff > 0 else -1
    if sign not in (-1, 1):
        raise ValueError(f"direction must be -1 or +1, got {direction}")
    if (sign < 0 and high < 0) or (sign > 0 and low > 0):
        return SUPPORTED
    if (sign < 0 and low > 0) or (sign > 0 and high < 0):
        return CONTRADICTED
    return NOT_RESOLVED


def _label(experiment: str, view: str = TTA) -> str:
    return label_of(experiment) + (" (1 view)" if view == ONE_VIEW else "")


def _unavailable(evidence: Evidence, experiment: str, view: str) -> str:
    """Why a row cannot take part ("" when it can)."""
    row = evidence.rows.get(experiment)
    if row is None or not row.metrics:
        return f"no runs of {_label(experiment)}"
    if not evidence.has(experiment, view):
        return f"{_label(experiment)} has no {'one-view' if view == ONE_VIEW else 'TTA'} validation predictions"
    return row.not_the_papers_setting()


def _compare(evidence: Evidence, a: str, view_a: str, b: str, view_b: str, n_boot: int, seed: int,
             level: float, keep_draws: bool = False) -> PairedResult | None:  # fmt: skip
    """The paired bootstrap of a - b on the galaxies both predicted (None when they share fewer than 2)."""
    ids = evidence.galaxies([a], view_a).tolist()
    ids = sorted(set(ids) & set(evidence.galaxies([b], view_b).tolist()))
    if len(ids) < 2:
        return None
    truth = evidence.truth(ids)
    return paired_difference(evidence.predictions(a, ids, view_a), evidence.predictions(b, ids, view_b), truth,
                             n_boot, seed, level, keep_draws=keep_draws)  # fmt: skip


@dataclass(frozen=True)
class BestOfAll:
    """The result of a "best of all" claim.

    Attributes:
        verdict: SUPPORTED, NOT_RESOLVED or CONTRADICTED.
        comparisons: rival -> the paired result of best - rival.
        beaten_by: rivals that beat the claimed best clearly (Bonferroni-adjusted interval above 0).
        closest: the rival with the largest best - rival (the hardest to beat).
    """

    verdict: str
    comparisons: dict[str, PairedResult]
    beaten_by: tuple[str, ...]
    closest: str


def best_of_all(evidence: Evidence, best: str, rivals: Sequence[str], n_boot: int = N_BOOT, seed: int = 0,
                level: float = LEVEL) -> BestOfAll | None:  # fmt: skip
    """Paired intervals of best - rival for every rival with runs (module docstring for the rule); None when no
    rival shares galaxies with `best`."""
    comparisons = {}
    for k, rival in enumerate(rivals):
        res = _compare(evidence, best, TTA, rival, TTA, n_boot, seed + k, level, keep_draws=True)
        if res is not None:
            comparisons[rival] = res
    if not comparisons:
        return None
    adjusted = 1 - (1 - level) / len(comparisons)
    beaten = tuple(r for r, res in comparisons.items() if percentile_interval(res.draws, adjusted)[0] > 0)
    below = all(res.high < 0 for res in comparisons.values())
    result = CONTRADICTED if beaten else SUPPORTED if below else NOT_RESOLVED
    closest = max(comparisons, key=lambda r: comparisons[r].difference)
    return BestOfAll(result, comparisons, beaten, closest)


def _paper_score(paper: pd.DataFrame, experiment: str, view: str) -> float | None:
    if view != TTA or experiment not in paper.index:  # the paper's scores are all with TTA
        return None
    return float(paper.loc[experiment, "score"])


def _small(res: PairedResult) -> str:
    return (f"only {res.n_galaxies} validation galaxies in common (fewer than {MIN_GALAXIES}): at this profile "
            "the rows are trained on different subsets")  # fmt: skip


def claims_table(evidence: Evidence, claims: Sequence[Claim] = PAPER_CLAIMS, paper: pd.DataFrame | None = None, *,
                 n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> pd.DataFrame:  # fmt: skip
    """One row per claim, none dropped (a claim that cannot be tested says "not run here" and why).

    Args:
        evidence: the rows' runs and predictions (report.collect_evidence).
        claims: the comparisons (default PAPER_CLAIMS).
        paper: the paper's numbers (default report.load_paper_reference()).
        n_boot: bootstrap replicates per comparison.
        seed: base seed of the resampling (claim k uses seed + 1000 k).
        level: nominal coverage.

    Returns:
        Claim, A, B, Paper A, Paper B, Paper difference, Ours A, Ours B, Ours difference, <level> CI low / high,
        Paper diff in CI, Galaxies, Seeds (a/b), Verdict, Why, Data, Profile.
    """
    paper = load_paper_reference() if paper is None else paper
    pct = f"{round(level * 100):d}%"
    prov = evidence.provenance()
    rows = []
    for k, claim in enumerate(claims):
        row = {"Claim": claim.name, "A": _label(claim.a, claim.view_a),
               "B": "each rival" if claim.b is None else _label(claim.b, claim.view_b),
               "Paper A": _paper_score(paper, claim.a, claim.view_a),
               "Paper B": None if claim.b is None else _paper_score(paper, claim.b, claim.view_b)}  # fmt: skip
        why_not = [w for w in (_unavailable(evidence, e, v) for e, v in zip(
            claim.rows(), (claim.view_a, claim.view_b), strict=False)) if w]  # fmt: skip
        res, why = None, claim.source
        if why_not:
            row.update(Verdict=NOT_RUN, Why="; ".join(why_not))
        elif claim.b is None:
            rivals = claim.rivals if claim.rivals is not None else tuple(e for e in TABLE_II if e != claim.a)
            missing = {r: _unavailable(evidence, r, TTA) for r in rivals}
            runnable = [r for r in rivals if not missing[r]]
            best = best_of_all(evidence, claim.a, runnable, n_boot, seed + 1000 * k, level) if runnable else None
            not_run = "; ".join(w for w in missing.values() if w)
            if best is None:
                row.update(Verdict=NOT_RUN, Why=f"no rival to compare with: {not_run}" if not_run else
                           "no rival shares validation galaxies")  # fmt: skip
            else:
                res = best.comparisons[best.closest]
                row["B"] = f"each rival (closest: {_label(best.closest)})"
                row["Paper B"] = _paper_score(paper, best.closest, TTA)
                result = best.verdict
                why = f"{claim.source}; {len(best.comparisons)} paired intervals, the closest rival shown"
                if best.beaten_by:
                    why += "; beaten clearly by " + ", ".join(map(_label, best.beaten_by))
                elif not_run:
                    why += f"; cannot check every rival: {not_run}"
                    result = NOT_RESOLVED if result == SUPPORTED else result
        else:
            res = _compare(evidence, claim.a, claim.view_a, claim.b, claim.view_b, n_boot, seed + 1000 * k, level)
            if res is None:
                row.update(Verdict=NOT_RESOLVED, Why="the two rows share no validation galaxies")
            else:
                result = verdict(_paper_difference(row), res.difference, res.interval, margin=claim.margin,
                                 direction=claim.direction)  # fmt: skip
        pdiff = _paper_difference(row)  # after the best-of-all branch named its closest rival's score
        row["Paper difference"] = pdiff
        if res is not None:
            if res.n_galaxies < MIN_GALAXIES:
                result, why = NOT_RESOLVED, f"{why}; {_small(res)}"
            row.update(Verdict=result, Why=why)
            row.update({"Ours A": res.rmse_a, "Ours B": res.rmse_b, "Ours difference": res.difference,
                        f"{pct} CI low": res.low, f"{pct} CI high": res.high,
                        "Paper diff in CI": None if math.isnan(pdiff) else bool(res.low <= pdiff <= res.high),
                        "Galaxies": res.n_galaxies, "Seeds (a/b)": f"{res.n_seeds_a}/{res.n_seeds_b}"})  # fmt: skip
        rows.append(row)
    columns = ["Claim", "A", "B", "Paper A", "Paper B", "Paper difference", "Ours A", "Ours B", "Ours difference",
               f"{pct} CI low", f"{pct} CI high", "Paper diff in CI", "Galaxies", "Seeds (a/b)", "Verdict", "Why"]
    table = pd.DataFrame(rows).reindex(columns=columns)
    table["Galaxies"] = table["Galaxies"].astype("Int64")
    table["Data"], table["Profile"] = prov.data_source, prov.profile
    return table


def _paper_difference(row: dict) -> float:
    """The paper's a - b of a claims-table row; NaN when the paper scores only one side."""
    pa, pb = row.get("Paper A"), row.get("Paper B")
    return pa - pb if pa is not None and pb is not None else math.nan


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many claims got each verdict (every verdict listed, 0 included)."""
    counts = table["Verdict"].value_counts()
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def claims_headline(table: pd.DataFrame) -> str:
    """One sentence: how many of the claims got each verdict, e.g. "Of the paper's 7 claims, 1 is supported, ..."."""
    counts = {v: n for v, n in verdict_counts(table).items() if n}
    parts = [f"{n} {'is' if n == 1 else 'are'} {v}" if v != NOT_RUN else f"{n} {'was' if n == 1 else 'were'} {v}"
             for v, n in counts.items()]  # fmt: skip
    listed = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] if parts else "none was tested"
    return f"Of the {len(table)} claims (the paper's and our ablation's), {listed}."


CLAIMS_RULE = ("Differences are a - b in RMSE (negative: a is better). Verdict: supported if the paired-bootstrap "
               "95% interval (galaxies and seeds resampled) excludes 0 on the paper's side, contradicted if it "
               "excludes 0 on the other side, not resolved at this scale if it contains 0 or the rows share fewer "
               f"than {MIN_GALAXIES} galaxies; not run here: a row is missing or not the paper's setting. With 3 "
               "seeds or fewer the interval understates the seed-to-seed spread (see the SD column of the scores "
               "tables). The paper's numbers are single runs on the Kaggle private leaderboard; ours are on the "
               "galaxies this caption names.")  # fmt: skip


def _numbers(row: pd.Series) -> str:
    pct = next(c for c in row.index if str(c).endswith("CI low")).replace(" CI low", "")
    ours = (f"ours {row['Ours difference']:+.5f}, {pct} CI [{row[f'{pct} CI low']:+.5f}, "
            f"{row[f'{pct} CI high']:+.5f}], {row['Galaxies']} galaxies, seeds {row['Seeds (a/b)']}")  # fmt: skip
    paper = "" if pd.isna(row["Paper difference"]) else f"; the paper's, on its data: {row['Paper difference']:+.5f}"
    return ours + paper


def summarise_claims(table: pd.DataFrame) -> str:
    """The claims table in words, one Markdown list per verdict: what reproduced, what this scale cannot resolve,
    what went the other way, and what could not be checked here and why."""
    heads = {SUPPORTED: "Supported", NOT_RESOLVED: "Not resolved at this scale", CONTRADICTED: "Contradicted",
             NOT_RUN: "Not run here"}  # fmt: skip
    parts = []
    for verdict_name in VERDICTS:
        rows = table[table["Verdict"] == verdict_name]
        if rows.empty:
            continue
        lines = [f"**{heads[verdict_name]}** ({len(rows)} of {len(table)}):"]
        for _, row in rows.iterrows():
            detail = row["Why"] if verdict_name == NOT_RUN else _numbers(row)
            lines.append(f"- {row['Claim']}: {detail}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
