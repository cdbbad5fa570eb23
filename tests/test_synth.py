"""The synthetic Galaxy Zoo: Kaggle layout, determinism, valid labels, realistic statistics, and images that
carry the signal the labels describe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from galaxylib import cli, synth, tree
from galaxylib.errors import UserError

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gz_sample"
N = 300  # enough for column means within ~0.02 of the real sample's, small enough to render in seconds


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> tuple[Path, synth.SynthSummary]:
    out = tmp_path_factory.mktemp("synth") / "gz"
    return out, synth.generate(out, N, seed=11, workers=2, progress=False)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def test_layout(synth_dir):
    out, summary = synth_dir
    assert summary.n == N and not summary.reused and summary.images_per_s > 0
    labels = _read(out / synth.LABELS_CSV)
    expected = _read(out / synth.EXPECTED_CSV)
    assert list(labels.columns) == ["GalaxyID", *tree.COLUMNS]
    assert list(expected.columns) == list(labels.columns)
    ids = labels["GalaxyID"].to_numpy()
    assert len(ids) == N and len(set(ids)) == N
    assert (np.diff(ids) > 0).all(), "rows must be sorted by GalaxyID"
    assert ids.min() >= 100_000 and ids.max() <= 999_999
    assert (expected["GalaxyID"].to_numpy() == ids).all()
    images = sorted((out / synth.IMAGES_DIR).glob("*.jpg"))
    assert sorted(int(p.stem) for p in images) == sorted(ids.tolist())
    for path in images[:5]:
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (424, 424)
    meta = json.loads((out / synth.MARKER).read_text())
    assert (meta["n"], meta["seed"], meta["volunteers"], meta["synthetic"]) == (N, 11, 40, True)
    assert meta["noise_floor"] == pytest.approx(summary.noise_floor, abs=1e-6)
    assert not (out / synth.IN_PROGRESS).exists()


def test_labels_valid(synth_dir):
    out, _ = synth_dir
    for name in (synth.LABELS_CSV, synth.EXPECTED_CSV):
        df = _read(out / name)
        values = df[list(tree.COLUMNS)].to_numpy()
        assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
        assert tree.check_constraints(values, df["GalaxyID"], tol=1e-3) == []
        q6 = values[:, tree.QUESTION_SLICES[5]].sum(1)
        assert np.abs(q6 - 1).max() < 1e-3


def test_noise_floor_is_rmse_of_labels_vs_expected(synth_dir):
    out, summary = synth_dir
    labels = _read(out / synth.LABELS_CSV)[list(tree.COLUMNS)].to_numpy()
    expected = _read(out / synth.EXPECTED_CSV)[list(tree.COLUMNS)].to_numpy()
    rmse = float(np.sqrt(((labels - expected) ** 2).mean()))
    assert summary.noise_floor > 0.01
    assert rmse == pytest.approx(summary.noise_floor, abs=1e-5)


def test_noise_floor_shrinks_with_volunteers():
    def floor(volunteers: int) -> float:
        err = [np.subtract(*synth.make_galaxy(3, i, volunteers)[1:]) for i in range(200)]
        return float(np.sqrt(np.mean(np.square(err))))

    few, many = floor(10), floor(160)
    assert 0 < many < few / 2.5  # ~1/sqrt(volunteers): 4x fewer noise with 16x more volunteers


def test_expected_values_are_the_infinite_volunteer_limit():
    rng = np.random.default_rng(0)
    for index in range(5):
        g, _, expected = synth.make_galaxy(1, index, 40)
        votes = synth.simulate_votes(rng, synth.answer_probabilities(g), 200_000)
        assert np.abs(votes - expected).max() < 0.01


def test_all_star_votes_still_give_a_valid_q6():
    probs = np.zeros(tree.NUM_OUTPUTS)
    for s in tree.QUESTION_SLICES:
        probs[s] = 1.0 / (s.stop - s.start)
    probs[tree.QUESTION_SLICES[0]] = (0.0, 0.0, 1.0)
    values = synth.simulate_votes(np.random.default_rng(0), probs, 40)
    assert values[tree.QUESTION_SLICES[0]].tolist() == [0.0, 0.0, 1.0]
    assert values[tree.QUESTION_SLICES[5]].tolist() == [0.0, 1.0]
    assert tree.check_constraints(values[None], [1], tol=1e-6) == []


def test_deterministic_whatever_the_workers(tmp_path):
    a = synth.generate(tmp_path / "a", 24, seed=5, workers=1, progress=False)
    synth.generate(tmp_path / "b", 24, seed=5, workers=2, progress=False)
    synth.generate(tmp_path / "c", 24, seed=6, workers=2, progress=False)
    for name in (synth.LABELS_CSV, synth.EXPECTED_CSV):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    jpgs = sorted((tmp_path / "a" / synth.IMAGES_DIR).glob("*.jpg"))
    assert len(jpgs) == 24
    for path in jpgs:
        assert path.read_bytes() == (tmp_path / "b" / synth.IMAGES_DIR / path.name).read_bytes()
    assert a.noise_floor > 0


def test_reuses_complete_output_and_redoes_incomplete(tmp_path, capsys):
    out = tmp_path / "gz"
    synth.generate(out, 6, seed=2, workers=1, progress=False)
    before = (out / synth.LABELS_CSV).stat().st_mtime_ns
    again = synth.generate(out, 6, seed=2, workers=1, progress=False)
    assert again.reused and "reusing" in capsys.readouterr().out
    assert (out / synth.LABELS_CSV).stat().st_mtime_ns == before
    # An interrupted run (no SYNTHETIC.json yet) is not mistaken for a complete one.
    (out / synth.MARKER).unlink()
    (out / synth.IN_PROGRESS).touch()
    assert not synth.generate(out, 6, seed=2, workers=1, progress=False).reused
    # Other parameters: regenerated, and no stale images left behind.
    synth.generate(out, 4, seed=3, workers=1, progress=False)
    ids = _read(out / synth.LABELS_CSV)["GalaxyID"]
    assert sorted(p.stem for p in (out / synth.IMAGES_DIR).glob("*.jpg")) == sorted(map(str, ids))


def test_bad_arguments(tmp_path):
    with pytest.raises(UserError):
        synth.generate(tmp_path / "x", 0)
    with pytest.raises(UserError):
        synth.generate(tmp_path / "x", 5, volunteers=0)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a synth output")
    with pytest.raises(UserError, match="not a synth output"):
        synth.generate(foreign, 5, workers=1, progress=False)
    assert (foreign / "notes.txt").exists()
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(UserError):
        synth.generate(a_file, 5, workers=1, progress=False)


def test_cli(tmp_path, capsys):
    out = tmp_path / "gz"
    assert cli.main(["synth", "--n", "3", "--seed", "4", "--out", str(out), "--workers", "1"]) == 0
    assert "noise floor" in capsys.readouterr().out
    assert len(_read(out / synth.LABELS_CSV)) == 3
    assert cli.main(["synth", "--n", "0", "--out", str(tmp_path / "y")]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.skipif(not (SAMPLE / "training_solutions_rev1.csv").exists(), reason=f"real sample absent: {SAMPLE}")
def test_label_statistics_match_real_sample(synth_dir):
    out, _ = synth_dir
    real = _read(SAMPLE / "training_solutions_rev1.csv")[list(tree.COLUMNS)].to_numpy()
    fake = _read(out / synth.LABELS_CSV)[list(tree.COLUMNS)].to_numpy()
    diff = np.abs(fake.mean(0) - real.mean(0))
    worst = tree.COLUMNS[int(diff.argmax())]
    assert diff.mean() < 0.03, f"column means differ by {diff.mean():.3f} on average"
    assert diff.max() < 0.10, f"{worst} mean differs by {diff.max():.3f}"
    # Unreached branches make about half of all real values exactly 0; so must ours.
    assert abs((fake == 0).mean() - (real == 0).mean()) < 0.1


def _axis_ratio(path: Path) -> float:
    """Second-moment axis ratio of the bright central light (1 = round)."""
    a = np.asarray(Image.open(path).convert("L"), dtype=np.float64)[112:312, 112:312]
    w = np.clip(a - np.median(a) - 40, 0, None)
    y, x = np.mgrid[: w.shape[0], : w.shape[1]]
    m = w.sum()
    cx, cy = (w * x).sum() / m, (w * y).sum() / m
    cov = np.cov(np.stack([(x - cx).ravel(), (y - cy).ravel()]), aweights=w.ravel() + 1e-12)
    low, high = np.linalg.eigvalsh(cov)
    return float(np.sqrt(low / high))


def _blue_to_red(path: Path) -> float:
    a = np.asarray(Image.open(path), dtype=np.float64)[192:232, 192:232]
    return float(a[..., 2].sum() / a[..., 0].sum())


def test_images_carry_the_labels_signal(synth_dir):
    """Edge-on disks look elongated, round smooth galaxies round; featured galaxies are bluer than smooth."""
    out, _ = synth_dir
    expected = _read(out / synth.EXPECTED_CSV)
    paths = [out / synth.IMAGES_DIR / f"{i}.jpg" for i in expected["GalaxyID"]]
    ratio = np.array([_axis_ratio(p) for p in paths])
    colour = np.array([_blue_to_red(p) for p in paths])
    edge_on = (expected["Class2.1"] > 0.4).to_numpy()
    round_smooth = (expected["Class7.1"] > 0.3).to_numpy()
    assert edge_on.sum() >= 10 and round_smooth.sum() >= 10
    assert ratio[edge_on].mean() < ratio[round_smooth].mean() - 0.15
    featured = (expected["Class1.2"] > 0.7).to_numpy()
    smooth = (expected["Class1.1"] > 0.7).to_numpy()
    assert featured.sum() >= 10 and smooth.sum() >= 10
    assert colour[featured].mean() > colour[smooth].mean() + 0.1


def test_reproduce_names_the_synthetic_data_once(capsys):
    """`reproduce` without --data-dir says in one line which synthetic folder it uses, generated or reused;
    `synth.generate` on its own still says when it reuses a folder."""
    from galaxylib import reproduce

    first = reproduce.ensure_data("smoke")
    capsys.readouterr()
    again = reproduce.ensure_data("smoke")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert again == first and len(lines) == 1 and lines[0].startswith("data: no --data-dir given"), lines
    synth.generate(first[0], reproduce.SYNTHETIC_SIZE["smoke"], reproduce.SYNTHETIC_SEED, progress=False)
    assert "reusing the synthetic Galaxy Zoo already in" in capsys.readouterr().out
