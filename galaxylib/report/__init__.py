"""Tables and figures for the notebooks, always labelled with their provenance.

provenance  what the data, profile, device and weights were (every caption and title carries it)
tables      our metrics beside the paper's numbers (CSV for code, captioned Markdown for reading), over seeds,
            with intervals and the label-noise floor
evidence    the runs' per-galaxy predictions and the labels, which the intervals and claims are computed from
claims      each comparison the paper makes, with our paired interval and a verdict in words
figures     training histories, model comparison, galaxies, views, AblationCAM grids
"""

from galaxylib.experiments import ABLATIONS, FOUNDATION, TABLE_I, TABLE_II
from galaxylib.report.claims import (
    CLAIMS_RULE,
    CONTRADICTED,
    NOT_RESOLVED,
    NOT_RUN,
    PAPER_CLAIMS,
    SUPPORTED,
    VERDICTS,
    Claim,
    claims_table,
    summarise_claims,
    verdict,
    verdict_counts,
)
from galaxylib.report.evidence import ONE_VIEW, TTA, Evidence, RowRuns, collect_evidence, read_predictions
from galaxylib.report.figures import (
    leading_answers,
    plot_cam_grid,
    plot_galaxy_grid,
    plot_history,
    plot_label_distributions,
    plot_model_comparison,
    plot_views,
    save_figure,
    to_rgb,
)
from galaxylib.report.provenance import (
    Provenance,
    common_provenance,
    data_caveat,
    pretrained_label,
    provenance_of,
)
from galaxylib.report.tables import (
    PAPER_REFERENCE,
    PAPER_SOURCE,
    SCORES_NOTE,
    constraint_table,
    heldout_table,
    load_paper_reference,
    noise_floor_table,
    paper_table,
    per_question_table,
    save_table,
    scores_table,
    split_table,
    to_markdown,
)

__all__ = [
    "ABLATIONS",
    "CLAIMS_RULE",
    "CONTRADICTED",
    "NOT_RESOLVED",
    "NOT_RUN",
    "ONE_VIEW",
    "PAPER_CLAIMS",
    "SUPPORTED",
    "TTA",
    "VERDICTS",
    "Claim",
    "Evidence",
    "RowRuns",
    "claims_table",
    "collect_evidence",
    "noise_floor_table",
    "read_predictions",
    "summarise_claims",
    "verdict",
    "verdict_counts",
    "FOUNDATION",
    "PAPER_REFERENCE",
    "PAPER_SOURCE",
    "SCORES_NOTE",
    "TABLE_I",
    "TABLE_II",
    "Provenance",
    "common_provenance",
    "constraint_table",
    "data_caveat",
    "heldout_table",
    "leading_answers",
    "load_paper_reference",
    "paper_table",
    "per_question_table",
    "plot_cam_grid",
    "plot_galaxy_grid",
    "plot_history",
    "plot_label_distributions",
    "plot_model_comparison",
    "plot_views",
    "pretrained_label",
    "provenance_of",
    "save_figure",
    "save_table",
    "scores_table",
    "split_table",
    "to_markdown",
    "to_rgb",
]
