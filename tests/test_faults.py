"""Fault injection: every fault and bad input ends in one line naming the culprit (exit 2), and nothing that was
there before is lost or overwritten.

The run-folder faults (a second writer, a killed writer, changed data, damaged checkpoints, a full disk) and the
bad inputs of check-data, train, predict and score all go through the command line in-process
(`galaxylib.cli.main`); only the lock held by another process needs a subprocess. Runs are the smoke profile
on at most 32 of the 80 synthetic galaxies, one view, one to three epochs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from galaxylib import layout, survey, tree
from galaxylib.cli import main
from galaxylib.training import train_batches

ROOT = Path(__file__).resolve().parents[1]
LABELS = "training_solutions_rev1.csv"
TRAIN = ["train", "--experiment", "baseline", "--profile", "smoke", "--device", "cpu", "--quiet", "--tta", "1",
         "--max-images", "32"]  # fmt: skip
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ----------------------------------------------------------------------------------------------------------
# helpers


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str, *needles: str) -> str:
    """The one error line; every needle must be in it."""
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line and "img/s]" not in line]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def no_temp_files(folder: Path) -> None:
    stray = [p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]
    assert not stray, stray


def train_args(data: Path, out: Path, *extra) -> list:
    return [*TRAIN, "--data-dir", data, "--out", out, *extra]


def write_labels(folder: Path, text: str, name: str = LABELS, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def labels_text(folder: Path) -> str:
    return (folder / LABELS).read_text()


def edit_cell(folder: Path, row: int, column: str, text: str) -> None:
    df = pd.read_csv(folder / LABELS, dtype=str, keep_default_na=False)
    df.loc[row, column] = text
    df.to_csv(folder / LABELS, index=False)


def zero_bytes(path: Path, offset: int, n: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\0" * n)


def try_mount(*args: str) -> bool:
    """mount(8) when this process may (root in a container that allows it); False otherwise."""
    if not IS_ROOT or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def mounted_tmpfs(path: Path, options: str):
    path.mkdir(parents=True, exist_ok=True)
    if not try_mount("-t", "tmpfs", "-o", options, "tmpfs", str(path)):
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder this process cannot write: chmod for a normal user, a read-only tmpfs for root."""
    path = tmp_path / "readonly"
    if not IS_ROOT:
        path.mkdir()
        (path / "kept.csv").write_text("keep me\n")
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    with mounted_tmpfs(path, "size=1m") as ok:
        if not ok:
            pytest.skip("running as root without mount: no read-only folder to test with")
        (path / "kept.csv").write_text("keep me\n")
        assert try_mount("-o", "remount,ro", str(path))
        yield path


# ----------------------------------------------------------------------------------------------------------
# shared data and runs (module scope: trained once)


@pytest.fixture(scope="module")
def data(synth_dir, tmp_path_factory) -> Path:
    """A private copy of the 80 synthetic galaxies (tests that change data copy it again)."""
    out = tmp_path_factory.mktemp("faults") / "gz"
    shutil.copytree(synth_dir, out)
    return out


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory) -> Path:
    """A finished 2-epoch run: last.pt, last.prev.pt, best.pt with their checksums, metrics.json."""
    out = tmp_path_factory.mktemp("runs") / "finished"
    assert main([str(a) for a in train_args(data, out, "--epochs", "2")]) == 0
    return out


@pytest.fixture(scope="module")
def good_submission(finished_run, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("subs") / "good.csv"
    assert main(["predict", "--run", str(finished_run), "--images", str(data), "--out", str(out), "--tta", "1"]) == 0
    return out


@pytest.fixture
def my_data(data, tmp_path) -> Path:
    out = tmp_path / "gz"
    shutil.copytree(data, out)
    return out


@pytest.fixture
def no_compute(monkeypatch):
    """predict must refuse before it computes anything."""

    def refuse(*args, **kwargs):
        raise AssertionError("predict computed before validating its inputs")

    monkeypatch.setattr(survey, "predict_batches", refuse)


# ----------------------------------------------------------------------------------------------------------
# the run folder: one writer


HOLDER = """
import sys, time
from galaxylib.rundir import RunDir
lock = RunDir(sys.argv[1]).lock()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_taken_over(data, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, _, err = cli(capsys, *train_args(data, out))
        assert rc == 2
        one_line_error(err, str(out), "another training is writing this run folder", f"pid {holder.pid}",
                       f"host {socket.gethostname()}")
        assert sorted(p.name for p in out.iterdir()) == ["lock"]  # the refused run wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    (out / ".last.pt.999999.tmp").write_bytes(b"half a checkpoint")  # what a killed writer leaves
    rc, out_text, _ = cli(capsys, *train_args(data, out))
    assert rc == 0
    assert f"took over the lock left by pid {holder.pid}" in out_text
    no_temp_files(out)
    assert not (out / "lock").exists() and (out / "metrics.json").is_file()


def test_two_writers_in_one_process_are_refused_too(data, tmp_path, capsys):
    from galaxylib.rundir import RunDir

    out = tmp_path / "run"
    with RunDir(out).lock():
        rc, _, err = cli(capsys, *train_args(data, out))
        assert rc == 2
        one_line_error(err, "another training is writing", f"pid {os.getpid()}")
    assert not (out / "lock").exists()


# ----------------------------------------------------------------------------------------------------------
# the run folder: the same data


def test_changed_data_refuses_reuse_and_resume_until_retrain(my_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, *train_args(my_data, out, "--max-images", "96"))[0] == 0
    before = snapshot(out)
    # remove 5 galaxies (rows and images): the split would change
    df = pd.read_csv(my_data / LABELS)
    for gid in df["GalaxyID"].iloc[:5]:
        (my_data / layout.TRAIN_IMAGES_DIR / f"{gid}.jpg").unlink()
    df.iloc[5:].to_csv(my_data / LABELS, index=False)
    rc, _, err = cli(capsys, *train_args(my_data, out, "--max-images", "96"))
    assert rc == 2
    one_line_error(err, str(out), "trained on other data", "80 galaxies then, 75 now", "--retrain")
    assert snapshot(out) == before
    rc, _, _ = cli(capsys, *train_args(my_data, out, "--max-images", "96", "--retrain"))
    assert rc == 0 and pd.read_csv(out / "split.csv").shape[0] == 75


def test_a_changed_label_or_touched_image_refuses_resume(my_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, *train_args(my_data, out, "--epochs", "2", "--stop-after-epochs", "1"))[0] == 0
    before = snapshot(out)
    df = pd.read_csv(my_data / LABELS, dtype=str)
    df.iloc[[3, 4], 1:] = df.iloc[[4, 3], 1:].to_numpy()  # two galaxies swap their labels: still a valid file
    df.to_csv(my_data / LABELS, index=False)
    rc, _, err = cli(capsys, *train_args(my_data, out, "--epochs", "2"))
    assert rc == 2
    one_line_error(err, "trained on other data", "the labels differ")
    assert snapshot(out) == before
    image = next((my_data / layout.TRAIN_IMAGES_DIR).iterdir())
    os.utime(image, ns=(1, 1))
    rc, _, err = cli(capsys, *train_args(my_data, out, "--epochs", "2"))
    assert rc == 2
    one_line_error(err, "the labels and images (path, size or modification time) differ")


# ----------------------------------------------------------------------------------------------------------
# the run folder: verified checkpoints


def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(data, tmp_path, capsys):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert cli(capsys, *train_args(data, whole, "--epochs", "3"))[0] == 0
    assert cli(capsys, *train_args(data, split, "--epochs", "3", "--stop-after-epochs", "2"))[0] == 0
    assert (split / "last.prev.pt").is_file()
    zero_bytes(split / "last.pt", 4096, 65536)  # 64 KB of the checkpoint zeroed
    rc, out, _ = cli(capsys, *train_args(data, split, "--epochs", "3"))
    assert rc == 0
    assert f"{split / 'last.pt'} is damaged (its sha256 differs from the one in last.pt.sha256)" in out
    assert "resuming from last.prev.pt (epoch 1) instead" in out
    a = torch.load(whole / "last.pt", weights_only=False)["model"]
    b = torch.load(split / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a), "the fallback did not give the uninterrupted result"


def test_a_last_checkpoint_lost_while_saving_falls_back_to_the_previous_one(finished_run, data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    for name in ("metrics.json", "last.pt", "last.pt.sha256"):  # killed between moving last.pt aside and renaming
        (run / name).unlink()
    rc, out, _ = cli(capsys, *train_args(data, run, "--epochs", "2"))
    assert rc == 0
    assert f"{run / 'last.pt'} is missing (the run was stopped while saving it)" in out
    assert "resuming from last.prev.pt (epoch 1) instead" in out
    assert (run / "metrics.json").is_file() and len(pd.read_csv(run / "history.csv")) == 2


def test_a_damaged_checkpoint_without_a_good_one_before_it_is_refused(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, *train_args(data, out, "--epochs", "2", "--stop-after-epochs", "1"))[0] == 0
    zero_bytes(out / "last.pt", 4096, 65536)
    before = snapshot(out)
    rc, _, err = cli(capsys, *train_args(data, out, "--epochs", "2"))
    assert rc == 2
    one_line_error(err, f"{out / 'last.pt'} is damaged", "no good earlier checkpoint", "--retrain")
    assert snapshot(out) == before  # the damaged file is kept for the user to look at


def test_predict_refuses_a_damaged_best_checkpoint(finished_run, data, tmp_path, capsys, no_compute):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    zero_bytes(run / "best.pt", 1000, 100)
    rc, _, err = cli(capsys, "predict", "--run", run, "--images", data, "--out", tmp_path / "p.csv")
    assert rc == 2
    one_line_error(err, f"{run / 'best.pt'} is damaged", "--checkpoint last")
    assert not (tmp_path / "p.csv").exists()


def test_a_checkpoint_of_other_settings_in_the_folder_is_refused(finished_run, data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "metrics.json").unlink()  # an interrupted run ...
    state = torch.load(run / "last.pt", weights_only=False)
    state["config"]["lr"] = 0.5  # ... whose last.pt another writer made
    torch.save(state, run / "last.pt")
    (run / "last.pt.sha256").unlink()
    rc, _, err = cli(capsys, *train_args(data, run, "--epochs", "2"))
    assert rc == 2
    one_line_error(err, "last.pt was written by a run with other settings", "mixes two runs")


@pytest.mark.parametrize("name, content, needle", [
    ("config.json", b"{not json", "config.json: unreadable"),
    ("config.json", b"\xff\xfe\x00", "config.json: unreadable"),
    ("metrics.json", b"[1, 2]", "metrics.json: unreadable (not a JSON object)"),
])  # fmt: skip
def test_unreadable_run_files_are_named(finished_run, data, tmp_path, capsys, name, content, needle):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / name).write_bytes(content)
    rc, _, err = cli(capsys, *train_args(data, run, "--epochs", "2"))
    assert rc == 2
    one_line_error(err, str(run / name), needle)


def test_an_unreadable_split_is_named_by_predict(finished_run, data, tmp_path, capsys, no_compute):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "split.csv").write_text("GalaxyID,part\nabc,val\n")
    rc, _, err = cli(capsys, "predict", "--run", run, "--images", data, "--out", tmp_path / "p.csv",
                     "--split", "val")
    assert rc == 2
    one_line_error(err, str(run / "split.csv"), "unreadable")


# ----------------------------------------------------------------------------------------------------------
# the run folder: a full disk


@pytest.fixture(params=["tmpfs", "simulated"])
def small_disk(request, tmp_path, monkeypatch):
    """(folder, make_room): a real 1 MB tmpfs (where root may mount one), or a simulated ENOSPC from torch.save."""
    folder = tmp_path / "small"
    if request.param == "tmpfs":
        with mounted_tmpfs(folder, "size=1m") as mounted:
            if not mounted:
                pytest.skip("no permission to mount a small tmpfs; the simulated case covers the code path")
            yield folder, lambda: try_mount("-o", "remount,size=256m", str(folder))
        return
    folder.mkdir()
    real_save = torch.save


    def full(obj, f, *args, **kwargs):  # what a full disk does to a writer that reports the errno
        Path(f).write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", full)
    yield folder, lambda: monkeypatch.setattr(torch, "save", real_save) or True


def test_a_full_disk_gives_one_line_leaves_no_temp_file_and_the_rerun_works(data, small_disk, capsys):
    folder, make_room = small_disk
    out = folder / "run"
    rc, _, err = cli(capsys, *train_args(data, out))
    assert rc == 2
    one_line_error(err, str(out / "best.pt"), "the disk is full", "free in", "run the same command again")
    no_temp_files(folder)
    assert not (out / "best.pt").exists() and not (out / "lock").exists()
    assert make_room()
    rc, _, _ = cli(capsys, *train_args(data, out))
    assert rc == 0 and (out / "metrics.json").is_file()
    no_temp_files(folder)


# ----------------------------------------------------------------------------------------------------------
# any data size against any batch size


def test_a_last_batch_of_one_is_folded_into_the_one_before():
    assert train_batches(17, 16) == [(0, 17)]
    assert train_batches(33, 16) == [(0, 16), (16, 33)]
    assert train_batches(35, 16, world_size=2) == [(0, 16), (16, 35)]  # 3 images cannot give 2 ranks 2 each
    # every other remainder is its own batch, as before: the quick and smoke profiles train as they did
    assert train_batches(1350, 32)[-1] == (1344, 1350) and len(train_batches(1350, 32)) == 43
    assert train_batches(72, 16)[-1] == (64, 72)
    assert train_batches(10, 16) == [(0, 10)]
    for n in range(2, 60):
        steps = train_batches(n, 8)
        assert steps[0][0] == 0 and steps[-1][1] == n and all(b - a >= 2 for a, b in steps)


def test_a_training_set_of_one_modulo_the_batch_size_trains(data, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = cli(capsys, *train_args(data, out, "--max-images", "19"))  # 17 train = 16 + 1, 2 val
    assert rc == 0, err
    split = pd.read_csv(out / "split.csv")
    assert (split["part"] == "train").sum() == 17


@pytest.mark.parametrize("n", ["1", "2"])
def test_too_few_galaxies_to_train_is_one_line(data, tmp_path, capsys, n):
    rc, _, err = cli(capsys, *train_args(data, tmp_path / "run", "--max-images", n))
    assert rc == 2
    one_line_error(err, f"{n} labelled galaxies (--max-images {n}) are too few", "at least 2 to train on")


def test_divergence_in_the_first_epoch_cites_no_checkpoint(data, tmp_path, capsys):
    rc, _, err = cli(capsys, *train_args(data, tmp_path / "run", "--lr", "1e30"))
    assert rc == 2
    one_line_error(err, "epoch 1: the loss became", "no checkpoint was written")
    assert not (tmp_path / "run" / "last.pt").exists()


# ----------------------------------------------------------------------------------------------------------
# predict: validate first, never replace a good file with a bad one


def test_an_invalid_submission_never_replaces_a_good_file(finished_run, data, good_submission, tmp_path,
                                                          capsys, monkeypatch):  # fmt: skip
    out = tmp_path / "sub.csv"
    shutil.copy(good_submission, out)
    good = out.read_bytes()

    def nan_model(model, batches, **kwargs):
        for batch in batches:
            preds = np.full((len(batch), tree.NUM_OUTPUTS), 0.5)
            preds[min(3, len(batch) - 1), 7] = np.nan
            yield preds

    monkeypatch.setattr(survey, "predict_batches", nan_model)
    rc, _, err = cli(capsys, "predict", "--run", finished_run, "--images", data, "--out", out)
    assert rc == 2
    one_line_error(err, str(out), "1 predictions are not finite", f"column {tree.COLUMNS[7]}: nan")
    assert out.read_bytes() == good
    no_temp_files(tmp_path)


def test_predictions_outside_0_1_never_replace_a_good_file(finished_run, data, good_submission, tmp_path,
                                                             capsys, monkeypatch):  # fmt: skip
    out = tmp_path / "sub.csv"
    shutil.copy(good_submission, out)
    monkeypatch.setattr(survey, "predict_batches",
                        lambda model, batches, **kw: (np.full((len(b), 37), 1.5) for b in batches))
    rc, _, err = cli(capsys, "predict", "--run", finished_run, "--images", data, "--out", out)
    assert rc == 2 and f"{out}: GalaxyID" in err and "'1.500000' is not a number in [0, 1]" in err
    assert out.read_bytes() == good_submission.read_bytes()
    no_temp_files(tmp_path)


def test_overlapping_image_folders_are_refused_before_compute(finished_run, data, good_submission, tmp_path,
                                                              capsys, no_compute):  # fmt: skip
    out = tmp_path / "sub.csv"
    shutil.copy(good_submission, out)
    rc, _, err = cli(capsys, "predict", "--run", finished_run, "--images", data, data / layout.TRAIN_IMAGES_DIR,
                     "--out", out)
    assert rc == 2 and "images share an ID with another image" in err and "also names" in err
    assert out.read_bytes() == good_submission.read_bytes()


@pytest.mark.parametrize("where, needle", [
    ("folder", "--out is a folder"),
    ("under_file", "which is a file, not a folder"),
    ("readonly", "is not writable"),
])  # fmt: skip
def test_an_unwritable_out_is_refused_before_compute(finished_run, data, tmp_path, capsys, no_compute,
                                                      request, where, needle):  # fmt: skip
    if where == "folder":
        out = tmp_path
    elif where == "under_file":
        (tmp_path / "a_file").write_text("x")
        out = tmp_path / "a_file" / "sub.csv"
    else:
        out = request.getfixturevalue("readonly_dir") / "sub.csv"
    rc, _, err = cli(capsys, "predict", "--run", finished_run, "--images", data, "--out", out)
    assert rc == 2
    one_line_error(err, str(out), needle)


def test_a_read_only_existing_submission_is_kept(finished_run, data, readonly_dir, capsys, no_compute):
    out = readonly_dir / "kept.csv"
    rc, _, err = cli(capsys, "predict", "--run", finished_run, "--images", data, "--out", out)
    assert rc == 2
    one_line_error(err, str(out), "not writable")
    assert out.read_text() == "keep me\n"


# ----------------------------------------------------------------------------------------------------------
# score: both files validated


@pytest.fixture
def truth(data, tmp_path) -> Path:
    out = tmp_path / "truth.csv"
    shutil.copy(data / LABELS, out)
    return out


def _edit(path: Path, edit) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(df).to_csv(path, index=False)


def _cell(row: int, column: str, text: str):
    def edit(df):
        df.loc[row, column] = text
        return df

    return edit


TRUTH_CASES = {
    "misspelled_column": (lambda df: df.rename(columns={"Class2.1": "Clas2.1"}),
                          ["column Clas2.1", "unknown column", "did you mean 'Class2.1'"]),
    "value_7": (_cell(4, "Class7.2", "7.0"), ["column Class7.2", "value 7 outside [0, 1]"]),
    "duplicate_id": (lambda df: df.assign(GalaxyID=[*df.GalaxyID[:-1], df.GalaxyID.iloc[0]]),
                     ["duplicate GalaxyID (data rows 1, 80)"]),
    "in_two_files": (None, ["GalaxyID found in more than one label file"]),
    "text_cell": (_cell(2, "Class1.1", "lots"), ["column Class1.1", "non-numeric value 'lots'"]),
    "header_only": (lambda df: df.iloc[:0], ["has a header but no data rows"]),
    "nan_cell": (_cell(0, "Class3.1", "nan"), ["column Class3.1", "NaN value"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TRUTH_CASES))
def test_score_validates_the_truth_file(good_submission, truth, capsys, case):
    edit, needles = TRUTH_CASES[case]
    truths = [truth]
    if edit is None:  # the same galaxies in a second label file
        truths.append(truth.with_name("other.csv"))
        shutil.copy(truth, truths[1])
    else:
        _edit(truth, edit)
    rc, out, err = cli(capsys, "score", "--pred", good_submission, "--truth", *truths)
    assert rc == 2 and "RMSE" not in out
    for needle in [str(truth), *needles]:
        assert needle in err, f"{needle!r} not in {err}"
    assert len(err.splitlines()) == 2, err  # the header line and the one problem


def _pred_text(good: Path, edit_text) -> str:
    return edit_text(good.read_text())


def _replace_line(n: int, edit):
    def f(text):
        lines = text.splitlines(keepends=True)
        lines[n] = edit(lines[n])
        return "".join(lines)

    return f


def _cell_text(row: int, col: int, value: str):
    def edit(line):
        cells = line.rstrip("\n").split(",")
        cells[col] = value
        return ",".join(cells) + "\n"

    return _replace_line(row, edit)


PRED_CASES = {
    "header_only": (lambda t: t.splitlines(keepends=True)[0], ["has a header but no rows"]),
    "empty_file": (lambda t: "", ["is empty (no header line)"]),
    "nan_value": (_cell_text(2, 5, "nan"), ["column Class2.2", "'nan' is not a number in [0, 1]"]),
    "inf_value": (_cell_text(2, 5, "inf"), ["column Class2.2", "'inf' is not a number in [0, 1]"]),
    "negative_value": (_cell_text(1, 1, "-0.1"), ["column Class1.1", "'-0.1' is not a number in [0, 1]"]),
    "value_7": (_cell_text(1, 1, "7.0"), ["column Class1.1", "'7.0' is not a number in [0, 1]"]),
    "huge_value": (_cell_text(1, 1, "1e400"), ["'1e400' is not a number in [0, 1]"]),
    "text_id": (_cell_text(3, 0, "galaxy"), ["row 3: GalaxyID 'galaxy' is not a whole number"]),
    "negative_id": (_cell_text(3, 0, "-5"), ["GalaxyID '-5' is not a whole number"]),
    "duplicate_id": (lambda t: t + t.splitlines(keepends=True)[1], ["appears more than once"]),
    "extra_field": (_replace_line(2, lambda line: line.rstrip("\n") + ",0.5\n"),
                    ["data row 2 (line 3) has 39 fields, the header 38"]),
    "short_row": (_replace_line(2, lambda line: ",".join(line.split(",")[:30]) + "\n"),
                  ["column Class10.2: '' is not a number in [0, 1]"]),
    "missing_column": (lambda t: "\n".join(",".join(line.split(",")[:-1]) for line in t.splitlines()) + "\n",
                       ["missing Class11.6"]),
    "duplicate_column": (_replace_line(0, lambda line: line.replace("Class1.2", "Class1.1")),
                         ["missing Class1.2", "twice: Class1.1"]),
    "semicolons": (lambda t: t.replace(",", ";"), ["fields are separated by ';', not by commas"]),
    "tabs": (lambda t: t.replace(",", "\t"), ["fields are separated by '\\t', not by commas"]),
    "latin1_header": (lambda t: t.replace("Class1.1", "Cläss1.1"), ["not a readable CSV"]),
    "unknown_galaxy": (_cell_text(1, 0, "999999999"), ["1 GalaxyIDs have no label row, e.g. 999999999"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(PRED_CASES))
def test_score_validates_the_submission(good_submission, truth, tmp_path, capsys, case):
    edit, needles = PRED_CASES[case]
    pred = tmp_path / "pred.csv"
    text = edit(good_submission.read_text())
    pred.write_bytes(text.encode("latin-1" if case == "latin1_header" else "utf-8"))
    before = snapshot(tmp_path)
    rc, out, err = cli(capsys, "score", "--pred", pred, "--truth", truth)
    assert snapshot(tmp_path) == before
    assert rc == 2 and "RMSE" not in out
    for needle in [str(pred), *needles]:
        assert needle in err, f"{needle!r} not in {err}"


@pytest.mark.parametrize("variant", ["bom", "crlf", "kaggle_id_spelling", "spaces"])
def test_score_accepts_harmless_variants_of_a_submission(good_submission, truth, tmp_path, capsys, variant):
    text = good_submission.read_text()
    base = cli(capsys, "score", "--pred", good_submission, "--truth", truth)[1]
    text = {"bom": "\ufeff" + text, "crlf": text.replace("\n", "\r\n"),
            "kaggle_id_spelling": text.replace("GalaxyID", "GalaxyId", 1),
            "spaces": text.replace(",", ", ")}[variant]  # fmt: skip
    pred = tmp_path / "pred.csv"
    pred.write_bytes(text.encode())
    rc, out, err = cli(capsys, "score", "--pred", pred, "--truth", truth)
    assert rc == 0, err
    assert out == base


def test_score_of_a_valid_submission_is_the_exact_rmse(good_submission, truth, capsys):
    from galaxylib.metrics import rmse

    pred = pd.read_csv(good_submission).set_index("GalaxyID")
    labels = pd.read_csv(truth).set_index("GalaxyID").loc[pred.index]
    rc, out, _ = cli(capsys, "score", "--pred", good_submission, "--truth", truth)
    assert rc == 0
    assert f"RMSE over all labelled entries: {rmse(pred.to_numpy(), labels.to_numpy()):.5f}" in out


def test_score_refuses_missing_or_folder_inputs(good_submission, truth, tmp_path, capsys):
    rc, _, err = cli(capsys, "score", "--pred", tmp_path / "nope.csv", "--truth", truth)
    assert rc == 2
    one_line_error(err, "nope.csv: no such submission file")
    rc, _, err = cli(capsys, "score", "--pred", tmp_path, "--truth", truth)
    assert rc == 2
    one_line_error(err, f"{tmp_path}: is a folder, not a submission file")
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(capsys, "score", "--pred", good_submission, "--truth", tmp_path / "empty")
    assert rc == 2 and "no label file training_solutions_rev1*.csv" in err


# ----------------------------------------------------------------------------------------------------------
# every option range-checked when parsed


BAD_OPTIONS = [
    (["train", "--lr", "nan"], "argument --lr: must be a finite number > 0, got 'nan'"),
    (["train", "--lr", "-1"], "argument --lr: must be a finite number > 0, got '-1'"),
    (["train", "--lr", "inf"], "argument --lr: must be a finite number > 0, got 'inf'"),
    (["train", "--lr", "fast"], "argument --lr: must be a finite number > 0, got 'fast'"),
    (["train", "--epochs", "0"], "argument --epochs: must be a whole number >= 1, got '0'"),
    (["train", "--epochs", "1.5"], "argument --epochs: must be a whole number >= 1, got '1.5'"),
    (["train", "--epochs", "1e400"], "argument --epochs: must be a whole number >= 1, got '1e400'"),
    (["train", "--lr", "1e400"], "argument --lr: must be a finite number > 0, got '1e400'"),
    (["train", "--batch-size", "-4"], "argument --batch-size: must be a whole number >= 1, got '-4'"),
    (["train", "--max-images", "0"], "argument --max-images: must be a whole number >= 1, got '0'"),
    (["train", "--img-size", "0"], "argument --img-size: must be a whole number >= 1, got '0'"),
    (["train", "--tta", "-3"], "argument --tta: must be a whole number >= 1, got '-3'"),
    (["train", "--stop-after-epochs", "-1"], "argument --stop-after-epochs: must be a whole number >= 1"),
    (["train", "--head", "wide"], "argument --head: invalid choice: 'wide'"),
    (["predict", "--batch-size", "0"], "argument --batch-size: must be a whole number >= 1, got '0'"),
    (["predict", "--tta", "0"], "argument --tta: must be a whole number >= 1, got '0'"),
    (["check-data", "--tol", "-0.1"], "argument --tol: must be a finite number >= 0, got '-0.1'"),
    (["check-data", "--tol", "nan"], "argument --tol: must be a finite number >= 0, got 'nan'"),
    (["synth", "--n", "0"], "argument --n: must be a whole number >= 1, got '0'"),
    (["synth", "--seed", "-1"], "argument --seed: must be a whole number >= 0, got '-1'"),
    (["reproduce", "--retrain", "maybe"], "unrecognized arguments: maybe"),
    (["train", "--no-such-option"], "unrecognized arguments: --no-such-option"),
]  # fmt: skip


@pytest.mark.parametrize("argv, needle", BAD_OPTIONS, ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_every_option_is_range_checked_when_parsed(tmp_path, capsys, argv, needle):
    command, *bad = argv
    required = {
        "train": ["--experiment", "baseline", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")],
        "predict": ["--run", str(tmp_path), "--images", str(tmp_path), "--out", str(tmp_path / "p.csv")],
        "check-data": [str(tmp_path)], "synth": ["--n", "5", "--out", str(tmp_path / "s")], "reproduce": [],
    }[command]  # fmt: skip
    rc, _, err = cli(capsys, command, *required, *bad)
    assert rc == 2
    one_line_error(err, needle, "python -m galaxylib", "--help")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was written


def test_settings_from_python_are_checked_too(data, tmp_path):
    from galaxylib.errors import UserError
    from galaxylib.experiments import resolve
    from galaxylib.training import train

    for bad, needle in (({"lr": float("nan")}, "lr must be a finite number > 0"),
                        ({"epochs": 0}, "epochs must be a whole number >= 1"),
                        ({"max_images": 0}, "max_images must be a whole number >= 1")):  # fmt: skip
        cfg = resolve("baseline", "smoke", data_dirs=[str(data)], device="cpu").replace(**bad)
        with pytest.raises(UserError, match=needle):
            train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------------------
# check-data: odd data folders


def jpeg(path: Path, size=(424, 424), mode="RGB", fmt="JPEG") -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize(size)
    img.convert(mode).save(path, format=fmt)


def _first_image(folder: Path) -> Path:
    return sorted((folder / layout.TRAIN_IMAGES_DIR).iterdir())[0]


def _header_only(f):
    write_labels(f, labels_text(f).splitlines(keepends=True)[0])
    shutil.rmtree(f / layout.TRAIN_IMAGES_DIR)
    (f / layout.TRAIN_IMAGES_DIR).mkdir()
    return [LABELS, "has a header but no data rows"]


def _extra_field(f):
    lines = labels_text(f).splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\n") + ",0.5\n"
    write_labels(f, "".join(lines))
    return [LABELS, "data row 3 (line 4) has 39 fields, the header 38"]


def _extra_field_first_row(f):
    lines = labels_text(f).splitlines(keepends=True)
    lines[1] = lines[1].rstrip("\n") + ",0.5\n"
    write_labels(f, "".join(lines))
    return [LABELS, "data row 1 (line 2) has 39 fields"]


def _semicolons(f):
    write_labels(f, labels_text(f).replace(",", ";"))
    return [LABELS, "fields are separated by ';', not by commas"]


def _tabs(f):
    write_labels(f, labels_text(f).replace(",", "\t"))
    return [LABELS, "fields are separated by '\\t'"]


def _latin1(f):
    write_labels(f, labels_text(f).replace("0.5", "0,5é", 1), encoding="latin-1")
    return [LABELS, "cannot be"]


def _utf16(f):
    write_labels(f, labels_text(f), encoding="utf-16")
    return [LABELS, "cannot be read"]


def _empty_label_file(f):
    write_labels(f, "")
    return [LABELS, "is empty (no header line)"]


def _duplicate_column(f):
    write_labels(f, labels_text(f).replace("Class1.2", "Class1.1", 1))
    return [LABELS, "column Class1.1", "column appears twice in the header"]


def _trailing_comma(f):
    write_labels(f, "".join(line.rstrip("\n") + ",\n" for line in labels_text(f).splitlines(keepends=True)))
    return [LABELS, "column #39 (empty name)", "unknown column"]


def _inf_value(f):
    edit_cell(f, 2, "Class4.1", "inf")
    return ["column Class4.1", "value inf outside [0, 1]"]


def _minus_inf(f):
    edit_cell(f, 2, "Class4.1", "-inf")
    return ["column Class4.1", "value -inf outside [0, 1]"]


def _huge_value(f):
    edit_cell(f, 2, "Class4.1", "1e308")
    return ["column Class4.1", "value 1e+308 outside [0, 1]"]


def _huge_id(f):
    edit_cell(f, 2, "GalaxyID", "123456789012345678901234")
    return [LABELS, "data row 3", "'123456789012345678901234' is not a whole number of at most 18 digits"]


def _fraction_id(f):
    edit_cell(f, 2, "GalaxyID", "1.5")
    return [LABELS, "data row 3", "'1.5' is not a whole number"]


def _label_file_is_a_folder(f):
    (f / LABELS).unlink()
    (f / LABELS).mkdir()
    return [LABELS, "cannot be read"]


def _images_folder_is_a_file(f):
    shutil.rmtree(f / layout.TRAIN_IMAGES_DIR)
    (f / layout.TRAIN_IMAGES_DIR).write_text("not a folder")
    return ["no images_training_rev1/ folder"]


def _broken_symlink(f):
    image = _first_image(f)
    image.unlink()
    image.symlink_to(f / "nowhere.jpg")
    return [image.name, "broken link (its target does not exist)"]


def _png_named_jpg(f):
    jpeg(_first_image(f), fmt="PNG", size=(100, 100))
    return [_first_image(f).name, "image is 100x100, expected 424x424"]


def _cmyk_jpeg(f):
    jpeg(_first_image(f), mode="CMYK")
    return [_first_image(f).name, "mode is CMYK, expected RGB"]


def _one_pixel_short(f):
    jpeg(_first_image(f), size=(424, 423))
    return [_first_image(f).name, "image is 424x423, expected 424x424"]


def _huge_image(f):
    jpeg(_first_image(f), size=(4000, 4000))
    return [_first_image(f).name, "image is 4000x4000"]


BAD_FOLDERS = [
    _header_only, _extra_field, _extra_field_first_row, _semicolons, _tabs, _latin1, _utf16, _empty_label_file,
    _duplicate_column, _trailing_comma, _inf_value, _minus_inf, _huge_value, _huge_id, _fraction_id,
    _label_file_is_a_folder, _images_folder_is_a_file, _broken_symlink, _png_named_jpg, _cmyk_jpeg,
    _one_pixel_short, _huge_image,
]  # fmt: skip


@pytest.mark.parametrize("corrupt", BAD_FOLDERS, ids=lambda f: f.__name__.strip("_"))
def test_check_data_refuses_odd_folders(my_data, capsys, corrupt):
    needles = corrupt(my_data)
    before = snapshot(my_data)
    rc, out, err = cli(capsys, "check-data", my_data)
    assert rc == 2, out
    problem_lines = [line for line in err.splitlines()[1:] if all(n in line for n in needles)]
    assert problem_lines, f"no line with {needles} in:\n{err}"
    assert len(err.splitlines()) <= 3, err  # the file's problem, not a cascade of every image without a label
    assert snapshot(my_data) == before


@pytest.mark.parametrize("variant", ["bom", "crlf", "symlinked_image", "uppercase_extension", "blank_line"])
def test_check_data_accepts_harmless_variants(my_data, capsys, variant):
    if variant == "bom":
        write_labels(my_data, "\ufeff" + labels_text(my_data))
    elif variant == "crlf":
        write_labels(my_data, labels_text(my_data).replace("\n", "\r\n"))
    elif variant == "symlinked_image":
        image = _first_image(my_data)
        target = my_data / "elsewhere.jpg"
        image.rename(target)
        image.symlink_to(target)
    elif variant == "uppercase_extension":
        image = _first_image(my_data)
        image.rename(image.with_suffix(".JPG"))
    else:
        write_labels(my_data, labels_text(my_data) + "\n")
    rc, out, err = cli(capsys, "check-data", my_data)
    assert rc == 0, err
    assert "80 labelled" in out


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their permissions")
def test_check_data_names_an_unreadable_label_file(my_data, capsys):
    (my_data / LABELS).chmod(0o000)
    try:
        rc, _, err = cli(capsys, "check-data", my_data)
    finally:
        (my_data / LABELS).chmod(0o644)
    assert rc == 2 and LABELS in err and "cannot be read" in err


# ----------------------------------------------------------------------------------------------------------
# train and predict: odd places


def test_train_refuses_odd_out_and_data_paths(data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    cases = [
        (train_args(data, tmp_path / "file"), [f"{tmp_path / 'file'}: --out is a file, not a run folder"]),
        (train_args(data, tmp_path / "file" / "run"), ["cannot be used as a run folder", "Not a directory"]),
        (train_args(tmp_path / "file", tmp_path / "run"), ["no such data folder"]),
        (train_args(data / layout.TRAIN_IMAGES_DIR, tmp_path / "run"), ["no label file"]),
        (train_args(data, tmp_path / "run", "--img-size", "17"), ["img_size must be a positive multiple of 16"]),
        (train_args(data, tmp_path / "run", "--device", "gpu"), ["--device: must be auto, cpu, cuda or cuda:N"]),
    ]  # fmt: skip
    for argv, needles in cases:
        rc, _, err = cli(capsys, *argv)
        assert rc == 2, argv
        assert all(n in err for n in needles), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_predict_refuses_odd_inputs_before_compute(finished_run, data, tmp_path, capsys, no_compute):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "p.csv"
    bad_image = tmp_path / "bad"
    bad_image.mkdir()
    (bad_image / "123.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cases = [
        (["--run", tmp_path / "empty", "--images", data], "not a run folder (no config.json)"),
        (["--run", tmp_path / "nope", "--images", data], "no such run folder"),
        (["--run", finished_run, "--images", tmp_path / "empty"], "no images"),
        (["--run", finished_run, "--images", tmp_path / "nope"], "no such image folder"),
        (["--run", finished_run, "--images", bad_image], "123.jpg: cannot be decoded"),
    ]  # fmt: skip
    for argv, needle in cases:
        rc, _, err = cli(capsys, "predict", *argv, "--out", out)
        assert rc == 2 and needle in err, err
    assert not out.exists()
