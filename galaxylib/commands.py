"""The `info`, `train` and `predict` commands: argument handling around galaxylib.train and evaluate."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from galaxylib import evaluate
from galaxylib.cli import UserError
from galaxylib.experiments import EXPERIMENTS, resolve


def run_info(args: argparse.Namespace) -> int:
    from galaxylib.models import build_model, count_parameters

    cfg = resolve(args.experiment, args.profile)
    exp = EXPERIMENTS[args.experiment]
    model = build_model(cfg.model, img_size=cfg.img_size, pretrained=False, head=cfg.head)
    print(f"{exp.name}: {exp.label} (paper Table {exp.table})")
    print(f"  parameters     {count_parameters(model):,} at {cfg.img_size} px")
    print(f"  pretrained     {exp.paper_weights or 'no (random initialisation)'}")
    for key, value in cfg.to_dict().items():
        if key not in ("data_dirs", "world_size"):
            print(f"  {key:<14} {value}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from galaxylib.train import train

    for d in args.data_dirs:
        if not d.is_dir():
            raise UserError(f"{d}: no such data folder")
    cfg = resolve(args.experiment, args.profile, device=args.device, precision=args.precision,
                  epochs=args.epochs, batch_size=args.batch_size, max_images=args.max_images,
                  img_size=args.img_size, lr=args.lr, tta=args.tta, pretrained=args.pretrained,
                  weights_file=str(args.weights_file) if args.weights_file else None, head=args.head,
                  tree_output=args.tree_output, compile=args.compile, channels_last=args.channels_last,
                  data_dirs=[str(d.resolve()) for d in args.data_dirs])
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise UserError("--epochs and --batch-size must be at least 1")
    metrics = train(cfg, args.out, progress=not args.quiet, retrain=args.retrain,
                    sync_batchnorm=args.sync_batchnorm, stop_after_epochs=args.stop_after_epochs)
    if not metrics.get("finished", True) or int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"{args.out}: val RMSE {metrics['val_rmse']:.5f} (with {metrics['tta_views']} TTA views "
          f"{metrics['val_rmse_tta']:.5f}); mean predictor {metrics['mean_predictor_rmse']:.5f}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from galaxylib.train import load_run

    cfg, model = load_run(args.run, args.checkpoint)
    ids, paths = evaluate.images_in(args.images)
    if args.split != "all":
        split_path = args.run / "split.csv"
        if not split_path.is_file():
            raise UserError(f"{args.run}: no split.csv, cannot select the {args.split} galaxies")
        split = pd.read_csv(split_path)
        wanted = set(split.loc[split["part"] == args.split, "GalaxyID"].astype(np.int64))
        keep = np.array([i in wanted for i in ids])
        if not keep.any():
            raise UserError(f"none of the images in {args.images[0]} are in the run's {args.split} split")
        ids, paths = ids[keep], [p for p, k in zip(paths, keep, strict=True) if k]
    preds = evaluate.predict_files(model, cfg, paths, tta=args.tta or cfg.tta, device=args.device,
                                   batch_size=args.batch_size)
    evaluate.write_submission(ids, preds, args.out)
    evaluate.check_submission(args.out, expected_ids=ids)
    print(f"{args.out}: {len(ids)} galaxies, {args.tta or cfg.tta} views, from {args.run} ({args.checkpoint})")
    info = {"run": str(args.run), "checkpoint": args.checkpoint, "config": cfg.to_dict()}
    Path(str(args.out) + ".json").write_text(json.dumps(info, indent=2) + "\n")
    return 0
