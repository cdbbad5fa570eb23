"""A synthetic Galaxy Zoo in the Kaggle layout (see generate.py for what is written and how).

morphology  the latent truth of each galaxy
volunteers  simulated volunteers: answer probabilities, votes, the infinite-volunteer values
render      the 424-px frame
generate    many galaxies into a folder, reproducibly and in parallel
"""

from galaxylib.synth.generate import (
    EXPECTED_CSV,
    GENERATOR_VERSION,
    IMAGES_DIR,
    IN_PROGRESS,
    LABELS_CSV,
    MARKER,
    SynthSummary,
    galaxy_ids,
    galaxy_streams,
    generate,
    make_galaxy,
)
from galaxylib.synth.morphology import Galaxy, sample_galaxy
from galaxylib.synth.render import render_galaxy
from galaxylib.synth.volunteers import answer_probabilities, expected_values, simulate_votes, simulate_votes_many

__all__ = [
    "EXPECTED_CSV",
    "GENERATOR_VERSION",
    "IMAGES_DIR",
    "IN_PROGRESS",
    "LABELS_CSV",
    "MARKER",
    "Galaxy",
    "SynthSummary",
    "answer_probabilities",
    "expected_values",
    "galaxy_ids",
    "galaxy_streams",
    "generate",
    "make_galaxy",
    "render_galaxy",
    "sample_galaxy",
    "simulate_votes",
    "simulate_votes_many",
]
