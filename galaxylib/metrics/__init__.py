"""Scores and how sure they are.

scores     exact RMSE over every labelled entry (overall, per question, per galaxy), the mean predictor,
           scoring a submission file
bootstrap  percentile bootstrap intervals over galaxies (and seeds), paired differences, seed summaries
noise      the label-noise floor: the RMSE a perfect model scores because ~40 volunteers voted, not infinitely many
"""

from galaxylib.metrics.bootstrap import (
    LEVEL,
    N_BOOT,
    BootstrapResult,
    PairedResult,
    SeedSummary,
    bootstrap_rmse,
    paired_difference,
    percentile_interval,
    seed_summary,
)
from galaxylib.metrics.noise import (
    VOTES,
    NoiseFloor,
    conditionals_from_labels,
    expected_floor,
    infer_votes,
    label_noise_variance,
    noise_floor,
    noise_floor_from_labels,
    noise_floor_from_synthetic,
    resolve_votes,
)
from galaxylib.metrics.scores import (
    mean_predictor,
    per_galaxy_stats,
    per_question_rmse,
    rmse,
    rmse_from_stats,
    score_files,
)

__all__ = [
    "LEVEL",
    "N_BOOT",
    "VOTES",
    "BootstrapResult",
    "NoiseFloor",
    "PairedResult",
    "SeedSummary",
    "bootstrap_rmse",
    "conditionals_from_labels",
    "expected_floor",
    "infer_votes",
    "label_noise_variance",
    "mean_predictor",
    "noise_floor",
    "noise_floor_from_labels",
    "noise_floor_from_synthetic",
    "paired_difference",
    "per_galaxy_stats",
    "per_question_rmse",
    "percentile_interval",
    "resolve_votes",
    "rmse",
    "rmse_from_stats",
    "score_files",
    "seed_summary",
]
