"""Where a number comes from: the data (synthetic / Kaggle sample / full Kaggle), profile, device and weights,
shown in every table caption and figure title. Synthetic numbers are never presented as a reproduction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from galaxylib.experiments import EXPERIMENTS

FULL_KAGGLE = "full Kaggle"  # what galaxylib.data.data_source calls all 61,578 labelled training galaxies
PAPER_DATA = "full Kaggle data, 55,420 training galaxies at 128 / 224 px"  # the paper's setting, for labels
PAPER_MACHINE = "one RTX A6000"  # the paper's GPU (its section 3: an AMD 5975WX CPU and an RTX A6000 48 GB)


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


def comparable_with_paper(data_source: str) -> bool:
    """Our scores go beside the paper's, with their differences, only on the full Kaggle data; on anything else
    (synthetic, the Kaggle sample, a mix) the paper's numbers are shown as the paper's, apart from ours."""
    return data_source == FULL_KAGGLE


def data_caveat(data_source: str, profile: str) -> str:
    """One sentence on what the numbers can and cannot be compared with."""
    if "synthetic" in data_source:
        return ("Synthetic data: these numbers test the pipeline; they are not a reproduction of the paper "
                "and cannot be compared with its scores.")
    if data_source != FULL_KAGGLE:
        return ("A sample of the Kaggle data (far fewer than the paper's 61,578 galaxies): not comparable "
                "with the paper's scores.")
    if profile != "paper":
        return (f"Full Kaggle data, but the '{profile}' profile trains fewer epochs on fewer, smaller "
                "images: not the paper's setting.")
    return ("Full Kaggle data, paper profile. Ours: RMSE on the paper's 10% validation split; the paper's: "
            "the Kaggle private leaderboard.")


WEIGHTS_NOT_FOUND = "no (weights not found)"  # the pretrained column of a pretrained row trained from random weights


def pretrained_label(experiment: str, metrics: Mapping) -> str:
    """The pretrained column: as the paper, loaded, or (never silently) missing."""
    exp = EXPERIMENTS[experiment]
    if not exp.pretrained:
        return "no"
    if metrics.get("pretrained"):
        return f"yes ({exp.paper_weights})" if exp.paper_weights else "yes"
    return WEIGHTS_NOT_FOUND


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
