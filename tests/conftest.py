"""Shared fixtures: the real Kaggle sample (read-only, skipped when absent), a tiny synthetic Galaxy Zoo, and a
private cache folder so that tests never write into the user's cache or beside ../shared."""

import os
from pathlib import Path

import pytest

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "gz_sample"


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("galaxylib-cache")
    old = os.environ.get("GALAXYLIB_CACHE_DIR")
    os.environ["GALAXYLIB_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GALAXYLIB_CACHE_DIR", None)
    else:
        os.environ["GALAXYLIB_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE_DIR / "training_solutions_rev1.csv").exists():
        pytest.skip(f"the real Kaggle sample is not at {SAMPLE_DIR} (CI has it; see DEVELOPERS notes)")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """80 synthetic galaxies in the Kaggle layout, made once per test session."""
    from galaxylib.synth import generate

    out = tmp_path_factory.mktemp("synth") / "gz"
    generate(out, 80, seed=3, progress=False)
    return out
