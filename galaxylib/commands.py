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
    import torch

    from galaxylib.experiments import EXPERIMENTS, get_profile, resolve
    from galaxylib.models import build_model, count_parameters

    cfg = resolve(args.experiment, args.profile)
    exp = EXPERIMENTS[args.experiment]
    seeds = get_profile(args.profile).seeds_of(args.experiment)
    with torch.device("meta"):  # parameters counted without allocating or initialising them (ConvNeXt-L: 198 M)
        model = build_model(cfg.model, img_size=cfg.img_size, pretrained=False, head=cfg.head,
                            tree_output=cfg.tree_output)
    where = "an ablation, not in the paper's tables" if exp.table == "ablation" else f"paper Table {exp.table}"
    print(f"{exp.name}: {exp.label} ({where})")
    print(f"  parameters     {count_parameters(model):,} at {cfg.img_size} px")
    spec = exp.spec
    if exp.pretrained:
        print(f"  pretrained     {spec.paper_weights}: {spec.paper_weights_file} (the paper's file; "
              f"{spec.paper_source})")
    else:
        print(f"  pretrained     no (random initialisation, as the paper: {spec.paper_source})")
    print(f"  seeds          {len(seeds)} ({', '.join(map(str, seeds))}) in the {args.profile} profile; the split "
          f"(split_seed {cfg.split_seed}) is the same for every seed")
    for key, value in cfg.to_dict().items():
        if key not in ("data_dirs", "world_size"):
            print(f"  {key:<14} {value}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from galaxylib.experiments import resolve
    from galaxylib.metrics import seed_summary
    from galaxylib.training import train

    for d in args.data_dirs:
        if not d.is_dir():
            raise UserError(f"{d}: no such data folder")
    seeds = args.seeds or [None]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds lists a seed twice: {' '.join(map(str, args.seeds))}")
    finished = []
    for seed in seeds:
        cfg = resolve(args.experiment, args.profile, device=args.device, precision=args.precision,
                      epochs=args.epochs, batch_size=args.batch_size, max_images=args.max_images,
                      img_size=args.img_size, lr=args.lr, tta=args.tta, pretrained=args.pretrained,
                      weights_file=str(args.weights_file) if args.weights_file else None, head=args.head,
                      tree_output=args.tree_output, compile=args.compile, channels_last=args.channels_last,
                      images_on=args.images_on, data_dirs=[str(d.resolve()) for d in args.data_dirs], seed=seed,
                      holdout=args.holdout)
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
    """Every input is checked before any compute (--out writable, the run and its checkpoint, the inputs); the
    images stream through the run's model into --out (galaxylib.survey), which is replaced only by a complete,
    checked file; rank 0 reports."""
    from galaxylib import survey
    from galaxylib.data.inputs import from_catalog, from_folders
    from galaxylib.data.problems import Problem, raise_problems
    from galaxylib.data.read import image_problems
    from galaxylib.distributed import init_distributed
    from galaxylib.fileio import atomic_write_text, check_writable
    from galaxylib.rundir import RunDir, load_run

    info_path = Path(str(args.out) + ".json")
    check_writable(args.out, "--out")
    check_writable(info_path, "--out's record")
    cfg, model = load_run(args.run, args.checkpoint)
    inputs = from_catalog(args.catalog) if args.catalog else from_folders(args.images)
    if args.split != "all":
        if not inputs.kaggle:
            raise UserError(f"--split {args.split} needs Kaggle GalaxyIDs, but {inputs.source} has other IDs")
        wanted = RunDir(args.run).ids_in(args.split)
        inputs = inputs.subset([int(i) in wanted for i in inputs.ids])
        if not len(inputs):
            raise UserError(f"none of the images in {inputs.source} are in the run's {args.split} split")
    # before any compute: every file opens as an image of the right size (its header only: the pixels are decoded
    # once, while predicting, where a truncated file stops the run with the chunks done so far kept)
    problems = image_problems(inputs.paths, decode=False, kaggle_frame=not args.resize, progress=not args.quiet)
    raise_problems([Problem(p.file, p.what + " (--resize resizes images of other sizes)")
                    if p.what.startswith("image is ") else p for p in problems])  # fmt: skip
    ddp = init_distributed(args.device)
    tta = args.tta or cfg.tta
    result = survey.predict_to_file(model, cfg, inputs, args.out, tta=tta, device=args.device,
                                    batch_size=args.batch_size, chunk_size=args.chunk_size, resize=args.resize,
                                    workers=args.workers, progress=not args.quiet, dist=ddp,
                                    run_label=f"{Path(args.run).resolve()}:{args.checkpoint}")  # fmt: skip
    if not ddp.is_main:
        return 0
    notes = [f"resumed: {result.resumed} images were done before"] if result.resumed else []
    if result.resized:
        notes.append(f"{result.resized} images resized to 424x424 (--resize)")
    if not inputs.kaggle:
        notes.append("IDs are not Kaggle GalaxyIDs: an id_str column, not a Kaggle submission")
    print(f"{args.out}: {result.n} galaxies, {tta} views, from {args.run} ({args.checkpoint})"
          + "".join(f"; {n}" for n in notes))  # fmt: skip
    info = {"run": str(args.run), "checkpoint": args.checkpoint, "config": cfg.to_dict(), "tta": tta,
            "images": result.n, "source": inputs.source, "id_column": result.id_column,
            "kaggle_submission": inputs.kaggle, "resized_to_424": result.resized, "world_size": result.world_size}
    atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")
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
                                      retrain=args.retrain, results_dir=args.results_dir,
                                      allow_random_init=args.allow_random_init,
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
