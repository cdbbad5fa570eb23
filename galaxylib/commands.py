"""What each command of `python -m galaxylib` does: turn the parsed arguments into calls to the library.

One function per command (`run_<command>(args) -> exit status`); the modules they call do the work and raise
`UserError` for anything the user can fix. Imports are local so that a command loads only what it needs
(check-data and synth never import torch).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from galaxylib.errors import UserError


def run_check_data(args: argparse.Namespace) -> int:
    """Validate folders and print a summary; a DataError (exit 2) lists every problem when they are bad."""
    from galaxylib.data.check import check_folders

    for line in check_folders(args.dirs, tol=float(args.tol), skip_bad=bool(args.skip_bad)):
        print(line)
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from galaxylib.synth import generate

    summary = generate(args.out, args.n, args.seed, volunteers=args.volunteers, workers=args.workers)
    if not summary.reused:
        print(f"wrote {summary.n} synthetic galaxies to {args.out} in {summary.seconds:.1f} s "
              f"({summary.images_per_s:.0f} images/s)")  # fmt: skip
    print(f"noise floor (RMSE of {args.volunteers}-volunteer labels vs infinite volunteers): "
          f"{summary.noise_floor:.4f}")  # fmt: skip
    return 0


def run_info(args: argparse.Namespace) -> int:
    from galaxylib.experiments import EXPERIMENTS, get_profile, resolve
    from galaxylib.models import build_model, count_parameters

    cfg = resolve(args.experiment, args.profile)
    exp = EXPERIMENTS[args.experiment]
    seeds = get_profile(args.profile).seeds_of(args.experiment)
    model = build_model(cfg.model, img_size=cfg.img_size, pretrained=False, head=cfg.head,
                        tree_output=cfg.tree_output)
    where = "an ablation, not in the paper's tables" if exp.table == "ablation" else f"paper Table {exp.table}"
    print(f"{exp.name}: {exp.label} ({where})")
    print(f"  parameters     {count_parameters(model):,} at {cfg.img_size} px")
    print(f"  pretrained     {exp.paper_weights or 'no (random initialisation)'}")
    print(f"  seeds          {len(seeds)} ({', '.join(map(str, seeds))}) in the {args.profile} profile; the split "
          f"(split_seed {cfg.split_seed}) is the same for every seed")
    for key, value in cfg.to_dict().items():
        if key not in ("data_dirs", "world_size"):
            print(f"  {key:<14} {value}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from galaxylib.experiments import resolve
    from galaxylib.metrics import seed_summary
    from galaxylib.train import train

    for d in args.data_dirs:
        if not d.is_dir():
            raise UserError(f"{d}: no such data folder")
    seeds = args.seeds or [None]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds lists a seed twice: {' '.join(map(str, args.seeds))}")
    if args.holdout is not None and args.holdout < 0:
        raise UserError("--holdout must be 0 or more")
    finished = []
    for seed in seeds:
        cfg = resolve(args.experiment, args.profile, device=args.device, precision=args.precision,
                      epochs=args.epochs, batch_size=args.batch_size, max_images=args.max_images,
                      img_size=args.img_size, lr=args.lr, tta=args.tta, pretrained=args.pretrained,
                      weights_file=str(args.weights_file) if args.weights_file else None, head=args.head,
                      tree_output=args.tree_output, compile=args.compile, channels_last=args.channels_last,
                      data_dirs=[str(d.resolve()) for d in args.data_dirs], seed=seed, holdout=args.holdout)
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise UserError("--epochs and --batch-size must be at least 1")
        out = args.out / f"seed{cfg.seed}" if len(seeds) > 1 else args.out
        metrics = train(cfg, out, progress=not args.quiet, retrain=args.retrain,
                        sync_batchnorm=args.sync_batchnorm, stop_after_epochs=args.stop_after_epochs)
        if not metrics.get("finished", True) or int(os.environ.get("RANK", "0")) != 0:
            continue
        finished.append(metrics)
        print(f"{out}: seed {cfg.seed}: val RMSE {metrics['val_rmse']:.5f} (with {metrics['tta_views']} TTA views "
              f"{metrics['val_rmse_tta']:.5f}); mean predictor {metrics['mean_predictor_rmse']:.5f}; label-noise "
              f"floor {metrics['noise_floor']:.5f}")
    if len(finished) > 1:
        print(f"{args.out}: val RMSE (TTA) over {len(finished)} seeds: "
              f"{seed_summary([m['val_rmse_tta'] for m in finished])}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from galaxylib import predict
    from galaxylib.rundir import RunDir, load_run

    cfg, model = load_run(args.run, args.checkpoint)
    ids, paths = predict.images_in(args.images)
    if args.split != "all":
        wanted = RunDir(args.run).ids_in(args.split)
        keep = np.array([i in wanted for i in ids])
        if not keep.any():
            raise UserError(f"none of the images in {args.images[0]} are in the run's {args.split} split")
        ids, paths = ids[keep], [p for p, k in zip(paths, keep, strict=True) if k]
    tta = args.tta or cfg.tta
    preds = predict.predict_files(model, cfg, paths, tta=tta, device=args.device, batch_size=args.batch_size)
    predict.write_submission(ids, preds, args.out)
    predict.check_submission(args.out, expected_ids=ids)
    print(f"{args.out}: {len(ids)} galaxies, {tta} views, from {args.run} ({args.checkpoint})")
    info = {"run": str(args.run), "checkpoint": args.checkpoint, "config": cfg.to_dict()}
    Path(str(args.out) + ".json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


def run_score(args: argparse.Namespace) -> int:
    import math

    from galaxylib import tree
    from galaxylib.metrics import score_files

    scores = score_files(args.pred, args.truth)
    print(f"RMSE over all labelled entries: {scores['all']:.5f}")
    for q in tree.QUESTIONS:
        value = scores[f"Q{q.number}"]
        text = "not labelled" if math.isnan(value) else f"{value:.5f}"
        print(f"  Q{q.number:<2} {q.text:<32} {text}")
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    from galaxylib import reproduce

    start = time.perf_counter()
    names = list(args.only) if args.only else list(reproduce.NOTEBOOKS)
    names = [Path(n).stem for n in names]  # accept '01_baseline.ipynb' too
    seconds = reproduce.run_notebooks(names, profile=args.profile, data_dirs=args.data_dirs, device=args.device,
                                      retrain=reproduce.parse_bool(args.retrain), results_dir=args.results_dir,
                                      seeds=args.seeds)
    out = reproduce.outputs(args.results_dir, args.profile)
    total = time.perf_counter() - start
    print(f"done in {total:.0f} s ({', '.join(f'{n} {s:.0f} s' for n, s in seconds.items())})")
    print(f"  notebooks: {out.notebooks}\n  tables:    {out.tables}\n  figures:   {out.figures}\n"
          f"  runs:      {out.runs}")
    return 0


def run_study(args: argparse.Namespace) -> int:
    import shlex

    from galaxylib.study import run_study as study

    if args.holdout < 0 or (args.seeds is not None and args.seeds < 1):
        raise UserError("--holdout must be 0 or more and --seeds at least 1")
    command = "python -m galaxylib " + " ".join(shlex.quote(a) for a in args.argv)
    result = study(args.name, args.experiments, data_dirs=args.data_dirs, profile=args.profile,
                   results_dir=args.results_dir, holdout=args.holdout, seeds=args.seeds, device=args.device,
                   retrain=args.retrain, progress=not args.quiet, command=command)
    print(f"{result.root}: {len(result.tables)} tables in {result.seconds / 60:.1f} min "
          f"({', '.join(result.tables)}); see {result.root / 'RESULTS.md'}")
    if "holdout" in result.tables:
        for _, row in result.tables["holdout"].iterrows():
            print(f"  held out: {row['Model']}: RMSE {row['RMSE (TTA)']:.5f} over {row['Seeds']} seeds, "
                  f"{row['Ratio']:.3f} of the mean predictor's (worst seed {row['Worst seed ratio']:.3f})")
    return 0
