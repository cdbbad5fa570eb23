"""Tables and figures for the notebooks, always labelled with their provenance.

provenance  what the data, profile, device and weights were (every caption and title carries it)
tables      our metrics beside the paper's numbers (CSV for code, captioned Markdown for reading)
figures     training histories, model comparison, galaxies, views, AblationCAM grids
"""

from galaxylib.experiments import FOUNDATION, TABLE_I, TABLE_II
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
    constraint_table,
    load_paper_reference,
    paper_table,
    per_question_table,
    save_table,
    scores_table,
    split_table,
    to_markdown,
)

__all__ = [
    "FOUNDATION",
    "PAPER_REFERENCE",
    "PAPER_SOURCE",
    "TABLE_I",
    "TABLE_II",
    "Provenance",
    "common_provenance",
    "constraint_table",
    "data_caveat",
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
