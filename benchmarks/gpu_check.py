"""Checks of the CUDA fast path that the CPU test suite cannot make, in under a minute on one GPU.

1. The batched affine augmentation gives the same images on CUDA as on the CPU.
2. A short training run on CUDA (cache on the GPU, bf16, channels_last, fused Adam) reaches a validation RMSE
   close to the same run in fp32, and the validation metrics of its model are the same through the fast path
   (GPU cache, batched resample, bf16) as through a plain CPU fp32 evaluation.
3. Resume on CUDA: a run stopped after one epoch and resumed ends with the same loss history as a whole run
   (bitwise equality is not expected on a GPU; close agreement is).

    PYTHONPATH=. python benchmarks/gpu_check.py --data DIR --out OUT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from galaxylib import data as gdata  # noqa: E402
from galaxylib import metrics, prediction  # noqa: E402
from galaxylib.augment import TrainAugment, affine_resample  # noqa: E402
from galaxylib.experiments import resolve  # noqa: E402
from galaxylib.rundir import load_run  # noqa: E402
from galaxylib.training import train  # noqa: E402


def check(name: str, ok: bool, detail: str, results: list) -> None:
    results.append({"check": name, "ok": bool(ok), "detail": detail})
    print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda", help="cpu only for a dry run of this script")
    p.add_argument("--max-images", type=int, default=3000)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    results: list[dict] = []

    # 1. augmentation: CUDA == CPU
    data = gdata.load_folders(args.data, progress=False)
    cache = torch.from_numpy(np.array(gdata.build_cache(data.image_paths[:64], size=256, progress=False)))
    aug = TrainAugment(out_size=128, crop_range=(184, 352))
    params = aug.sample(64, torch.Generator().manual_seed(0))
    x = cache.permute(0, 3, 1, 2)
    cpu = affine_resample(x, source_crop=424, out_size=128, max_crop=351, **params)
    gpu = affine_resample(x.to(dev), source_crop=424, out_size=128, max_crop=351,
                          **{k: v.to(dev) for k, v in params.items()}).cpu()
    diff = float((cpu - gpu).abs().max())
    check("augmentation CUDA vs CPU", diff < 1e-3, f"max abs diff {diff:.2e}", results)

    # 2. bf16 vs fp32 on CUDA, and fast-path validation vs a plain CPU fp32 evaluation
    runs = {}
    for precision in ("bf16", "fp32"):
        cfg = resolve("baseline", "paper", data_dirs=[str(args.data)], epochs=3, device=dev.type, precision=precision,
                      tta=1, max_images=args.max_images, pretrained=False)
        runs[precision] = train(cfg, args.out / f"runs/baseline-{precision}", progress=False, retrain=True)
    a, b = runs["fp32"]["val_rmse"], runs["bf16"]["val_rmse"]
    check("bf16 vs fp32 validation RMSE", abs(a - b) / a < 0.05, f"fp32 {a:.5f}, bf16 {b:.5f}", results)
    check("cache held on the GPU", runs["bf16"]["images_on"] == "gpu", runs["bf16"]["images_on"], results)

    cfg, model = load_run(args.out / "runs/baseline-bf16", "last")
    split = pd.read_csv(args.out / "runs/baseline-bf16/split.csv")
    sub = gdata.load_folders(args.data, progress=False).subset(
        np.flatnonzero(np.isin(data.ids, split.loc[split["part"] == "val", "GalaxyID"])))
    val_cache = torch.from_numpy(np.array(gdata.build_cache(sub.image_paths, size=cfg.cache_size, progress=False)))
    kw = dict(source_crop=cfg.source_crop, out_size=cfg.img_size, eval_crop=cfg.eval_crop, tta=1)
    slow = prediction.predict(model, val_cache, device="cpu", **kw)
    fast = prediction.predict(model.to(dev).to(memory_format=torch.channels_last), val_cache, device=dev,
                            amp_dtype=torch.bfloat16, channels_last=True, **kw)
    r_slow, r_fast = metrics.rmse(slow, sub.labels), metrics.rmse(fast, sub.labels)
    check("validation RMSE fast path vs CPU fp32", abs(r_slow - r_fast) < 2e-3,
          f"CPU fp32 {r_slow:.5f}, CUDA bf16 {r_fast:.5f}, train-loop value {runs['bf16']['val_rmse']:.5f}", results)

    # 3. resume on CUDA
    cfg = resolve("baseline", "paper", data_dirs=[str(args.data)], epochs=2, device=dev.type, tta=1,
                  max_images=args.max_images * 2 // 3, pretrained=False)
    train(cfg, args.out / "runs/whole", progress=False, retrain=True)
    train(cfg, args.out / "runs/split", progress=False, retrain=True, stop_after_epochs=1)
    train(cfg, args.out / "runs/split", progress=False)
    ha = pd.read_csv(args.out / "runs/whole/history.csv")["val_loss"].to_numpy()
    hb = pd.read_csv(args.out / "runs/split/history.csv")["val_loss"].to_numpy()
    check("resume on CUDA", np.allclose(ha, hb, rtol=0.02), f"whole {ha.round(5)}, resumed {hb.round(5)}", results)

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    (args.out / "gpu_check.json").write_text(json.dumps({"device": name,
                                                         "torch": torch.__version__, "checks": results}, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
