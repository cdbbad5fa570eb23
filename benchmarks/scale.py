"""Memory and speed against the number of galaxies: the cache build, `predict` and training steps at N images.

For each N (default 1,000, 10,000 and 60,000 synthetic Kaggle-sized 424x424 JPEGs, generated once with
galaxylib.synth under $GALAXYLIB_CACHE_DIR/bench/) every stage runs in a fresh process (benchmarks/stages.py)
that reports its peak resident memory (VmHWM) and that of its largest worker process:

    cache     build_cache of the paper baseline's 256-px cache from scratch (process pool, resumable build)
    predict   `python -m galaxylib predict` (streamed: decode a chunk, predict, append; memory flat in N) with
              the paper-profile baseline and, up to --resnet-max images, ResNet50 (random weights)
    predict   memory: the previous code path (the whole cache copied into RAM with np.array, then predict)
    train     a few steps of the paper-profile baseline (Trainer stages: check the folder, reuse the cache,
              DeviceData, build; --steps timed steps after 2 warm-up steps), streamed from the cache file, and,
              up to --memory-max images, with the whole cache in RAM (--images-on device)

Predictions use one view (--tta 1): memory does not depend on the number of views, time does (16 views cost
about 16 times as much). The acceptance figure: from the smallest to the largest N the peak resident memory
of the streamed `predict` grows by less than 0.6 GB. Rows go to results/benchmarks/scale.csv and scale.md.

    PYTHONPATH=. python benchmarks/scale.py                           # 1k, 10k, 60k (the full measurement)
    PYTHONPATH=. python benchmarks/scale.py --sizes 1000 10000         # while developing
    PYTHONPATH=. python benchmarks/scale.py --sizes 60000 --stages predict   # re-measure some rows only

Rows already in scale.csv for other sizes or stages are kept: a re-measurement replaces only its own rows.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stages import dispatch, report, run_stage  # noqa: E402

SEED = 2024
CACHE_SIZE = 256  # the paper baseline's cache: the 424-px frame stored at 256 px
COLUMNS = ["date", "machine", "n", "stage", "path", "model", "images_per_s", "seconds", "peak_rss_gb",
           "workers_peak_rss_gb", "note"]  # fmt: skip
ACCEPT_GB = 0.6


def bench_root() -> Path:
    from galaxylib.data.cache import default_cache_dir

    return default_cache_dir() / "bench"


def synth_dir(n: int) -> Path:
    return bench_root() / f"synth-n{n}-seed{SEED}"


# ----------------------------------------------------------------------------------------------------------
# stages (each runs in its own process)


def stage_make_run(args) -> None:
    """A run folder with a random-weight model of the paper profile (what `predict --run` reads)."""
    import torch

    from galaxylib import rundir
    from galaxylib.experiments import resolve
    from galaxylib.models import build_model

    cfg = resolve(args.experiment, "paper", pretrained=False, device="cpu", tta=1)
    torch.manual_seed(0)
    model = build_model(cfg.model, img_size=cfg.img_size, pretrained=False, head=cfg.head)
    run = rundir.RunDir(args.run)
    run.write_config(cfg)
    run.save_checkpoint(rundir.BEST, {"model": model.state_dict(), "epoch": 0})
    report(run=str(args.run))


def _paths(data: Path) -> list[Path]:
    from galaxylib import layout

    return sorted((data / layout.TRAIN_IMAGES_DIR).glob("*.jpg"))


def stage_cache(args) -> None:
    """build_cache of every image, from scratch (an earlier cache of these images is removed first)."""
    from galaxylib.data.cache import build_cache, default_cache_dir

    paths = _paths(args.data)
    for old in default_cache_dir().glob(f"images-n{len(paths)}-crop424-size{CACHE_SIZE}-*"):
        old.unlink()
    t0 = time.perf_counter()
    build_cache(paths, crop=424, size=CACHE_SIZE, progress=False)
    seconds = time.perf_counter() - t0
    report(images_per_s=len(paths) / seconds, seconds=seconds)


def stage_predict(args) -> None:
    """`predict` through the command line (streamed), or the previous in-memory path; one view."""
    out = Path(args.tmp) / f"predict-{args.path}.csv"
    t0 = time.perf_counter()
    if args.path == "stream":
        from galaxylib.cli import main

        code = main(["predict", "--run", str(args.run), "--images", str(args.data), "--out", str(out), "--tta", "1",
                     "--device", "cpu", "--quiet"])  # fmt: skip
        if code:
            raise SystemExit(code)
    else:
        import numpy as np
        import torch

        from galaxylib.data.cache import build_cache
        from galaxylib.prediction import predict, write_submission
        from galaxylib.rundir import load_run

        cfg, model = load_run(args.run)
        paths = _paths(args.data)
        cache = build_cache(paths, crop=cfg.source_crop, size=cfg.cache_size, progress=False)
        images = torch.from_numpy(np.array(cache))  # what predict_files did before: the whole set in RAM
        preds = predict(model, images, source_crop=cfg.source_crop, out_size=cfg.img_size, eval_crop=cfg.eval_crop,
                        tta=1)  # fmt: skip
        write_submission([int(p.stem) for p in paths], preds, out)
    seconds = time.perf_counter() - t0
    n = len(_paths(args.data))
    out.unlink(missing_ok=True)
    report(images_per_s=n / seconds, seconds=seconds)


def stage_train(args) -> None:
    """--steps training steps of the paper-profile baseline through the Trainer's stages."""
    from galaxylib.experiments import resolve
    from galaxylib.training import Trainer

    images_on = "stream" if args.path == "stream" else "device"
    cfg = resolve("baseline", "paper", pretrained=False, device="cpu", data_dirs=[str(args.data)],
                  images_on=images_on)  # fmt: skip
    out = Path(args.tmp) / f"train-{args.path}"
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, out, progress=False)
    trainer._seed_and_backends()
    prep = trainer.prepare_data()
    built = trainer.build()
    trainer.train_epoch(built, prep, 0, max_steps=2)  # warm-up: allocator, oneDNN kernels
    t0 = time.perf_counter()
    trainer.train_epoch(built, prep, 1, max_steps=args.steps)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    report(images_per_s=args.steps * cfg.batch_size / seconds, seconds=seconds, where=prep.store.where)


STAGES = {"make-run": stage_make_run, "cache": stage_cache, "predict": stage_predict, "train": stage_train}


# ----------------------------------------------------------------------------------------------------------
# the measurement


def machine() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f", {int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores{mem}"


def ensure_data(n: int) -> Path:
    out = synth_dir(n)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "galaxylib", "synth", "--n", str(n), "--seed", str(SEED), "--out",
                          str(out)], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    if res.returncode:
        raise SystemExit(f"synth failed: {res.stderr[-2000:]}")
    print(f"data: {n} synthetic galaxies in {out} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def _stage_cmd(stage: str, **kw) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", stage]
    for key, value in kw.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def markdown(rows: list[dict], conditions: str) -> str:
    sizes = sorted({r["n"] for r in rows})
    keys = list(dict.fromkeys((r["stage"], r["path"], r["model"]) for r in rows))
    head = "| stage | path | model | " + " | ".join(f"N = {n:,}" for n in sizes) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(sizes)]
    for key in keys:
        cells = []
        for n in sizes:
            r = next((r for r in rows if (r["stage"], r["path"], r["model"]) == key and r["n"] == n), None)
            if r is None:
                cells.append("")
            elif r["note"].startswith("error"):
                cells.append(r["note"])
            else:
                workers = f" (+ workers {r['workers_peak_rss_gb']:.2f})" if r["workers_peak_rss_gb"] > 0.05 else ""
                cells.append(f"{r['peak_rss_gb']:.2f} GB{workers}, {r['images_per_s']:.0f} img/s")
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    verdict = ""
    pred = {r["n"]: r["peak_rss_gb"] for r in rows if (r["stage"], r["path"], r["model"]) ==
            ("predict", "stream", "baseline") and not r["note"].startswith("error")}  # fmt: skip
    if len(pred) >= 2:
        lo, hi = min(pred), max(pred)
        growth = pred[hi] - pred[lo]
        verdict = (f"\nAcceptance: the streamed `predict` (baseline) peaks at {pred[lo]:.2f} GB for {lo:,} images and "
                   f"{pred[hi]:.2f} GB for {hi:,}: it grows by {growth:+.2f} GB "
                   f"({'within' if growth < ACCEPT_GB else 'NOT within'} the {ACCEPT_GB} GB allowed).\n")
    return ("Peak resident memory (VmHWM) of the main process and images per second, each stage in a fresh "
            "process; in brackets the peak of its largest worker process (image checks and decoding), which "
            "counts the pages a forked worker shares with its parent, so it overstates what the worker adds. "
            "Synthetic Kaggle-sized (424x424) JPEGs; models with random weights; predict with one view (--tta 1), "
            "batch 256; train = the paper-profile baseline, batch 105 at 128 px from the 256-px cache, "
            "images/s over the timed steps only. stream = the streamed paths (predict: decode a chunk, predict, "
            "append; train: batches read from the cache file); memory = the whole cache in RAM (predict: the "
            "previous code path, np.array of the cache; train: --images-on device).\n\n" + conditions + "\n\n"
            + "\n".join(lines) + "\n" + verdict)  # fmt: skip


STAGE_ORDER = ["cache", "predict", "train"]


def kept_rows(csv_path: Path, sizes: list[int], stages: list[str]) -> list[dict]:
    """The rows of an earlier scale.csv that this measurement does not replace (other sizes or stages)."""
    if not csv_path.exists():
        return []
    import pandas as pd

    old = pd.read_csv(csv_path, keep_default_na=False).to_dict("records")
    return [r for r in old if not (r["n"] in sizes and r["stage"] in stages)]


def measure(args) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    date, where = datetime.date.today().isoformat(), machine()
    conditions = f"Machine: {where}; {date}; {args.conditions}"
    if args.markdown_only:
        import pandas as pd

        rows = pd.read_csv(args.out / "scale.csv", keep_default_na=False).to_dict("records")
        first = rows[0]
        (args.out / "scale.md").write_text(markdown(rows, f"Machine: {first['machine']}; {first['date']}; "
                                                          f"{args.conditions}"))  # fmt: skip
        return 0
    tmp = bench_root() / "scale-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = {"GALAXYLIB_CACHE_DIR": str(bench_root() / "scale-cache"), "PYTHONPATH": str(ROOT)}
    runs = {}
    for model in ["baseline", "resnet50"]:
        runs[model] = tmp / f"run-{model}"
        res = run_stage(_stage_cmd("make-run", experiment=model, run=runs[model]), env)
        if "error" in res:
            print(f"make-run {model}: {res['error']}", file=sys.stderr)
            return 1
    csv_path, md_path = args.out / "scale.csv", args.out / "scale.md"
    rows = kept_rows(csv_path, args.sizes, args.stages)

    def record(n: int, stage: str, path: str, model: str, res: dict) -> None:
        row = dict(date=date, machine=where, n=n, stage=stage, path=path, model=model,
                   images_per_s=round(res.get("images_per_s", float("nan")), 2),
                   seconds=round(res.get("seconds", res.get("wall_s", float("nan"))), 2),
                   peak_rss_gb=res.get("peak_rss_gb", float("nan")),
                   workers_peak_rss_gb=res.get("workers_peak_rss_gb", float("nan")),
                   note=f"error: {res['error']}" if "error" in res else res.get("where", ""))  # fmt: skip
        rows.append(row)
        rows.sort(key=lambda r: (r["n"], STAGE_ORDER.index(r["stage"])))
        print(f"  N={n:<6} {stage:<8} {path:<7} {model:<9} " + (row["note"] if "error" in res else
              f"{row['peak_rss_gb']:.2f} GB (workers {row['workers_peak_rss_gb']:.2f} GB)  "
              f"{row['images_per_s']:.1f} img/s  {row['seconds']:.1f} s"), flush=True)  # fmt: skip
        import pandas as pd

        pd.DataFrame(rows, columns=COLUMNS).to_csv(csv_path, index=False)  # nothing lost if stopped part-way
        md_path.write_text(markdown(rows, conditions))

    for n in sorted(args.sizes):
        data = ensure_data(n)
        common = dict(data=data, tmp=tmp)
        if "cache" in args.stages:
            record(n, "cache", "build", "-", run_stage(_stage_cmd("cache", **common), env))
        if "predict" in args.stages:
            record(n, "predict", "stream", "baseline",
                   run_stage(_stage_cmd("predict", path="stream", run=runs["baseline"], **common), env))
            if n <= args.memory_max:
                record(n, "predict", "memory", "baseline",
                       run_stage(_stage_cmd("predict", path="memory", run=runs["baseline"], **common), env))
            if n <= args.resnet_max:
                record(n, "predict", "stream", "resnet50",
                       run_stage(_stage_cmd("predict", path="stream", run=runs["resnet50"], **common), env))
        if "train" in args.stages:
            record(n, "train", "stream", "baseline",
                   run_stage(_stage_cmd("train", path="stream", steps=args.steps, **common), env))
            if n <= args.memory_max:
                record(n, "train", "memory", "baseline",
                       run_stage(_stage_cmd("train", path="memory", steps=args.steps, **common), env))
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {csv_path} and {md_path}")
    print(md_path.read_text())
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 60_000], help="numbers of galaxies")
    p.add_argument("--stages", nargs="+", choices=STAGE_ORDER, default=STAGE_ORDER, help="what to measure")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (batch 105)")
    p.add_argument("--memory-max", type=int, default=10_000,
                   help="largest N for the in-memory rows (they hold the whole cache in RAM: 2 GB at 10k)")
    p.add_argument("--resnet-max", type=int, default=1000, help="largest N for ResNet50 predictions (slow on a CPU)")
    p.add_argument("--conditions", default="shared with other jobs while measuring (timings are approximate)",
                   help="what else ran on the machine, for the table's caption")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    p.add_argument("--markdown-only", action="store_true", help="rewrite scale.md from scale.csv, measure nothing")
    # one stage, in its own process (used by the measurement itself)
    for name in ("data", "run", "tmp"):
        p.add_argument(f"--{name}", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--experiment", help=argparse.SUPPRESS)
    return dispatch(p, argv, STAGES, measure)


if __name__ == "__main__":
    raise SystemExit(main())
