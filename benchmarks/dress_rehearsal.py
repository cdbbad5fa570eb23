"""A Kaggle-size dress rehearsal on one GPU: data, every paper model, predictions, the submission check, memory.

On a GPU machine, within about 8 minutes:

1. generate a synthetic Galaxy Zoo of Kaggle size (61,578 labelled + 79,975 test 424x424 JPEGs) times
   --fraction (default 0.5: ~2,000 images/s on 16 cores, so the full size alone would take 70 s of the 8 min);
2. for each paper model (baseline, baseline + CBAM, ResNet50, ResNet101, ConvNeXt Large, DINOv2; random
   weights) train `galaxylib.training` at the paper profile (batch 105, 128 / 224 px, bf16) for --steps steps in
   two epochs, on a subset sized for that (the Trainer's real stages: check the images, build or reuse the
   cache, hold it on the GPU when it fits, train, validate, final scores with --val-tta views), then
   `python -m galaxylib predict` the whole test set (one view) and check the submission;
3. ResNet50 once more with the image cache streamed from disk (--images-on stream) instead of held on the
   GPU: the streamed path's training throughput against the GPU-resident one (the cache file was just read,
   so this streams from the page cache; the aim is within 10 %).

Each training run and each prediction runs in a fresh process (benchmarks/stages.py) that reports its peak
host resident memory and its peak GPU memory (torch.cuda.max_memory_allocated). Training throughput is that of
the second epoch (the first holds cudnn autotuning and allocator warm-up). A time limit (--time-limit) skips
the stages that would start after it, and says so. Results: results/benchmarks/dress_rehearsal.json and .md.

    bash benchmarks/run_dress_rehearsal.sh                                   # on the GPU machine
    PYTHONPATH=. python benchmarks/dress_rehearsal.py --device cpu --fraction 0.002 --steps 4 --batch-size 8 \\
        --out /tmp/dress                                                       # a CPU proof that it runs
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
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

MODELS = ("baseline", "baseline_cbam", "resnet50", "resnet101", "dinov2_base", "convnext_large")
STREAM_MODEL = "resnet50"
KAGGLE_TRAIN, KAGGLE_TEST = 61_578, 79_975
SEED_TRAIN, SEED_TEST = 2024, 2025


# ----------------------------------------------------------------------------------------------------------
# stages (each in its own process)


def _gpu_peak_gb(device) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 1e9, 3) if device.type == "cuda" else None


def _config(args):
    from galaxylib.experiments import resolve

    # two epochs of steps/2 full batches each: the paper's split keeps 90 % of the subset for training
    per_epoch = max(1, args.steps // 2)
    batch = args.batch_size or resolve(args.experiment, "paper").batch_size
    max_images = min(args.n_train, math.floor(per_epoch * batch / 0.9))
    return resolve(args.experiment, "paper", pretrained=False, epochs=2, tta=args.val_tta, device=args.device,
                   batch_size=args.batch_size, max_images=max_images, data_dirs=[str(args.data)],
                   images_on=args.images_on)  # fmt: skip


def stage_train(args) -> None:
    """Trainer.fit of one model, two short epochs; throughput from the second."""
    import pandas as pd
    import torch

    from galaxylib.device import select_device
    from galaxylib.training import train

    cfg = _config(args)
    device = select_device(args.device)
    t0 = time.perf_counter()
    metrics = train(cfg, args.run, progress=False, retrain=True)
    seconds = time.perf_counter() - t0
    hist = pd.read_csv(Path(args.run) / "history.csv")
    last = hist.iloc[-1]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    report(model=cfg.model, img_size=cfg.img_size, batch=cfg.batch_size, steps=int(-(-metrics["n_train"] //
           cfg.batch_size) * cfg.epochs), n_train=metrics["n_train"], n_val=metrics["n_val"],
           train_img_per_s=round(metrics["n_train"] / float(last["train_seconds"]), 1),
           epoch_seconds=[round(float(s), 2) for s in hist["seconds"]], seconds=round(seconds, 1),
           images_on=metrics["images_on"], precision=metrics["precision"], val_rmse=metrics["val_rmse"],
           gpu_peak_gb=_gpu_peak_gb(device))  # fmt: skip


def stage_predict(args) -> None:
    """`python -m galaxylib predict` of the whole test folder with one view, then the submission check."""
    import numpy as np

    from galaxylib import layout
    from galaxylib.cli import main
    from galaxylib.device import select_device
    from galaxylib.prediction import check_submission

    device = select_device(args.device)
    out = Path(args.run) / "submission.csv"
    t0 = time.perf_counter()
    code = main(["predict", "--run", str(args.run), "--images", str(args.data), "--out", str(out), "--tta", "1",
                 "--checkpoint", "last", "--device", args.device, "--quiet"])  # fmt: skip
    seconds = time.perf_counter() - t0
    if code:
        raise SystemExit(code)
    ids = np.array(sorted(int(p.stem) for p in (Path(args.data) / layout.TRAIN_IMAGES_DIR).glob("*.jpg")))
    check_submission(out, expected_ids=ids)  # raises when anything is wrong
    report(images=len(ids), img_per_s=round(len(ids) / seconds, 1), seconds=round(seconds, 1),
           submission_check="passed", gpu_peak_gb=_gpu_peak_gb(device))  # fmt: skip


def stage_stream_check(args) -> None:
    """The streamed batches (background reads, pinned buffers, side-stream copies) equal the resident ones."""
    import torch

    from galaxylib import layout
    from galaxylib.data.cache import build_cache
    from galaxylib.data.store import DeviceData
    from galaxylib.device import select_device

    device = select_device(args.device)
    paths = sorted((Path(args.data) / layout.TRAIN_IMAGES_DIR).glob("*.jpg"))[:2000]
    cache = build_cache(paths, crop=424, size=424, progress=False)
    stream = DeviceData(cache, None, device, images_on="stream")
    resident = DeviceData(cache, None, device, images_on="device")
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randperm(len(paths), generator=gen)[:105] for _ in range(24)]
    partial = stream.stream(batches)
    for _ in range(3):
        next(partial)
    partial.close()  # left part-way: the background thread must stop, and the next stream must start cleanly
    same = all(torch.equal(a, b) for a, b in zip(stream.stream(batches), resident.stream(batches), strict=True))
    if not same:
        raise SystemExit("streamed batches differ from the resident ones")
    report(stream_check="passed", images=len(paths), batches=len(batches), where=[stream.where, resident.where])


STAGES = {"train": stage_train, "predict": stage_predict, "stream-check": stage_stream_check}


# ----------------------------------------------------------------------------------------------------------
# the rehearsal


def _synth(n: int, seed: int, out: Path) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "galaxylib", "synth", "--n", str(n), "--seed", str(seed), "--out",
                          str(out)], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    if res.returncode:
        raise SystemExit(f"synth failed: {res.stderr[-2000:]}")
    return time.perf_counter() - t0


def _machine(device: str) -> dict:
    info = {"host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "device": device}
    if device != "cpu":
        try:
            info["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                         capture_output=True, text=True).stdout.strip()  # fmt: skip
        except OSError:
            pass
    return info


def markdown(result: dict) -> str:
    lines = [f"Dress rehearsal, {result['date']}: {result['machine']}. Synthetic Kaggle-sized data at fraction "
             f"{result['fraction']}: {result['n_train']:,} labelled + {result['n_test']:,} test 424x424 JPEGs "
             f"(generated in {result['synth_seconds']:.0f} s). Paper profile, random weights, "
             f"{result['steps']} steps per model in two epochs (throughput from the second), one view for the "
             f"test predictions. Total {result['total_seconds']:.0f} s.", "",
             "| model | train img/s | images on | train wall s | peak GPU GB (train) | peak host RSS GB (train) | "
             "predict img/s | peak GPU GB (predict) | peak host RSS GB (predict) | submission |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in result["models"].items():
        t, p = r.get("train", {}), r.get("predict", {})
        if "error" in t:
            lines.append(f"| {name} | {t['error']} |||||||||")
            continue
        pred = (f"{p.get('img_per_s', '')} | {p.get('gpu_peak_gb')} | {p.get('peak_rss_gb')} | "
                f"{p.get('submission_check', p.get('error', ''))}")  # fmt: skip
        lines.append(f"| {name} | {t['train_img_per_s']} | {t['images_on']} | {t['seconds']} | {t['gpu_peak_gb']} "
                     f"| {t['peak_rss_gb']} | {pred} |")
    c = result.get("stream_check", {})
    lines += ["", f"Streamed batches against resident ones ({c.get('images')} images, {c.get('batches')} batches "
              f"of 105 at 424 px, {' vs '.join(c.get('where', []))}): {c.get('stream_check', c.get('error'))}."]
    s = result.get("stream_vs_resident")
    if s:
        lines += ["", f"{STREAM_MODEL}, streamed from the cache file against the cache held on the device "
                  f"({s.get('resident_on')}): {s.get('stream_img_per_s')} against {s.get('resident_img_per_s')} "
                  f"img/s of training (ratio {s.get('ratio')}; {s.get('note', '')}); peak host RSS "
                  f"{s.get('stream_peak_rss_gb')} against {s.get('resident_peak_rss_gb')} GB, peak GPU memory "
                  f"{s.get('stream_gpu_peak_gb')} against {s.get('resident_gpu_peak_gb')} GB."]  # fmt: skip
    if result["skipped"]:
        lines += ["", "Skipped (time limit): " + ", ".join(result["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def compare_stream(name: str, auto: dict, train_with) -> dict:
    """Training throughput streamed from the cache file against the cache held on the device.

    `auto` is the model's run with the default placement: on a GPU where the cache fits that is the resident
    run; otherwise (a CPU, or a cache too large) the resident run is made with --images-on device."""
    resident = auto if auto["images_on"] in ("gpu", "memory") else train_with("device")
    stream = train_with("stream")
    out = {"model": name}
    for label, r in (("resident", resident), ("stream", stream)):
        if "error" in r:
            return {**out, "note": f"{label} run failed: {r['error']}"}
        out.update({f"{label}_on": r["images_on"], f"{label}_img_per_s": r["train_img_per_s"],
                    f"{label}_peak_rss_gb": r["peak_rss_gb"], f"{label}_gpu_peak_gb": r["gpu_peak_gb"]})
    ratio = stream["train_img_per_s"] / resident["train_img_per_s"]
    if resident["images_on"] != "gpu":  # both paths read host memory: the GPU question is not asked here
        return {**out, "ratio": round(ratio, 3), "note": "no GPU: both paths read host memory, not the GPU test"}
    return {**out, "ratio": round(ratio, 3), "note": "within 10 %" if ratio >= 0.9 else "NOT within 10 %"}


def rehearse(args) -> int:
    start = time.perf_counter()
    from galaxylib.data.cache import default_cache_dir

    work = Path(args.work) if args.work else default_cache_dir() / "dress"
    n_train = max(40, round(KAGGLE_TRAIN * args.fraction))
    n_test = max(40, round(KAGGLE_TEST * args.fraction))
    train_dir, test_dir = work / f"train-{n_train}", work / f"test-{n_test}"
    print(f"synthetic data: {n_train} labelled + {n_test} test images in {work}", flush=True)
    synth_s = _synth(n_train, SEED_TRAIN, train_dir) + _synth(n_test, SEED_TEST, test_dir)
    print(f"  generated in {synth_s:.0f} s", flush=True)
    env = {"PYTHONPATH": str(ROOT), "GALAXYLIB_CACHE_DIR": str(work / "cache")}
    common = ["--device", args.device, "--steps", str(args.steps), "--val-tta", str(args.val_tta),
              "--n-train", str(n_train)] + (["--batch-size", str(args.batch_size)] if args.batch_size else [])
    me = [sys.executable, str(Path(__file__).resolve())]
    result = {"date": datetime.date.today().isoformat(), "machine": _machine(args.device), "fraction": args.fraction,
              "n_train": n_train, "n_test": n_test, "synth_seconds": round(synth_s, 1), "steps": args.steps,
              "models": {}, "skipped": []}  # fmt: skip
    out_json, out_md = args.out / "dress_rehearsal.json", args.out / "dress_rehearsal.md"
    args.out.mkdir(parents=True, exist_ok=True)

    def over_time(what: str) -> bool:
        if time.perf_counter() - start > args.time_limit:
            result["skipped"].append(what)
            print(f"  time limit: {what} skipped", flush=True)
            return True
        return False

    def save() -> None:
        result["total_seconds"] = round(time.perf_counter() - start, 1)
        out_json.write_text(json.dumps(result, indent=2) + "\n")
        out_md.write_text(markdown(result))

    check = run_stage(me + ["--stage", "stream-check", "--data", str(train_dir), "--device", args.device], env)
    result["stream_check"] = check
    print(f"  streamed batches against resident ones: {check}", flush=True)
    runs = work / "runs"

    def train_stage(name: str, images_on: str) -> tuple[Path, dict]:
        run = runs / f"{name}-{images_on}"
        return run, run_stage(me + ["--stage", "train", "--experiment", name, "--data", str(train_dir), "--run",
                                    str(run), "--images-on", images_on] + common, env)  # fmt: skip

    for name in args.models:
        if over_time(name):
            continue
        run, t = train_stage(name, "auto")
        result["models"][name] = {"train": t}
        print(f"  {name}: train {t}", flush=True)
        if "error" not in t and not over_time(f"{name} predict"):
            p = run_stage(me + ["--stage", "predict", "--data", str(test_dir), "--run", str(run), "--device",
                                args.device], env)  # fmt: skip
            result["models"][name]["predict"] = p
            print(f"  {name}: predict {p}", flush=True)
        save()
        if name == STREAM_MODEL and "error" not in t and not over_time(f"{name} streamed"):
            result["stream_vs_resident"] = compare_stream(name, t, lambda on, name=name: train_stage(name, on)[1])
            print(f"  {name}: streamed vs resident {result['stream_vs_resident']}", flush=True)
            save()
        shutil.rmtree(runs, ignore_errors=True)  # checkpoints (ConvNeXt-L: 2.4 GB) are not needed back
    save()
    if not args.keep_data:
        shutil.rmtree(work, ignore_errors=True)
    print(out_md.read_text())
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--fraction", type=float, default=0.5, help="of the Kaggle sizes (61,578 + 79,975)")
    p.add_argument("--steps", type=int, default=300, help="training steps per model (two epochs)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the paper's 105 (smaller for CPU proofs)")
    p.add_argument("--val-tta", type=int, default=2, help="views for the final validation scores")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--time-limit", type=float, default=450, help="seconds; stages that would start later are skipped")
    p.add_argument("--work", type=Path, help="data and cache folder (default $GALAXYLIB_CACHE_DIR/dress)")
    p.add_argument("--keep-data", action="store_true", help="keep the generated data and caches")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    p.add_argument("--experiment", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--images-on", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--n-train", type=int, help=argparse.SUPPRESS)
    return dispatch(p, argv, STAGES, rehearse)


if __name__ == "__main__":
    raise SystemExit(main())
