"""galaxylib.data: reading, validating, splitting and caching Kaggle-layout folders.

Bad-input cases run on small folders written into tmp_path (synthetic JPEGs, labels made valid by the tree's
forward map, then corrupted one way each), so they need no real data. Tests on the real Kaggle sample skip
when ../shared/data/gz_sample is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from galaxylib import cli, data, layout, tree
from galaxylib.data.problems import MAX_LISTED
from galaxylib.errors import DataError

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gz_sample"
PARTIAL = SAMPLE / "extra_partial"
needs_sample = pytest.mark.skipif(
    not (SAMPLE / "training_solutions_rev1.csv").exists() or not (PARTIAL / "images_training_rev1").is_dir(),
    reason=f"the real Kaggle sample is not at {SAMPLE}",
)
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------------
# small synthetic folders


def write_jpeg(path: Path, seed: int, size: int = 424, mode: str = "RGB") -> None:
    """A smooth random picture (JPEG-friendly, so files stay small and decode exactly as PIL wrote them)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
    img.convert(mode).save(path, quality=85)


def valid_targets(n: int, seed: int) -> np.ndarray:
    """Labels that satisfy the tree exactly: random conditionals through the forward map."""
    rng = np.random.default_rng(seed)
    cond = np.concatenate([rng.dirichlet(np.ones(len(q.answers)), n) for q in tree.QUESTIONS], 1)
    return tree.conditionals_to_targets(cond)


def make_folder(root: Path, n: int = 5, seed: int = 0, first_id: int = 100100, columns=tree.COLUMNS,
                csv_name: str = "training_solutions_rev1.csv") -> tuple[Path, np.ndarray, pd.DataFrame]:  # fmt: skip
    """A Kaggle-layout folder with n galaxies -> (folder, ids, label table as written)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / layout.TRAIN_IMAGES_DIR).mkdir()
    ids = first_id + 7 * np.arange(n)
    df = pd.DataFrame(valid_targets(n, seed), columns=tree.COLUMNS)[list(columns)]
    df.insert(0, "GalaxyID", ids)
    df.to_csv(root / csv_name, index=False)
    for k, gid in enumerate(ids):
        write_jpeg(root / layout.TRAIN_IMAGES_DIR / f"{gid}.jpg", seed * 1000 + k)
    return root, ids, df


def rewrite_csv(folder: Path, edit) -> None:
    """Apply `edit` to the label table read as text, so any string can be written into any cell."""
    path = folder / "training_solutions_rev1.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(df).to_csv(path, index=False)


def set_cell(folder: Path, row: int, column: str, text: str) -> None:
    def edit(df):
        df.loc[row, column] = text
        return df

    rewrite_csv(folder, edit)


def check_data(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main(["check-data", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def img(folder: Path, gid) -> Path:
    return folder / layout.TRAIN_IMAGES_DIR / f"{gid}.jpg"


# ----------------------------------------------------------------------------------------------------------
# the real Kaggle sample


@pytest.fixture(scope="module")
def sample() -> data.GalaxyData:
    return data.load_folders(SAMPLE, progress=False)


@pytest.fixture(scope="module")
def partial() -> data.GalaxyData:
    return data.load_folders(PARTIAL, progress=False)


@needs_sample
def test_real_sample_loads_and_satisfies_the_tree(sample):
    raw = pd.read_csv(SAMPLE / "training_solutions_rev1.csv")
    assert len(sample) == 300 and sample.labels.shape == (300, 37) and sample.skipped == []
    assert not np.isnan(sample.labels).any() and sample.labelled_columns() == list(tree.COLUMNS)
    assert np.all(np.diff(sample.ids) > 0)
    assert [int(p.stem) for p in sample.image_paths] == sample.ids.tolist()
    expected = raw.set_index("GalaxyID").loc[sample.ids, list(tree.COLUMNS)].to_numpy(np.float32)
    np.testing.assert_array_equal(sample.labels, expected)
    assert tree.check_constraints(sample.labels, sample.ids, tol=1e-5) == []
    y = sample.labels.astype(np.float64)
    np.testing.assert_allclose(tree.conditionals_to_targets(tree.targets_to_conditionals(y)[0]), y, atol=1e-5)


@needs_sample
def test_real_partial_sample_has_nan_in_absent_columns(partial):
    header = pd.read_csv(PARTIAL / "training_solutions_rev1_partial.csv", nrows=0).columns[1:].tolist()
    assert len(partial) == 3863 and len(header) == 17
    assert partial.labelled_columns() == header
    absent = [tree.COLUMNS.index(c) for c in tree.COLUMNS if c not in header]
    assert len(absent) == 20
    assert np.isnan(partial.labels[:, absent]).all()
    mask = partial.label_mask()
    assert mask[:, [tree.COLUMNS.index(c) for c in header]].all() and not mask[:, absent].any()
    assert tree.check_constraints(partial.labels, partial.ids, tol=1e-5) == []
    y = partial.labels.astype(np.float64)  # NaN questions stay NaN; the labelled ones must round-trip
    np.testing.assert_allclose(tree.conditionals_to_targets(tree.targets_to_conditionals(y)[0]), y, atol=1e-5)


@needs_sample
def test_real_folders_combine(sample, partial):
    both = data.load_folders([SAMPLE, PARTIAL], progress=False, verify_images=False)
    assert len(both) == 4163 == len(sample) + len(partial)
    assert np.all(np.diff(both.ids) > 0)
    np.testing.assert_array_equal(both.subset(np.isin(both.ids, sample.ids)).labels, sample.labels)
    assert data.data_source([SAMPLE, PARTIAL]) == "Kaggle sample"


@needs_sample
@pytest.mark.parametrize("which", ["full", "combined"])
def test_paper_split_equals_scikit_learn(sample, partial, which):
    from sklearn.model_selection import train_test_split

    d = sample if which == "full" else data.load_folders([SAMPLE, PARTIAL], verify_images=False, progress=False)
    train, val = data.paper_split(d)
    ids = np.sort(d.ids)
    strata = np.argmax(d.labels[:, :3], 1)
    ref_train, ref_val = train_test_split(ids, test_size=0.1, random_state=1, stratify=strata)
    np.testing.assert_array_equal(d.ids[train], np.sort(ref_train))
    np.testing.assert_array_equal(d.ids[val], np.sort(ref_val))
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(d)


@needs_sample
def test_check_data_command_on_the_real_sample():
    proc = subprocess.run([sys.executable, "-m", "galaxylib", "check-data", str(SAMPLE)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "300 labelled" in proc.stdout and "37 of 37" in proc.stdout and "Kaggle sample" in proc.stdout


# ----------------------------------------------------------------------------------------------------------
# valid synthetic folders


def test_labels_matched_by_galaxy_id_not_order(tmp_path):
    folder, ids, df = make_folder(tmp_path / "d", n=6)
    shuffled = df.sample(frac=1, random_state=3)
    assert not shuffled["GalaxyID"].is_monotonic_increasing
    shuffled.to_csv(folder / "training_solutions_rev1.csv", index=False)
    d = data.load_folders(folder, progress=False)
    np.testing.assert_array_equal(d.ids, ids)
    np.testing.assert_allclose(d.labels, df[list(tree.COLUMNS)].to_numpy(), atol=1e-7)
    assert [p.name for p in d.image_paths] == [f"{i}.jpg" for i in ids]


def test_partial_columns_and_subset(tmp_path):
    cols = list(tree.COLUMNS[:5]) + ["Class6.1", "Class6.2"]
    folder, ids, _ = make_folder(tmp_path / "p", n=4, columns=cols, csv_name="training_solutions_rev1_partial.csv")
    d = data.load_folders(folder, progress=False)
    assert d.labelled_columns() == cols
    assert d.label_mask().sum() == 4 * len(cols) and np.isnan(d.labels).sum() == 4 * (37 - len(cols))
    sub = d.subset([2, 0])
    np.testing.assert_array_equal(sub.ids, ids[[2, 0]])
    assert sub.image_paths == [d.image_paths[2], d.image_paths[0]]
    np.testing.assert_array_equal(sub.labels, d.labels[[2, 0]])
    assert len(d.subset(d.ids > ids[1])) == 2


def test_load_images_unlabelled(tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for gid in (300, 100, 200):
        write_jpeg(flat / f"{gid}.jpg", gid)
    d = data.load_images(flat, progress=False)
    assert d.labels is None and d.ids.tolist() == [100, 200, 300] and not d.label_mask().any()
    kaggle = tmp_path / "kaggle"
    (kaggle / layout.TEST_IMAGES_DIR).mkdir(parents=True)
    write_jpeg(kaggle / layout.TEST_IMAGES_DIR / "123.jpg", 1)
    assert data.load_images(kaggle, progress=False).ids.tolist() == [123]
    (flat / "200.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"200\.jpg.*empty file"):
        data.load_images(flat, progress=False)
    rc, _, err = check_data(capsys, flat)
    assert rc == 2 and "200.jpg: GalaxyID 200: empty file" in err
    rc, out, _ = check_data(capsys, flat, "--skip-bad")
    assert rc == 0 and "unlabelled images: 2" in out and "GalaxyID 200:" in out


def test_data_source(tmp_path):
    real, _, _ = make_folder(tmp_path / "real", n=2)
    synth, _, _ = make_folder(tmp_path / "synth", n=2, first_id=200000)
    (synth / layout.SYNTHETIC_MARKER).write_text("{}")
    assert data.data_source(real) == "Kaggle sample"
    assert data.data_source([synth]) == "synthetic"
    assert data.data_source([synth, real]) == "synthetic + Kaggle sample"


# ----------------------------------------------------------------------------------------------------------
# every bad input: non-zero exit of `check-data` and a message naming file, GalaxyID and column


def _misspelled(folder, ids):
    rewrite_csv(folder, lambda df: df.rename(columns={"Class2.1": "Clas2.1"}))
    return ["training_solutions_rev1.csv", "column Clas2.1", "unknown column", "did you mean 'Class2.1'"]


def _unknown(folder, ids):
    rewrite_csv(folder, lambda df: df.assign(Colour="red"))
    return ["training_solutions_rev1.csv", "column Colour", "unknown column"]


def _no_id_column(folder, ids):
    rewrite_csv(folder, lambda df: df.rename(columns={"GalaxyID": "GalaxyId"}))
    return ["training_solutions_rev1.csv", "no GalaxyID column", "did you mean 'GalaxyID'"]


def _non_numeric(folder, ids):
    set_cell(folder, 2, "Class6.1", "abc")
    return ["training_solutions_rev1.csv", f"GalaxyID {ids[2]}", "column Class6.1", "non-numeric value 'abc'"]


def _above_one(folder, ids):
    set_cell(folder, 1, "Class7.2", "1.5")
    return [f"GalaxyID {ids[1]}", "column Class7.2", "1.5 outside [0, 1]"]


def _negative(folder, ids):
    set_cell(folder, 3, "Class11.6", "-0.25")
    return [f"GalaxyID {ids[3]}", "column Class11.6", "-0.25 outside [0, 1]"]


def _empty_cell(folder, ids):
    set_cell(folder, 0, "Class9.3", "")
    return [f"GalaxyID {ids[0]}", "column Class9.3", "empty cell"]


def _nan_cell(folder, ids):
    set_cell(folder, 4, "Class3.1", "NaN")
    return [f"GalaxyID {ids[4]}", "column Class3.1", "NaN value"]


def _bad_id(folder, ids):
    set_cell(folder, 1, "GalaxyID", "12x4")
    return ["training_solutions_rev1.csv", "data row 2", "'12x4' is not a whole number"]


def _duplicate_id(folder, ids):
    set_cell(folder, 3, "GalaxyID", str(ids[1]))
    return ["training_solutions_rev1.csv", f"GalaxyID {ids[1]}", "duplicate GalaxyID (data rows 2, 4)"]


def _label_without_image(folder, ids):
    img(folder, ids[0]).unlink()
    return ["training_solutions_rev1.csv", f"GalaxyID {ids[0]}", f"no image images_training_rev1/{ids[0]}.jpg"]


def _image_without_label(folder, ids):
    write_jpeg(img(folder, 999999), 9)
    return ["999999.jpg", "GalaxyID 999999", "no label row in training_solutions_rev1.csv"]


def _empty_jpeg(folder, ids):
    img(folder, ids[1]).write_bytes(b"")
    return [f"{ids[1]}.jpg", f"GalaxyID {ids[1]}", "empty file"]


def _truncated_jpeg(folder, ids):
    path = img(folder, ids[2])
    path.write_bytes(path.read_bytes()[:-400])
    return [f"{ids[2]}.jpg", f"GalaxyID {ids[2]}", "cannot be decoded", "truncated"]


def _garbage_jpeg(folder, ids):
    img(folder, ids[2]).write_bytes(os.urandom(2000))
    return [f"{ids[2]}.jpg", f"GalaxyID {ids[2]}", "cannot be decoded"]


def _grey_jpeg(folder, ids):
    write_jpeg(img(folder, ids[3]), 3, mode="L")
    return [f"{ids[3]}.jpg", f"GalaxyID {ids[3]}", "mode is L, expected RGB"]


def _small_jpeg(folder, ids):
    write_jpeg(img(folder, ids[3]), 3, size=100)
    return [f"{ids[3]}.jpg", "100x100, expected 424x424"]


def _badly_named_image(folder, ids):
    write_jpeg(folder / layout.TRAIN_IMAGES_DIR / "galaxy.jpg", 3)
    return ["galaxy.jpg", "not <GalaxyID>.jpg"]


def _tree_violation(folder, ids):
    def edit(df):
        df.loc[2, "Class1.3"] = repr(float(df.loc[2, "Class1.3"]) + 0.01)
        return df

    rewrite_csv(folder, edit)
    return [f"GalaxyID {ids[2]}", "column Class1.1 + Class1.2 + Class1.3", "Q1 answers differ from 1 by +0.01"]


def _no_label_file(folder, ids):
    (folder / "training_solutions_rev1.csv").rename(folder / "labels.csv")
    return [str(folder), "no label file training_solutions_rev1*.csv (found labels.csv)"]


def _two_label_files(folder, ids):
    (folder / "training_solutions_rev1_partial.csv").write_text("GalaxyID,Class1.1\n")
    return ["several label files", "training_solutions_rev1_partial.csv"]


def _no_images_folder(folder, ids):
    for p in (folder / layout.TRAIN_IMAGES_DIR).iterdir():
        p.unlink()
    (folder / layout.TRAIN_IMAGES_DIR).rmdir()
    return ["no images_training_rev1/ folder"]


BAD_CASES = [
    _misspelled, _unknown, _no_id_column, _non_numeric, _above_one, _negative, _empty_cell, _nan_cell, _bad_id,
    _duplicate_id, _label_without_image, _image_without_label, _empty_jpeg, _truncated_jpeg, _garbage_jpeg,
    _grey_jpeg, _small_jpeg, _badly_named_image, _tree_violation, _no_label_file, _two_label_files,
    _no_images_folder,
]  # fmt: skip


@pytest.mark.parametrize("corrupt", BAD_CASES, ids=lambda f: f.__name__.strip("_"))
def test_check_data_rejects_bad_input(tmp_path, capsys, corrupt):
    folder, ids, _ = make_folder(tmp_path / "bad")
    expected = corrupt(folder, ids)
    rc, out, err = check_data(capsys, folder)
    assert rc == 2, out
    assert err.startswith("error: ")
    for text in expected:
        assert text in err, f"{text!r} not in:\n{err}"
    with pytest.raises(DataError):
        data.load_folders(folder, progress=False)


def test_check_data_accepts_a_clean_folder_and_tol_is_configurable(tmp_path, capsys):
    folder, ids, _ = make_folder(tmp_path / "ok")
    rc, out, _ = check_data(capsys, folder)
    assert rc == 0 and "5 labelled" in out and "valid" in out
    _tree_violation(folder, ids)
    assert check_data(capsys, folder)[0] == 2
    rc, out, _ = check_data(capsys, folder, "--tol", "0.05")
    assert rc == 0 and "max error 0.01" in out


def test_missing_folder(capsys, tmp_path):
    rc, _, err = check_data(capsys, tmp_path / "nope")
    assert rc == 2 and "nope: no such folder" in err


def test_duplicate_id_across_folders(tmp_path, capsys):
    a, ids_a, _ = make_folder(tmp_path / "a", n=3)
    b, ids_b, _ = make_folder(tmp_path / "b", n=3, first_id=int(ids_a[-1]), seed=1)
    shared = int(ids_a[-1])
    assert shared in ids_b
    rc, _, err = check_data(capsys, a, b)
    assert rc == 2
    line = next(line for line in err.splitlines() if f"GalaxyID {shared}" in line)
    assert str(a / "training_solutions_rev1.csv") in line and str(b / "training_solutions_rev1.csv") in line
    both = data.load_folders([a, b], skip_bad=True, progress=False)
    assert shared not in both.ids and len(both) == 4 and [gid for gid, _ in both.skipped] == [shared]


def test_all_problems_are_reported_at_once_and_the_list_is_capped(tmp_path):
    folder, ids, _ = make_folder(tmp_path / "many", n=5)

    def edit(df):
        for col in tree.COLUMNS[10:17]:
            df[col] = "x"  # 7 columns x 5 rows = 35 bad cells
        return df

    rewrite_csv(folder, edit)
    img(folder, ids[0]).unlink()
    with pytest.raises(DataError) as info:
        data.load_folders(folder, progress=False)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("36 problems in the data")
    assert len(lines) == 1 + MAX_LISTED + 1 and lines[-1] == f"  ... and {36 - MAX_LISTED} more"
    assert len(info.value.problems) == 36
    assert any(f"no image images_training_rev1/{ids[0]}.jpg" in str(p) for p in info.value.problems)


# ----------------------------------------------------------------------------------------------------------
# skip_bad


def _corrupt_several(folder: Path, ids: np.ndarray) -> dict[int, str]:
    """Problems on galaxies 0, 1, 2, 4 and an extra image; 3, 5, 6 stay good -> {GalaxyID: text in reason}."""
    set_cell(folder, 0, "Class5.2", "oops")
    img(folder, ids[1]).unlink()
    img(folder, ids[2]).write_bytes(img(folder, ids[2]).read_bytes()[:300])
    _tree_violation(folder, ids)  # row 2 as well: one galaxy, two reasons
    write_jpeg(img(folder, 555555), 5)
    img(folder, ids[4]).write_bytes(b"")
    return {int(ids[0]): "Class5.2", int(ids[1]): "no image", int(ids[2]): "Q1 answers", 555555: "no label row",
            int(ids[4]): "empty file"}  # fmt: skip


def test_skip_bad_skips_and_lists_every_bad_row(tmp_path, capsys):
    folder, ids, df = make_folder(tmp_path / "skip", n=7)
    bad = _corrupt_several(folder, ids)
    with pytest.raises(DataError) as info:
        data.load_folders(folder, progress=False)
    assert all(f"GalaxyID {gid}" in str(info.value) for gid in bad)
    d = data.load_folders(folder, skip_bad=True, progress=False)
    good = [3, 5, 6]
    np.testing.assert_array_equal(d.ids, ids[good])
    np.testing.assert_allclose(d.labels, df[list(tree.COLUMNS)].to_numpy()[good], atol=1e-7)
    assert [gid for gid, _ in d.skipped] == sorted(bad)
    for gid, reason in d.skipped:
        assert bad[gid] in reason
    assert "cannot be decoded" in dict(d.skipped)[int(ids[2])]  # both of its problems are listed
    rc, out, _ = check_data(capsys, folder, "--skip-bad")
    assert rc == 0 and "3 labelled" in out
    for gid in bad:
        assert f"GalaxyID {gid}:" in out


def test_skip_bad_cannot_skip_file_level_problems(tmp_path):
    folder, ids, _ = make_folder(tmp_path / "f")
    _misspelled(folder, ids)
    with pytest.raises(DataError, match="cannot skip"):
        data.load_folders(folder, skip_bad=True, progress=False)


# ----------------------------------------------------------------------------------------------------------
# the paper's split on small data


def test_paper_split_falls_back_without_stratification_on_tiny_data(tmp_path):
    folder, _, _ = make_folder(tmp_path / "s", n=12)
    d = data.load_folders(folder, progress=False)
    d.labels[:, :3] = [1, 0, 0]
    d.labels[6:, :3] = [0, 1, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # two classes of 6: stratifies without a warning
        train, val = data.paper_split(d, test_size=0.25, seed=3)
    assert len(val) == 3 and np.array_equal(np.sort(np.concatenate([train, val])), np.arange(12))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    d.labels[0, :3] = [0, 0, 1]  # a class with one member: sklearn would raise; we warn and split
    with pytest.warns(UserWarning, match="unstratified"):
        train, val = data.paper_split(d)
    assert len(train) + len(val) == 12 and len(val) == 2
    train0, val0 = data.paper_split(d, test_size=0)
    assert len(train0) == 12 and len(val0) == 0


def test_paper_split_refuses_missing_q1(tmp_path):
    folder, _, _ = make_folder(tmp_path / "q", n=4, columns=tree.COLUMNS[3:])
    d = data.load_folders(folder, progress=False)
    with pytest.raises(DataError, match="no Q1 labels"):
        data.paper_split(d)


# ----------------------------------------------------------------------------------------------------------
# the decode-once cache


def direct_decode(path: Path, crop: int, size: int) -> np.ndarray:
    """The recipe written out independently: RGB, centre crop, PIL bilinear resize."""
    im = Image.open(path).convert("RGB")
    off = (im.width - crop) // 2
    return np.asarray(im.crop((off, off, off + crop, off + crop)).resize((size, size), Image.BILINEAR))


def test_cache_equals_direct_decode_is_reused_and_rebuilt_on_change(tmp_path, monkeypatch):
    folder, _, _ = make_folder(tmp_path / "c", n=4)
    paths = data.load_folders(folder, progress=False).image_paths
    cache_dir = tmp_path / "cache"
    arr = data.build_cache(paths, crop=256, size=48, cache_dir=cache_dir, progress=False)
    assert arr.shape == (4, 48, 48, 3) and arr.dtype == np.uint8 and isinstance(arr, np.memmap)
    for k, p in enumerate(paths):
        np.testing.assert_array_equal(arr[k], direct_decode(p, 256, 48))
    (npy,) = cache_dir.glob("*.npy")
    stamp = npy.stat().st_mtime_ns

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache was rebuilt instead of reused")

    with monkeypatch.context() as m:
        m.setattr(data, "load_image", no_decoding)
        again = data.build_cache(paths, crop=256, size=48, cache_dir=cache_dir, progress=False)
    np.testing.assert_array_equal(again, arr)
    assert npy.stat().st_mtime_ns == stamp and len(list(cache_dir.iterdir())) == 1

    write_jpeg(paths[2], 777)  # new content, new mtime: the key changes
    changed = data.build_cache(paths, crop=256, size=48, cache_dir=cache_dir, progress=False)
    assert len(list(cache_dir.glob("*.npy"))) == 2
    np.testing.assert_array_equal(changed[2], direct_decode(paths[2], 256, 48))
    assert not np.array_equal(changed[2], arr[2])
    np.testing.assert_array_equal(changed[[0, 1, 3]], arr[[0, 1, 3]])
    other = data.build_cache(paths, crop=424, size=64, cache_dir=cache_dir, progress=False)
    np.testing.assert_array_equal(other[1], direct_decode(paths[1], 424, 64))


def test_cache_in_parallel_matches_serial(tmp_path):
    folder, _, _ = make_folder(tmp_path / "par", n=6)
    paths = sorted((folder / layout.TRAIN_IMAGES_DIR).glob("*.jpg"))
    serial = data.build_cache(paths, crop=300, size=40, cache_dir=tmp_path / "one", workers=1, progress=False)
    pooled = data.build_cache(paths, crop=300, size=40, cache_dir=tmp_path / "two", workers=2, progress=False)
    np.testing.assert_array_equal(serial, pooled)


def test_cache_build_fails_cleanly_on_a_corrupt_image(tmp_path):
    folder, ids, _ = make_folder(tmp_path / "bad", n=3)
    _truncated_jpeg(folder, ids)
    paths = sorted((folder / layout.TRAIN_IMAGES_DIR).glob("*.jpg"))
    cache_dir = tmp_path / "cache"
    with pytest.raises(DataError, match=rf"{ids[2]}\.jpg: cannot be decoded"):
        data.build_cache(paths, size=32, cache_dir=cache_dir, progress=False)
    assert list(cache_dir.iterdir()) == []  # no half-written cache left to be reused


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GALAXYLIB_CACHE_DIR", str(tmp_path / "x"))
    assert data.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("GALAXYLIB_CACHE_DIR")
    assert data.default_cache_dir() == Path.home() / ".cache" / "galaxylib"


def test_profile_subset_takes_fully_labelled_galaxies_first_and_is_the_plain_choice_otherwise():
    rng = np.random.default_rng(0)
    labels = rng.uniform(size=(50, 37)).astype(np.float32)
    ids = np.arange(1, 51)
    full = data.GalaxyData(ids, [Path(f"{i}.jpg") for i in ids], labels)
    plain = np.sort(np.random.default_rng(1).permutation(50)[:20])
    assert data.profile_subset(full, 20, 1).ids.tolist() == ids[plain].tolist()
    partial = labels.copy()
    partial[10:, 5:] = np.nan  # only the first 10 galaxies carry every column
    mixed = data.GalaxyData(ids, full.image_paths, partial)
    chosen = data.profile_subset(mixed, 20, 1)
    assert set(range(1, 11)) <= set(chosen.ids.tolist()) and len(chosen) == 20


def test_holdout_split_is_a_fixed_choice_of_fully_labelled_galaxies():
    labels = np.random.default_rng(0).uniform(size=(40, 37)).astype(np.float32)
    labels[::2, 20:] = np.nan  # every other galaxy is partial
    ids = np.arange(101, 141)
    galaxies = data.GalaxyData(ids, [Path(f"{i}.jpg") for i in ids], labels)
    rest, held = data.holdout_split(galaxies, 5)
    assert len(held) == 5 and len(rest) == 35 and not set(held.ids) & set(rest.ids)
    assert not np.isnan(held.labels).any()  # all 37 columns
    full_ids = ids[1::2]
    expected = np.sort(full_ids[np.random.default_rng(data.HOLDOUT_SEED).permutation(len(full_ids))[:5]])
    assert held.ids.tolist() == expected.tolist()
    assert data.holdout_split(galaxies, 0)[0] is galaxies
    with pytest.raises(DataError, match="cannot hold out 20"):
        data.holdout_split(galaxies, 20)
