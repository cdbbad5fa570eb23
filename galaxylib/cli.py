"""The command line: `python -m galaxylib <command> ...`.

This file only declares the arguments; each command is a short function in galaxylib.commands that calls the
modules doing the work. So `--help` is fast and a bad argument never needs torch to be imported. Errors the
user can fix (a missing folder, a bad label file, an unknown experiment) are raised as `UserError`
(galaxylib.errors) and printed as one line, with a non-zero exit, instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from galaxylib.errors import UserError


def _add_check_data(sub) -> None:
    p = sub.add_parser("check-data", help="validate Kaggle-layout data folders and summarise them")
    p.add_argument("dirs", nargs="+", type=Path, help="folders holding training_solutions_rev1*.csv and images")
    p.add_argument("--tol", type=float, default=1e-3, help="decision-tree constraint tolerance (default 1e-3)")
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows (each one is listed) instead of failing")
    p.set_defaults(func="run_check_data")


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic Galaxy Zoo in the Kaggle layout")
    p.add_argument("--n", type=int, required=True, help="number of galaxies")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--volunteers", type=int, default=40, help="simulated volunteers per galaxy")
    p.set_defaults(func="run_synth")


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="an experiment's settings (scaled by a profile) and parameter count")
    p.add_argument("--experiment", required=True)
    p.add_argument("--profile", default="paper")
    p.set_defaults(func="run_info")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one experiment into a run folder (resumes or reuses it)")
    p.add_argument("--experiment", required=True, help="a Table I/II row, e.g. baseline, resnet50, dinov2_base")
    p.add_argument("--profile", default="quick", help="paper | quick | smoke (default quick)")
    p.add_argument("--data-dir", nargs="+", type=Path, required=True, dest="data_dirs",
                   help="Kaggle-layout folders (several are combined)")
    p.add_argument("--out", type=Path, required=True,
                   help="run folder (with several --seeds: one folder per seed inside it, seed<k>/)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help="training seeds (initialisation, batch order, augmentation; default 1, the paper's); the "
                        "split stays the paper's whatever the seed")
    p.add_argument("--holdout", type=int, metavar="N",
                   help="set N fully labelled galaxies aside (a fixed seeded choice), never trained or validated on")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--precision", default="auto", help="auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch (default: the experiment's, 105 in the paper)")
    p.add_argument("--max-images", type=int, help="use at most this many galaxies (train + validation)")
    p.add_argument("--img-size", type=int, help="model input px (default: the profile's)")
    p.add_argument("--lr", type=float)
    p.add_argument("--tta", type=int, help="test-time views for the final scores (default 16 = 8 rotations x 2)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="load pretrained weights (default: as the paper)")
    p.add_argument("--weights-file", type=Path, help="pretrained weights file (.pth/.safetensors) to load")
    p.add_argument("--head", choices=["faithful", "plain"], help="faithful: Linear(1000,37) on the ImageNet head")
    p.add_argument("--tree-output", action="store_true", default=None,
                   help="Dieleman's decision-tree output layer instead of the sigmoid (ablation)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    p.add_argument("--sync-batchnorm", action="store_true", help="SyncBatchNorm under torchrun")
    p.add_argument("--retrain", action="store_true", help="discard a finished or interrupted run in --out")
    p.add_argument("--stop-after-epochs", type=int, metavar="N",
                   help="train at most N epochs in this call, then exit; the same command resumes (time-limited jobs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func="run_train")


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="a Kaggle submission file for every JPEG in a folder, from a run")
    p.add_argument("--run", type=Path, required=True, help="run folder (its best checkpoint is used)")
    p.add_argument("--images", type=Path, nargs="+", required=True,
                   help="folder(s) of JPEGs (images_test_rev1/, or a Kaggle-layout folder)")
    p.add_argument("--out", type=Path, required=True, help="submission CSV to write")
    p.add_argument("--tta", type=int, help="views (default: the run's, 16)")
    p.add_argument("--split", choices=["all", "val", "train"], default="all",
                   help="only the run's validation (or training) galaxies among the images")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.set_defaults(func="run_predict")


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="RMSE of a submission against labels, overall and per question")
    p.add_argument("--pred", type=Path, required=True, help="submission CSV")
    p.add_argument("--truth", type=Path, nargs="+", required=True, help="label CSV(s) or Kaggle-layout folder(s)")
    p.set_defaults(func="run_score")


def _add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="run the notebooks headless (papermill) into results/<profile>/")
    p.add_argument("--profile", default="quick", help="quick (default, a CPU in minutes) | paper | smoke")
    p.add_argument("--data-dir", nargs="+", type=Path, dest="data_dirs", default=None,
                   help="Kaggle-layout folders (default: synthetic data, made once; paper needs them)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--retrain", default="False", help="True: train every run again instead of reusing it")
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="default: results")
    p.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="only these notebooks, e.g. 04_paper_tables")
    p.add_argument("--seeds", type=int, metavar="N",
                   help="train every row with seeds 1..N (default: the profile's; quick: 3 for the baseline CNNs)")
    p.set_defaults(func="run_reproduce")


def _add_study(sub) -> None:
    p = sub.add_parser("study", help="train rows x seeds on given data and write tables only into results/<name>/")
    p.add_argument("--name", required=True, help="the results folder's name, e.g. sample -> results/sample/")
    p.add_argument("--experiments", nargs="+", required=True, metavar="EXPERIMENT",
                   help="the rows, e.g. baseline baseline_cbam")
    p.add_argument("--data-dir", nargs="+", type=Path, required=True, dest="data_dirs",
                   help="Kaggle-layout folders (several are combined)")
    p.add_argument("--profile", default="quick", help="paper | quick | smoke (default quick)")
    p.add_argument("--holdout", type=int, default=0, metavar="N",
                   help="set N fully labelled galaxies aside (a fixed seeded choice); score the final models on them")
    p.add_argument("--seeds", type=int, metavar="N", help="seeds 1..N of every row (default: the profile's)")
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="default: results")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--retrain", action="store_true", help="train every run again instead of reusing it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func="run_study")


COMMANDS = [_add_check_data, _add_synth, _add_info, _add_train, _add_predict, _add_score, _add_reproduce, _add_study]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m galaxylib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed, for records (study's RESULTS.md)
    try:
        from galaxylib import commands

        return int(getattr(commands, args.func)(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
