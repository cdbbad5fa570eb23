"""Scale: the streamed data path equals the in-memory one, predictions stream and resume, shards merge, the cache
build survives SIGKILL, catalogues and non-Kaggle IDs, --resize.

Runs use a random-weight model saved into a run folder (no training needed), except the training comparison.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from galaxylib import data as gdata
from galaxylib import layout, rundir, survey, training
from galaxylib.cli import main
from galaxylib.data import cache as cache_module
from galaxylib.data.inputs import from_catalog, from_folders
from galaxylib.data.store import DeviceData, RowReader
from galaxylib.errors import DataError, UserError
from galaxylib.experiments import resolve
from galaxylib.models import build_model
from galaxylib.prediction import predict, predict_files, write_submission

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def make_run(path: Path, tta: int = 2):
    """A run folder holding a random-weight baseline (smoke profile): what `predict --run` needs."""
    cfg = resolve("baseline", "smoke", device="cpu", tta=tta)
    torch.manual_seed(0)
    model = build_model(cfg.model, img_size=cfg.img_size, pretrained=False, head=cfg.head).eval()
    run = rundir.RunDir(path)
    run.write_config(cfg)
    run.save_checkpoint(rundir.BEST, {"model": model.state_dict(), "epoch": 1})
    return cfg, model


def images_of(folder: Path) -> list[Path]:
    return sorted((folder / layout.TRAIN_IMAGES_DIR).glob("*.jpg"), key=lambda p: int(p.stem))


def predict_cmd(run: Path, out: Path, *extra: str) -> list[str]:
    # --run-dir, not --run: under torchrun, torchrun's own parser would take --run for its --run-path
    return [sys.executable, "-m", "galaxylib", "predict", "--run-dir", str(run), "--out", str(out), "--device", "cpu",
            "--batch-size", "8", "--chunk-size", "8", "--quiet", *extra]  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# the streamed data path equals the in-memory one


def test_row_reader_reads_what_numpy_indexes(tmp_path):
    rng = np.random.default_rng(0)
    arr = np.lib.format.open_memmap(tmp_path / "c.npy", mode="w+", dtype=np.uint8, shape=(50, 4, 4, 3))
    arr[:] = rng.integers(0, 256, arr.shape, dtype=np.uint8)
    arr.flush()
    cache = np.lib.format.open_memmap(tmp_path / "c.npy", mode="r")
    reader = RowReader(cache)
    assert reader.fd is not None  # the whole file: positional reads, nothing mapped
    idx = np.array([7, 3, 4, 5, 49, 0, 3, 22, 23])  # runs, repeats, both ends, unsorted
    np.testing.assert_array_equal(reader.gather(idx, np.empty((len(idx), 4, 4, 3), np.uint8)), cache[idx])
    sliced = RowReader(cache[10:20])  # a slice keeps its parent's offset: indexed, not read from the file
    assert sliced.fd is None
    np.testing.assert_array_equal(sliced.gather(np.array([0, 9]), np.empty((2, 4, 4, 3), np.uint8)),
                                  cache[[10, 19]])  # fmt: skip


def test_streamed_and_in_memory_store_give_the_same_batches(synth_dir):
    paths = images_of(synth_dir)
    cache = gdata.build_cache(paths, crop=424, size=24, progress=False)
    stream = DeviceData(cache, None, torch.device("cpu"), images_on="stream")
    memory = DeviceData(cache, None, torch.device("cpu"), images_on="device")
    assert (stream.where, memory.where) == ("stream", "memory")
    batches = [torch.tensor([5, 1, 70]), torch.tensor([0, 79, 79, 2])]
    for a, b in zip(stream.stream(batches), memory.stream(batches), strict=True):
        assert a.stride() == b.stride() and torch.equal(a, b)
        assert a.shape[1] == 3  # NCHW view


def test_streaming_training_equals_in_memory_bitwise(synth_dir, tmp_path):
    runs = {}
    for where in ("device", "stream"):
        cfg = resolve("baseline", "smoke", data_dirs=[str(synth_dir)], device="cpu", tta=2, max_images=48,
                      images_on=where)  # fmt: skip
        metrics = training.train(cfg, tmp_path / where, progress=False)
        runs[where] = (metrics, torch.load(tmp_path / where / "last.pt", weights_only=False)["model"])
    (m_mem, w_mem), (m_str, w_str) = runs["device"], runs["stream"]
    assert m_mem["images_on"] == "memory" and m_str["images_on"] == "stream"
    assert all(torch.equal(w_mem[k], w_str[k]) for k in w_mem)
    assert m_mem["val_rmse"] == m_str["val_rmse"] and m_mem["val_rmse_tta"] == m_str["val_rmse_tta"]
    csv = rundir.VAL_PREDICTIONS
    assert (tmp_path / "device" / csv).read_bytes() == (tmp_path / "stream" / csv).read_bytes()


def test_streamed_predictions_equal_in_memory(synth_dir, tmp_path):
    cfg, model = make_run(tmp_path / "run")
    paths = images_of(synth_dir)
    ids = np.array([int(p.stem) for p in paths])
    cache = gdata.build_cache(paths, crop=cfg.source_crop, size=cfg.cache_size, progress=False)
    in_memory = predict(model, torch.from_numpy(np.array(cache)), source_crop=cfg.source_crop,
                        out_size=cfg.img_size, eval_crop=cfg.eval_crop, tta=2, batch_size=16)  # fmt: skip
    streamed = predict_files(model, cfg, paths, tta=2, batch_size=16, device="cpu", progress=False)
    np.testing.assert_array_equal(streamed, in_memory)
    write_submission(ids, in_memory, tmp_path / "memory.csv")
    result = survey.predict_to_file(model, cfg, from_folders([synth_dir]), tmp_path / "streamed.csv", tta=2,
                                    device="cpu", batch_size=16, chunk_size=20, progress=False)  # fmt: skip
    assert (tmp_path / "streamed.csv").read_bytes() == (tmp_path / "memory.csv").read_bytes()
    assert (result.n, result.id_column, result.resumed) == (80, "GalaxyID", 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.csv", "run", "streamed.csv"]  # no partials left


# ----------------------------------------------------------------------------------------------------------
# interruptions


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left for a parent to collect


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, "finished before it could be interrupted: " + proc.stderr.read()[-2000:]
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_cache_build_killed_leaves_no_workers_and_resumes_identically(synth_dir, tmp_path, monkeypatch):
    cache_dir = tmp_path / "killed"
    script = ("import sys; from pathlib import Path; from galaxylib.data import build_cache\n"
              "paths = sorted(Path(sys.argv[1]).glob('images_training_rev1/*.jpg')) * 12\n"
              "build_cache(paths, crop=424, size=424, cache_dir=Path(sys.argv[2]), workers=2, progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(synth_dir), str(cache_dir)], cwd=ROOT, env=ENV,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip

    def one_chunk_done() -> bool:
        records = list(cache_dir.glob("*.partial.json"))
        return bool(records) and bool(json.loads(records[0].read_text() or "{}").get("done"))

    _wait_for(one_chunk_done, proc)
    workers = _children(proc.pid)
    assert workers, "the build should run in worker processes"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 10
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "worker processes outlived their killed parent"
    assert not list(cache_dir.glob("images-*[0-9a-f].npy")), "a killed build must not look complete"
    paths = images_of(synth_dir) * 12
    decoded = []
    real_load = cache_module._load

    def counting_load(*a, **kw):
        decoded.append(1)
        return real_load(*a, **kw)

    monkeypatch.setattr(cache_module, "_load", counting_load)
    resumed = gdata.build_cache(paths, crop=424, size=424, cache_dir=cache_dir, workers=1, progress=False)
    assert 0 < len(decoded) < len(paths), "the rerun should decode only what the killed build had not finished"
    monkeypatch.undo()
    whole = gdata.build_cache(paths, crop=424, size=424, cache_dir=tmp_path / "whole", workers=2, progress=False)
    assert Path(resumed.filename).read_bytes() == Path(whole.filename).read_bytes()
    assert [p.name for p in cache_dir.iterdir() if not p.name.startswith(".")] == [Path(resumed.filename).name]


@pytest.mark.slow
def test_predict_killed_and_resumed_gives_the_same_file(synth_dir, tmp_path):
    make_run(tmp_path / "run", tta=64)  # 64 views: slow enough to be stopped part-way
    whole, killed = tmp_path / "whole.csv", tmp_path / "killed.csv"
    subprocess.run(predict_cmd(tmp_path / "run", whole, "--images", str(synth_dir)), cwd=ROOT, env=ENV,
                   check=True, capture_output=True)  # fmt: skip
    cmd = predict_cmd(tmp_path / "run", killed, "--images", str(synth_dir))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stderr=subprocess.PIPE, text=True)
    record = tmp_path / "killed.csv.partial.json"

    def first_chunk_done() -> bool:
        try:
            return json.loads(record.read_text())["done"] > 0
        except (OSError, ValueError, KeyError):
            return False

    _wait_for(first_chunk_done, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = json.loads(record.read_text())["done"]
    assert 0 < done < 80 and not killed.exists()
    res = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resumed: " in res.stdout
    assert killed.read_bytes() == whole.read_bytes()
    assert not list(tmp_path.glob("killed.csv.partial*"))


@pytest.mark.slow
def test_sharded_predict_with_two_processes_equals_one(synth_dir, tmp_path):
    make_run(tmp_path / "run")
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    subprocess.run(predict_cmd(tmp_path / "run", one, "--images", str(synth_dir)), cwd=ROOT, env=ENV,
                   check=True, capture_output=True)  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *predict_cmd(tmp_path / "run", two, "--images", str(synth_dir))[1:]]  # fmt: skip
    res = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("80 galaxies") == 1  # only rank 0 reports
    assert two.read_bytes() == one.read_bytes()
    assert json.loads((tmp_path / "two.csv.json").read_text())["world_size"] == 2
    assert not list(tmp_path.glob("two.csv.partial*"))


# ----------------------------------------------------------------------------------------------------------
# inputs: catalogues, non-Kaggle IDs, other sizes


def test_catalog_and_non_integer_ids(synth_dir, tmp_path, capsys):
    make_run(tmp_path / "run")
    paths = images_of(synth_dir)[:12]
    survey_dir = tmp_path / "cutouts"
    survey_dir.mkdir()
    names = [f"J{1000 + 7 * k}+{k:02d}.5" for k in range(len(paths))]
    for name, p in zip(names, paths, strict=True):
        shutil.copy(p, survey_dir / f"{name}.jpg")
    order = list(reversed(range(len(paths))))  # a catalogue keeps its own order
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame({"id_str": [names[k] for k in order],
                  "file_loc": [f"cutouts/{names[k]}.jpg" for k in order]}).to_csv(catalog, index=False)  # fmt: skip
    kaggle = tmp_path / "kaggle.csv"
    pd.DataFrame({"GalaxyID": [p.stem for p in paths], "path": [str(p) for p in paths]}).to_csv(kaggle, index=False)

    assert main(predict_cmd(tmp_path / "run", tmp_path / "k.csv", "--catalog", str(kaggle))[3:]) == 0
    k = pd.read_csv(tmp_path / "k.csv")
    assert list(k.columns)[0] == "GalaxyID" and list(k["GalaxyID"]) == [int(p.stem) for p in paths]
    assert main(predict_cmd(tmp_path / "run", tmp_path / "c.csv", "--catalog", str(catalog))[3:]) == 0
    assert "an id_str column, not a Kaggle submission" in capsys.readouterr().out
    c = pd.read_csv(tmp_path / "c.csv", dtype={"id_str": str})
    assert list(c["id_str"]) == [names[k] for k in order]
    np.testing.assert_array_equal(c.iloc[:, 1:].to_numpy(), k.iloc[order, 1:].to_numpy())  # same pixels
    assert main(predict_cmd(tmp_path / "run", tmp_path / "f.csv", "--images", str(survey_dir))[3:]) == 0
    f = pd.read_csv(tmp_path / "f.csv", dtype={"id_str": str})
    assert list(f["id_str"]) == sorted(names)  # from file names, sorted as text
    assert main(predict_cmd(tmp_path / "run", tmp_path / "s.csv", "--catalog", str(catalog),
                            "--split", "val")[3:]) == 2  # fmt: skip
    assert "needs Kaggle GalaxyIDs" in capsys.readouterr().err


def test_catalogue_problems_are_listed(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    bad = tmp_path / "bad.csv"
    bad.write_text("id_str,file_loc\na,a.jpg\na,a.jpg\nb,missing.jpg\n,a.jpg\n")
    with pytest.raises(UserError) as err:
        from_catalog(bad)
    text = str(err.value)
    assert "row 3: id_str 'a' repeats row 2" in text and "row 4: no image" in text and "row 5: empty id_str" in text
    (tmp_path / "cols.csv").write_text("name,where\na,a.jpg\n")
    with pytest.raises(UserError, match="needs an ID column \\(id_str or GalaxyID\\)"):
        from_catalog(tmp_path / "cols.csv")


def test_a_non_kaggle_output_is_checked(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"x")
    inputs = from_folders([tmp_path])
    assert (inputs.ids, inputs.id_column) == (["x"], "id_str")
    out = tmp_path / "o.csv"
    out.write_text("id_str," + ",".join(f"c{i}" for i in range(37)) + "\n")
    with pytest.raises(UserError, match="header must be id_str"):
        survey.check_rows(out, inputs)
    from galaxylib import tree

    out.write_text(",".join(["id_str", *tree.COLUMNS]) + "\nx," + ",".join(["0.5"] * 36 + ["1.5"]) + "\n")
    with pytest.raises(UserError, match="id_str x, column Class11.6: not a number in \\[0, 1\\]"):
        survey.check_rows(out, inputs)


def test_resize_is_refused_without_the_flag_and_used_with_it(synth_dir, tmp_path, capsys):
    make_run(tmp_path / "run")
    folder = tmp_path / "imgs"
    folder.mkdir()
    src = images_of(synth_dir)[:3]
    for p in src:
        shutil.copy(p, folder / p.name)
    with Image.open(src[1]) as im:
        im.resize((300, 300)).save(folder / src[1].name, quality=90)
    out = tmp_path / "p.csv"
    assert main(predict_cmd(tmp_path / "run", out, "--images", str(folder))[3:]) == 2
    err = capsys.readouterr().err
    assert f"{src[1].name}: image is 300x300, expected 424x424 (--resize" in err and not out.exists()
    assert main(predict_cmd(tmp_path / "run", out, "--images", str(folder), "--resize")[3:]) == 0
    assert "1 images resized to 424x424 (--resize)" in capsys.readouterr().out
    assert json.loads((tmp_path / "p.csv.json").read_text())["resized_to_424"] == 1
    assert len(pd.read_csv(out)) == 3


def test_a_corrupt_image_stops_predict_with_its_name_and_keeps_a_good_output(synth_dir, tmp_path):
    cfg, model = make_run(tmp_path / "run")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in images_of(synth_dir)[:20]:
        shutil.copy(p, folder / p.name)
    out = tmp_path / "p.csv"
    survey.predict_to_file(model, cfg, from_folders([folder]), out, tta=1, device="cpu", batch_size=4,
                           chunk_size=4, progress=False)  # fmt: skip
    good = out.read_bytes()
    victim = sorted(folder.iterdir())[13]
    victim.write_bytes(victim.read_bytes()[:-500])
    with pytest.raises(DataError, match=f"{victim.name}: cannot be decoded"):
        survey.predict_to_file(model, cfg, from_folders([folder]), out, tta=1, device="cpu", batch_size=4,
                               chunk_size=4, progress=False)  # fmt: skip
    assert out.read_bytes() == good  # the old output is untouched
    assert json.loads((tmp_path / "p.csv.partial.json").read_text())["done"] == 12  # three chunks kept


def test_two_predicts_into_one_file_are_refused(synth_dir, tmp_path):
    cfg, model = make_run(tmp_path / "run")
    out = tmp_path / "p.csv"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path\n"
                               "from galaxylib.data.cache import exclusive\n"
                               "with exclusive(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)\n",
                               str(tmp_path / "p.csv.partial.lock")], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match="another predict is writing this file now"):
            survey.predict_to_file(model, cfg, from_folders([synth_dir]), out, tta=1, device="cpu", progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert not out.exists()
