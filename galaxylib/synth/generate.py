"""A synthetic Galaxy Zoo in the Kaggle layout, so that a first run needs no Kaggle download.

`python -m galaxylib synth --n N --seed S --out DIR` writes

    DIR/images_training_rev1/<GalaxyID>.jpg   424x424 RGB JPEG, rendered from a latent morphology
    DIR/training_solutions_rev1.csv           GalaxyID + the 37 Kaggle columns, from simulated volunteers
    DIR/expected_solutions.csv                the same 37 columns with infinitely many volunteers
    DIR/SYNTHETIC.json                        marker (written last): n, seed, volunteers, noise floor, ...

Each galaxy is drawn in three steps, each from its own random stream, so that changing the renderer never
changes the labels and a galaxy never depends on which process drew it:

1. `sample_galaxy`: a latent morphology (kind, size, brightness, bulge, disk inclination, bar, arms, ring,
   dust lane, companions ...) and a *visibility* that falls for small and faint galaxies.
2. `answer_probabilities`: what a volunteer answers at each of the 11 questions, given that truth. Mistakes
   grow as visibility falls, more so for hard questions (bar, arm count). `simulate_votes` lets ~40
   volunteers walk the tree and turns the counts into the 37 values exactly as Kaggle weighted them; the
   infinite-volunteer values follow analytically (`tree.conditionals_to_targets`). The RMSE between the two
   is the noise floor: the score of a perfect model.
3. `render_galaxy`: Sérsic bulges and ellipticals, exponential disks with spiral arms, bars, rings, dust
   lanes, arcs, clumps, companions with tidal tails, field stars, PSF blur, coloured sky noise and an asinh
   stretch (../shared/docs/synthetic_galaxies.md), at half resolution, then upsampled.

The morphology mix and the answer model are calibrated so that the 37 column means match the real Kaggle
sample (within ~0.01 on average at n = 2000) and about half of all values are exactly 0, as in the real labels.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from galaxylib import layout, tree
from galaxylib.errors import UserError
from galaxylib.fileio import atomic_path, atomic_write_text
from galaxylib.synth.morphology import Galaxy, sample_galaxy
from galaxylib.synth.render import render_galaxy
from galaxylib.synth.volunteers import answer_probabilities, expected_values, simulate_votes

GENERATOR_VERSION = 1
JPEG_QUALITY = 85
IMAGES_DIR = layout.TRAIN_IMAGES_DIR
LABELS_CSV = layout.LABELS_CSV
EXPECTED_CSV = layout.EXPECTED_CSV
MARKER = layout.SYNTHETIC_MARKER
IN_PROGRESS = ".synth-in-progress"  # present while writing: lets a rerun recognise (and redo) its own output


def galaxy_streams(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """(latent, votes, render) generators of galaxy `index`: the same as SeedSequence(seed).spawn(n)[index],
    without spawning n of them, so galaxy i is the same whatever n, order or process draws it."""
    ss = np.random.SeedSequence(seed, spawn_key=(index,))
    return tuple(np.random.default_rng(s) for s in ss.spawn(3))


def make_galaxy(seed: int, index: int, volunteers: int) -> tuple[Galaxy, np.ndarray, np.ndarray]:
    """Latent truth, finite-vote labels and expected labels of galaxy `index` (no image)."""
    latent_rng, vote_rng, _ = galaxy_streams(seed, index)
    g = sample_galaxy(latent_rng)
    probs = answer_probabilities(g)
    # Real galaxies got 40-50 classifications, not a fixed number.
    n_vol = max(1, int(round(volunteers * vote_rng.uniform(0.75, 1.25))))
    return g, simulate_votes(vote_rng, probs, n_vol), expected_values(probs)


def _work(task: tuple[int, int, int, int, str]) -> tuple[np.ndarray, np.ndarray]:
    seed, index, galaxy_id, volunteers, image_dir = task
    g, labels, expected = make_galaxy(seed, index, volunteers)
    image = render_galaxy(galaxy_streams(seed, index)[2], g)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    (Path(image_dir) / f"{galaxy_id}.jpg").write_bytes(buf.getvalue())
    return np.round(labels, 6), np.round(expected, 6)


def galaxy_ids(seed: int, n: int) -> np.ndarray:
    """n unique random 6-digit GalaxyIDs, sorted: galaxy i gets the i-th smallest, so rows stream in order."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    return np.sort(rng.choice(900_000, size=n, replace=False) + 100_000)


def _fmt(v: float) -> str:
    return "0" if v == 0 else f"{v:.6f}".rstrip("0").rstrip(".")


def _row(galaxy_id: int, values: np.ndarray) -> str:
    return f"{galaxy_id}," + ",".join(_fmt(v) for v in values) + "\n"


@dataclass
class SynthSummary:
    n: int
    seconds: float
    images_per_s: float
    noise_floor: float  # RMSE of the finite-volunteer labels against the infinite-volunteer ones
    reused: bool = False


def _marker_matches(out: Path, n: int, seed: int, volunteers: int) -> dict | None:
    try:
        meta = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None
    same = (meta.get("n"), meta.get("seed"), meta.get("volunteers"), meta.get("version")) == (
        n, seed, volunteers, GENERATOR_VERSION)  # fmt: skip
    complete = (out / LABELS_CSV).is_file() and (out / EXPECTED_CSV).is_file()
    if not (same and complete):
        return None
    try:
        with os.scandir(out / IMAGES_DIR) as entries:  # ~50 ms for the full 61,578 images
            images = sum(1 for e in entries if e.name.endswith(".jpg"))
    except OSError:
        return None
    return meta if images == n else None


def _prepare_out(out: Path) -> None:
    """Refuse to write into a folder we did not make; clear a previous synth output we did."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not ((out / MARKER).exists() or (out / IN_PROGRESS).exists()):
            raise UserError(f"--out {out} is a non-empty folder that is not a synth output; pick another")
        (out / IN_PROGRESS).touch()  # first, so that an interruption below still leaves it recognisable
        (out / MARKER).unlink(missing_ok=True)  # from here on the folder reads as incomplete
        for name in (LABELS_CSV, EXPECTED_CSV):
            (out / name).unlink(missing_ok=True)
        if (out / IMAGES_DIR).is_dir():
            for jpg in (out / IMAGES_DIR).glob("*.jpg"):
                jpg.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / IN_PROGRESS).touch()
    (out / IMAGES_DIR).mkdir(exist_ok=True)


def generate(out: Path, n: int, seed: int = 0, *, volunteers: int = 40, workers: int | None = None,
             progress: bool = True, say_reused: bool = True) -> SynthSummary:  # fmt: skip
    """Write a synthetic Galaxy Zoo of `n` galaxies to `out` (Kaggle layout, see module docstring).

    Byte-identical for the same (n, seed, volunteers) whatever `workers`. Reuses a complete previous
    output with the same parameters instead of regenerating it (and says so, unless say_reused=False: a caller
    that has already named the folder).
    """
    out = Path(out)
    if n <= 0:
        raise UserError(f"--n must be positive, got {n}")
    if n > 900_000:
        raise UserError(f"--n must be at most 900000 (6-digit GalaxyIDs), got {n}")
    if volunteers <= 0:
        raise UserError(f"--volunteers must be positive, got {volunteers}")
    if workers is not None and workers <= 0:
        raise UserError(f"--workers must be positive, got {workers}")
    start = time.perf_counter()
    meta = _marker_matches(out, n, seed, volunteers)
    if meta is not None:
        if say_reused:
            print(f"reusing the synthetic Galaxy Zoo already in {out} (n={n}, seed={seed}, volunteers={volunteers})",
                  flush=True)
        return SynthSummary(n, time.perf_counter() - start, 0.0, float(meta["noise_floor"]), reused=True)
    _prepare_out(out)
    ids = galaxy_ids(seed, n)
    tasks = ((seed, i, int(ids[i]), volunteers, str(out / IMAGES_DIR)) for i in range(n))
    workers = min(workers or os.cpu_count() or 1, n)
    header = ",".join((tree.ID_COLUMN, *tree.COLUMNS)) + "\n"
    sq_err = 0.0
    with (atomic_path(out / LABELS_CSV) as lab_tmp, atomic_path(out / EXPECTED_CSV) as exp_tmp,
          open(lab_tmp, "w") as f_lab, open(exp_tmp, "w") as f_exp):  # fmt: skip
        f_lab.write(header)
        f_exp.write(header)
        pool = mp.Pool(workers) if workers > 1 else None
        try:
            results = pool.imap(_work, tasks, chunksize=8) if pool else map(_work, tasks)
            bar = tqdm(results, total=n, disable=None if progress else True, unit="img", desc="synth")
            for i, (labels, expected) in enumerate(bar):
                f_lab.write(_row(int(ids[i]), labels))
                f_exp.write(_row(int(ids[i]), expected))
                sq_err += float(((labels - expected) ** 2).sum())
        finally:
            if pool:
                pool.terminate()
    noise_floor = math.sqrt(sq_err / (n * tree.NUM_OUTPUTS))
    seconds = time.perf_counter() - start
    marker = {
        "synthetic": True, "generator": "galaxylib.synth", "version": GENERATOR_VERSION, "n": n, "seed": seed,
        "volunteers": volunteers, "noise_floor": round(noise_floor, 6), "image_size": layout.FRAME,
        "labels": LABELS_CSV, "expected": EXPECTED_CSV,
        "note": "synthetic data: results on it say nothing about real Galaxy Zoo performance",
    }  # fmt: skip
    atomic_write_text(out / MARKER, json.dumps(marker, indent=2) + "\n")  # last: only now is the folder complete
    (out / IN_PROGRESS).unlink(missing_ok=True)
    return SynthSummary(n, seconds, n / seconds, noise_floor)
