"""torchrun on CPU (gloo, 2 processes): one run folder, identical weights on both ranks, resume under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]

RANK_SCRIPT = """
import os, sys, torch
from galaxylib.experiments import resolve
from galaxylib.training import Trainer
data_dir, out, stop = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = resolve("baseline", "smoke", data_dirs=[data_dir], device="cpu", epochs=2, tta=2)
t = Trainer(cfg, out, progress=False, stop_after_epochs=None if stop == "none" else int(stop))
t.fit()
if hasattr(t, "model"):
    torch.save(t.model.state_dict(), os.path.join(out, f"rank{os.environ['RANK']}.pt"))
"""


def _torchrun(*args, timeout=300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_cli_under_torchrun_records_world_size(synth_dir, tmp_path):
    out = tmp_path / "run"
    res = _torchrun("-m", "galaxylib", "train", "--experiment", "baseline", "--profile", "smoke",
                    "--data-dir", str(synth_dir), "--out", str(out), "--device", "cpu", "--quiet")
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["finished"]
    assert res.stdout.count("val RMSE") == 1  # only rank 0 reports
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]
    assert len(pd.read_csv(out / "history.csv")) == 1


def test_ranks_agree_and_resume_matches_an_uninterrupted_run(synth_dir, tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    whole, split = tmp_path / "whole", tmp_path / "split"
    _torchrun(str(script), str(synth_dir), str(whole), "none")
    r0, r1 = (torch.load(whole / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    _torchrun(str(script), str(synth_dir), str(split), "1")
    assert torch.load(split / "last.pt", weights_only=False)["epoch"] == 1
    _torchrun(str(script), str(synth_dir), str(split), "none")
    resumed = torch.load(split / "rank0.pt")
    assert all(torch.equal(r0[k], resumed[k]) for k in r0), "resumed run differs from the uninterrupted one"
