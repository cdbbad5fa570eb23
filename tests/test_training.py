"""The training loop: run folders, resume equivalence, reuse, NaN handling, partial labels, precision, CLI errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from galaxylib import training as gtrain
from galaxylib.augment import TrainAugment
from galaxylib.cli import main
from galaxylib.errors import UserError
from galaxylib.experiments import resolve

ROOT = Path(__file__).resolve().parents[1]


def _cfg(data_dir, **kw):
    base = dict(data_dirs=[str(data_dir)], device="cpu", tta=4, max_images=64)
    base.update(kw)
    return resolve("baseline", "smoke", **base)


def _weights(run: Path) -> dict:
    return torch.load(run / "last.pt", map_location="cpu", weights_only=False)["model"]


def test_run_folder_and_metrics(synth_dir, tmp_path):
    cfg = _cfg(synth_dir, epochs=2)
    metrics = gtrain.train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "history.csv", "last.pt", "best.pt", "metrics.json", "val_predictions.csv",
                 "val_predictions_1view.csv", "split.csv"):
        assert (run / name).is_file(), name
    hist = pd.read_csv(run / "history.csv")
    assert list(hist["epoch"]) == [1, 2]
    assert np.allclose(hist["train_rmse"] ** 2, hist["train_loss"])
    assert hist["lr"].iloc[0] == pytest.approx(1e-4) and hist["lr"].iloc[1] < 1e-4  # cosine, stepped per epoch
    assert metrics["data_source"] == "synthetic" and metrics["n_train"] + metrics["n_val"] == 64
    assert metrics["val_rmse"] == pytest.approx(hist["val_rmse"].iloc[-1], rel=1e-5)  # same model, same views
    split = pd.read_csv(run / "split.csv")
    assert (split["part"] == "val").sum() == metrics["n_val"]
    preds = pd.read_csv(run / "val_predictions.csv")
    assert len(preds) == metrics["n_val"] and preds.iloc[:, 1:].to_numpy().min() >= 0
    assert json.loads((run / "config.json").read_text())["run_name"] == cfg.run_name()
    # one view is the last epoch's validation pass, predicted again and kept per galaxy
    assert metrics["val_rmse_1view"] == pytest.approx(metrics["val_rmse"], rel=1e-5)
    assert metrics["seed"] == 1 and metrics["split_seed"] == 1 and 0.01 < metrics["noise_floor"] < 0.1


def test_seeds_change_the_training_but_never_the_split(synth_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--experiment", "baseline", "--profile", "smoke", "--data-dir", str(synth_dir),
                 "--out", str(out), "--device", "cpu", "--max-images", "64", "--tta", "2", "--seeds", "1", "2",
                 "--quiet"]) == 0  # fmt: skip
    assert "over 2 seeds" in capsys.readouterr().out
    one, two = (json.loads((out / f"seed{k}" / "metrics.json").read_text()) for k in (1, 2))
    assert (one["seed"], two["seed"]) == (1, 2) and one["run_name"] != two["run_name"]
    split = [pd.read_csv(out / f"seed{k}" / "split.csv") for k in (1, 2)]
    assert split[0].equals(split[1])  # the same galaxies in the same parts
    a, b = _weights(out / "seed1"), _weights(out / "seed2")
    assert any(not torch.equal(a[k], b[k]) for k in a)  # another initialisation, batch order and augmentation
    assert one["val_rmse"] != two["val_rmse"]


def test_held_out_galaxies_are_never_trained_or_validated_on(synth_dir, tmp_path):
    from galaxylib import data

    cfg = _cfg(synth_dir, holdout=10, max_images=None)
    metrics = gtrain.train(cfg, tmp_path / "run", progress=False)
    held = data.holdout_split(data.load_folders([synth_dir], progress=False), 10)[1]
    split = pd.read_csv(tmp_path / "run" / "split.csv")
    assert len(held) == 10 and not set(held.ids) & set(split["GalaxyID"])
    assert metrics["n_train"] + metrics["n_val"] == 70 and metrics["holdout"] == 10


def test_resume_gives_the_same_result_as_an_uninterrupted_run(synth_dir, tmp_path):
    cfg = _cfg(synth_dir, epochs=3)
    gtrain.train(cfg, tmp_path / "whole", progress=False)
    part = gtrain.train(cfg, tmp_path / "split", progress=False, stop_after_epochs=1)
    assert part == {"finished": False, "epoch": 1}
    assert not (tmp_path / "split" / "metrics.json").exists()
    gtrain.train(cfg, tmp_path / "split", progress=False, stop_after_epochs=1)
    gtrain.train(cfg, tmp_path / "split", progress=False)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = pd.read_csv(tmp_path / "whole" / "history.csv"), pd.read_csv(tmp_path / "split" / "history.csv")
    cols = ["train_loss", "val_loss", "lr"]
    assert np.array_equal(ha[cols].to_numpy(), hb[cols].to_numpy())


def test_finished_run_is_reused_and_other_settings_are_refused(synth_dir, tmp_path):
    cfg = _cfg(synth_dir)
    first = gtrain.train(cfg, tmp_path / "run", progress=False)
    stamp = (tmp_path / "run" / "last.pt").stat().st_mtime_ns
    assert gtrain.train(cfg, tmp_path / "run", progress=False) == first
    assert (tmp_path / "run" / "last.pt").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="other settings"):
        gtrain.train(_cfg(synth_dir, lr=3e-4), tmp_path / "run", progress=False)
    gtrain.train(_cfg(synth_dir, lr=3e-4), tmp_path / "run", progress=False, retrain=True)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 3e-4


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(synth_dir, tmp_path, monkeypatch):
    cfg = _cfg(synth_dir, epochs=3)
    steps_per_epoch = -(-int(0.9 * 64) // cfg.batch_size)
    calls = {"n": 0}
    real = TrainAugment.apply

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        x = real(self, *args, **kwargs)
        return x * float("nan") if calls["n"] > steps_per_epoch else x  # from epoch 2 on

    monkeypatch.setattr(TrainAugment, "apply", poisoned)
    with pytest.raises(gtrain.TrainingDiverged, match="NaN"):
        gtrain.train(cfg, tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_partial_labels_are_masked(sample_dir, tmp_path):
    cfg = resolve("baseline", "smoke", data_dirs=[str(sample_dir / "extra_partial")], device="cpu", tta=1)
    metrics = gtrain.train(cfg, tmp_path / "run", progress=False)
    assert metrics["labelled_columns"] == 17
    assert np.isfinite(metrics["val_rmse"])
    per_q = metrics["per_question_rmse_tta"]
    assert np.isnan(per_q["Q3"]) and np.isfinite(per_q["Q1"])  # Q3 is not in the partial file


def test_bf16_and_fp32_reach_close_losses(synth_dir, tmp_path):
    results = {}
    for precision in ("fp32", "bf16"):
        m = gtrain.train(_cfg(synth_dir, epochs=2, precision=precision), tmp_path / precision, progress=False)
        results[precision] = m
    assert results["bf16"]["precision"] == "bf16" and results["fp32"]["precision"] == "fp32"
    a, b = results["fp32"]["val_rmse"], results["bf16"]["val_rmse"]
    assert abs(a - b) / a < 0.05


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--experiment", "nope", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "--experiment: invalid choice: 'nope'" in capsys.readouterr().err
    assert main(["train", "--experiment", "baseline", "--data-dir", str(tmp_path / "missing"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "no such data folder" in capsys.readouterr().err
    assert main(["predict", "--run", str(tmp_path), "--images", str(tmp_path), "--out", str(tmp_path / "p.csv")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["train", "--experiment", "baseline", "--profile", "fast", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "r")]) == 2
    assert "--profile: invalid choice: 'fast'" in capsys.readouterr().err


def test_ctrl_c_then_the_same_command_resumes(synth_dir, tmp_path):
    """A real interruption: SIGINT in the middle of training, then the same command finishes the run."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "galaxylib", "train", "--experiment", "baseline", "--profile", "smoke",
           "--data-dir", str(synth_dir), "--out", str(out), "--device", "cpu", "--epochs", "40", "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Ctrl-C as a terminal delivers it: the child gets SIGINT's default disposition, whatever this process was
    # started with (a job started in the background by a non-interactive shell, as CI may be, ignores SIGINT,
    # and Python then never turns it into KeyboardInterrupt)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"training ended before it could be interrupted: {proc.communicate()}"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    done = torch.load(out / "last.pt", map_location="cpu", weights_only=False)["epoch"]
    assert 1 <= done < 40
    resumed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {done}" in resumed.stdout
    assert len(pd.read_csv(out / "history.csv")) == 40
