"""Training throughput: the paper's pipeline against ours, side by side, in ONE run on the same GPU.

For each Table II model (baseline, resnet50, resnet101, convnext_large, dinov2_base):
  faithful  the paper's code path: PIL transforms (rotate, random centre crop, resize, flip) in a torch DataLoader
            whose worker processes read the JPEGs from disk every epoch; fp32; batch 105; cudnn.deterministic.
  fast      galaxylib.training: the decode-once uint8 cache on the GPU, one batched affine resample per batch on
            the GPU, bf16 autocast, channels_last, cudnn benchmark, fused Adam, no per-step host syncs.
Both report steady-state images/s after warm-up, the epoch time this gives for 55,420 training plus 6,158
validation images (the validation pass included), and peak GPU memory. Rows go to a CSV with the columns
device,experiment,pipeline,precision,batch,img_per_s,epoch_s,peak_mem_gb,date, and a Markdown table is written
beside it with the paper's epoch times.

The data is a synthetic Galaxy Zoo of Kaggle-sized JPEGs (424x424), generated on the machine: the Kaggle data is
not there. Pretrained weights are not needed: throughput does not depend on the weights' values.

    PYTHONPATH=. python benchmarks/throughput.py --n-images 6000 --out results/benchmarks
    PYTHONPATH=. python benchmarks/throughput.py --device cpu --n-images 64 --models baseline --steps 2  # tiny check
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from galaxylib import data as gdata  # noqa: E402
from galaxylib.augment import PaperTrainTransform, paper_eval_transform  # noqa: E402
from galaxylib.experiments import EXPERIMENTS, resolve  # noqa: E402
from galaxylib.models import build_model  # noqa: E402
from galaxylib.training import train  # noqa: E402

KAGGLE_TRAIN, KAGGLE_VAL = 55_420, 6_158
MODELS = ("baseline", "resnet50", "resnet101", "convnext_large", "dinov2_base")
PAPER_EPOCH_S = {"baseline": 80, "resnet50": 125, "resnet101": 184, "convnext_large": 1500, "dinov2_base": 580}
TARGET_EPOCH_S = {"baseline": 9, "resnet50": 16, "resnet101": 25, "convnext_large": 72, "dinov2_base": 37}
COLUMNS = ["device", "experiment", "pipeline", "precision", "batch", "img_per_s", "epoch_s", "peak_mem_gb", "date"]


class JpegDataset(torch.utils.data.Dataset):
    """The paper's Dataset: open the JPEG with PIL and run the transform, every time an image is asked for."""

    def __init__(self, paths, labels, transform):
        self.paths, self.labels, self.transform = list(paths), torch.as_tensor(labels), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB")), self.labels[i]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def faithful(name: str, data: gdata.GalaxyData, device: torch.device, args) -> dict:
    """img/s of the paper's pipeline: DataLoader workers decode and transform JPEGs; fp32; batch 105."""
    cfg = resolve(name, "paper", pretrained=False)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False  # as the paper's code
    labels = np.nan_to_num(data.labels, nan=0.0).astype(np.float32)
    train_tf = PaperTrainTransform(out_size=cfg.img_size, crop_range=cfg.crop_range, seed=1)
    loader_kw = dict(batch_size=args.faithful_batch, num_workers=args.workers, pin_memory=device.type == "cuda",
                     persistent_workers=args.workers > 0)
    train_dl = torch.utils.data.DataLoader(JpegDataset(data.image_paths, labels, train_tf), shuffle=True,
                                           drop_last=True, **loader_kw)

    def eval_tf(img):
        return paper_eval_transform(img, eval_crop=cfg.eval_crop, out_size=cfg.img_size)

    val_dl = torch.utils.data.DataLoader(JpegDataset(data.image_paths, labels, eval_tf), **loader_kw)
    model = build_model(cfg.model, img_size=cfg.img_size).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # time the whole loop (waits for data included) from step to step, not only the GPU part
    def loop_rate(loader, step_fn, steps) -> float:
        batches = _forever(loader)
        for _ in range(args.warmup):
            x, y = next(batches)
            step_fn(x.to(device), y.to(device))
        _sync(device)
        t0, n = time.perf_counter(), 0
        for _ in range(steps):
            x, y = next(batches)
            step_fn(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
            n += x.shape[0]
        _sync(device)
        return n / (time.perf_counter() - t0)

    def train_step(x, y):
        model.train()
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def val_step(x, y):
        model.eval()
        model(x)

    train_ips = loop_rate(train_dl, train_step, args.steps)
    val_ips = loop_rate(val_dl, val_step, max(2, args.steps // 2))
    return _row(name, "faithful", "fp32", args.faithful_batch, train_ips, val_ips, device)


def _forever(loader):
    """Batches from the loader, epoch after epoch."""
    while True:
        yield from loader


def fast(name: str, data_dir: Path, device: torch.device, args, batch: int) -> dict:
    """img/s of galaxylib.training itself: a short run whose later epochs are timed (the first one warms up)."""
    torch.backends.cudnn.deterministic = False
    cfg = resolve(name, "paper", pretrained=False, epochs=args.fast_epochs, batch_size=batch, tta=1,
                  device=str(device.type), precision="bf16" if device.type == "cuda" else "fp32",
                  data_dirs=[str(data_dir)], compile=args.compile)
    out = args.out / "runs" / f"{name}-bs{batch}"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train(cfg, out, progress=False, retrain=True)
    hist = pd.read_csv(out / "history.csv").iloc[1:]  # epoch 1 holds cudnn autotuning and allocator warm-up
    metrics = json.loads((out / "metrics.json").read_text())
    train_ips = metrics["n_train"] / statistics.median(hist["train_seconds"])
    val_ips = metrics["n_val"] / statistics.median(hist["val_seconds"])
    pipeline = "fast+compile" if args.compile else "fast"
    return _row(name, pipeline, "bf16" if device.type == "cuda" else "fp32", batch, train_ips, val_ips, device)


def _row(name, pipeline, precision, batch, train_ips, val_ips, device) -> dict:
    epoch_s = KAGGLE_TRAIN / train_ips + KAGGLE_VAL / val_ips
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    row = dict(device=_device_name(device), experiment=name, pipeline=pipeline, precision=precision, batch=batch,
               img_per_s=round(train_ips, 1), epoch_s=round(epoch_s, 2), peak_mem_gb=round(peak, 2),
               date=datetime.date.today().isoformat())
    print(f"  {name:<15} {pipeline:<8} {precision} bs {batch:<4} train {train_ips:8.1f} img/s  "
          f"val {val_ips:8.1f} img/s  epoch {epoch_s:8.1f} s  peak {peak:.1f} GiB", flush=True)
    return row


def markdown(df: pd.DataFrame, n_images: int) -> str:
    lines = ["| model | paper s/epoch (RTX A6000) | faithful s/epoch | fast s/epoch (batch) | target | speed-up vs "
             "paper | speed-up vs faithful |", "|---|---|---|---|---|---|---|"]
    for name in df["experiment"].unique():
        rows = df[df["experiment"] == name]
        faith = rows[rows["pipeline"] == "faithful"]["epoch_s"]
        fast_rows = rows[rows["pipeline"].str.startswith("fast")].sort_values("epoch_s")
        if fast_rows.empty:
            continue
        best = fast_rows.iloc[0]
        f = float(faith.iloc[0]) if len(faith) else math.nan
        fast_s = float(best["epoch_s"])
        lines.append(f"| {EXPERIMENTS[name].label} | {PAPER_EPOCH_S[name]} | {f:.1f} | {fast_s:.1f} "
                     f"({int(best['batch'])}) | <= {TARGET_EPOCH_S[name]} | {PAPER_EPOCH_S[name] / fast_s:.1f}x "
                     f"| {f / fast_s:.1f}x |")
    dev = df["device"].iloc[0]
    return (f"Epoch = 55,420 training + 6,158 validation images, extrapolated from steady-state throughput on {dev} "
            f"({df['date'].iloc[0]}), measured on {n_images:,} synthetic Kaggle-sized (424x424) JPEGs with random "
            "initial weights. faithful = the paper's PIL DataLoader (8 workers), fp32, batch 105; fast = "
            "galaxylib.training (GPU cache and augmentation, bf16, channels_last, fused Adam).\n\n"
            + "\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=6000, help="synthetic galaxies to generate (Kaggle-sized JPEGs)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--pipelines", nargs="+", default=["faithful", "fast"], choices=["faithful", "fast"])
    p.add_argument("--fast-batches", nargs="+", type=int, default=[105, 256])
    p.add_argument("--faithful-batch", type=int, default=105, help="the paper's batch (smaller only for tiny checks)")
    p.add_argument("--steps", type=int, default=24, help="timed steps of the faithful pipeline")
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--fast-epochs", type=int, default=3, help="epochs of the fast runs (the first is warm-up)")
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers of the faithful pipeline (paper: 8)")
    p.add_argument("--compile", action="store_true", help="torch.compile in the fast pipeline")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", type=Path, default=None, help="existing Kaggle-layout folder (default: generate)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    p.add_argument("--time-limit", type=float, default=540, help="seconds; stop starting new measurements after")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)

    data_dir = args.data
    if data_dir is None:
        from galaxylib.synth import generate

        data_dir = gdata.default_cache_dir() / "bench" / f"synth-{args.n_images}"
        summary = generate(data_dir, args.n_images, seed=2024, progress=False)
        print(f"synthetic data: {args.n_images} galaxies in {data_dir} ({summary.images_per_s:.0f} img/s)", flush=True)
    data = gdata.load_folders(data_dir)

    csv_path = args.out / "throughput.csv"
    rows = []
    for name in args.models:
        for pipeline in args.pipelines:
            for batch in ([args.faithful_batch] if pipeline == "faithful" else args.fast_batches):
                if time.perf_counter() - t_start > args.time_limit:
                    print(f"time limit reached: {name} {pipeline} {batch} not measured", flush=True)
                    continue
                try:
                    row = faithful(name, data, device, args) if pipeline == "faithful" else \
                        fast(name, data_dir, device, args, batch)
                except torch.cuda.OutOfMemoryError as err:
                    print(f"  {name} {pipeline} bs {batch}: out of memory ({err})", flush=True)
                    continue
                rows.append(row)
                pd.DataFrame(rows, columns=COLUMNS).to_csv(csv_path, index=False)  # nothing lost on a timeout
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.to_csv(csv_path, index=False)
    if not df.empty:
        (args.out / "throughput.md").write_text(markdown(df, len(data)))
        print(markdown(df, len(data)))
    print(f"wrote {csv_path} in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
