"""The command line: `python -m galaxylib <command> ...`.

This file only declares the arguments; each command is a short function in galaxylib.commands that calls the
modules doing the work. So `--help` is fast and a bad argument never needs torch to be imported. Errors the
user can fix (a missing folder, a bad label file, an unknown experiment) are raised as `UserError`
(galaxylib.errors) and printed as one line, with a non-zero exit, instead of a traceback.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from galaxylib import __version__
from galaxylib.errors import UserError
from galaxylib.experiments import EXPERIMENTS, PROFILES  # pure data: no torch

EXPERIMENT_NAMES = sorted(EXPERIMENTS)
PROFILE_NAMES = list(PROFILES)  # paper, quick, smoke

# -- option types: every value is range-checked when parsed, so a bad one is one line naming the option ---------


def _number_type(cast: type, low: float, strict: bool, what: str):
    """An argparse `type=` function: `cast` the text, then require a finite value >= low (> low when strict)."""

    def parse(text: str):
        try:
            value = cast(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__doc__ = what
    return parse


positive_int = _number_type(int, 1, False, "a whole number >= 1")  # epochs, batch sizes, image counts, views
non_negative_int = _number_type(int, 0, False, "a whole number >= 0")  # seeds
positive_float = _number_type(float, 0.0, True, "a finite number > 0")  # learning rates
non_negative_float = _number_type(float, 0.0, False, "a finite number >= 0")  # tolerances


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N."""
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:[0-9]+", text):
        return text
    raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", type=device, help="auto | cpu | cuda | cuda:N")


class UsageError(UserError):
    """A bad command line (unknown option, missing or out-of-range value): one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is a UsageError (one line, no usage block) instead of SystemExit."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _add_check_data(sub) -> None:
    p = sub.add_parser("check-data", help="validate Kaggle-layout data folders and summarise them")
    p.add_argument("dirs", nargs="+", type=Path, help="folders holding training_solutions_rev1*.csv and images")
    p.add_argument("--tol", type=non_negative_float, default=1e-3,
                   help="decision-tree constraint tolerance (default 1e-3)")
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows (each one is listed) instead of failing")
    p.set_defaults(func="run_check_data")


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic Galaxy Zoo in the Kaggle layout")
    p.add_argument("--n", type=positive_int, required=True, help="number of galaxies")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--workers", type=positive_int, default=None, help="processes (default: all cores)")
    p.add_argument("--volunteers", type=positive_int, default=40, help="simulated volunteers per galaxy")
    p.set_defaults(func="run_synth")


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="an experiment's settings (scaled by a profile) and parameter count")
    p.add_argument("--experiment", required=True, choices=EXPERIMENT_NAMES, metavar="EXPERIMENT",
                   help=f"a Table I/II row: {', '.join(EXPERIMENT_NAMES)}")
    p.add_argument("--profile", default="quick", choices=PROFILE_NAMES, help="default quick")
    p.set_defaults(func="run_info")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one experiment into a run folder (resumes or reuses it)")
    p.add_argument("--experiment", required=True, choices=EXPERIMENT_NAMES, metavar="EXPERIMENT",
                   help=f"a Table I/II row: {', '.join(EXPERIMENT_NAMES)}")
    p.add_argument("--profile", default="quick", choices=PROFILE_NAMES,
                   help="smoke (seconds) | quick (a CPU in minutes, the default) | paper (the paper's settings)")
    p.add_argument("--data-dir", nargs="+", type=Path, required=True, dest="data_dirs",
                   help="Kaggle-layout folders (several are combined)")
    p.add_argument("--out", type=Path, required=True,
                   help="run folder (with several --seeds: one folder per seed inside it, seed<k>/)")
    p.add_argument("--seeds", type=non_negative_int, nargs="+", metavar="SEED",
                   help="training seeds (initialisation, batch order, augmentation; default 1, the paper's); the "
                        "split stays the paper's whatever the seed")
    p.add_argument("--holdout", type=non_negative_int, metavar="N",
                   help="set N fully labelled galaxies aside (a fixed seeded choice), never trained or validated on")
    _add_device(p)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "tf32", "bf16"],
                   help="auto: bf16 on CUDA, fp32 on the CPU; fp32: PyTorch's default arithmetic, the paper's; "
                   "tf32: fp32 with TF32 matrix products on CUDA")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, help="global batch (default: the experiment's, 105 in the paper)")
    p.add_argument("--max-images", type=positive_int, help="use at most this many galaxies (train + validation)")
    p.add_argument("--img-size", type=positive_int, help="model input px (default: the profile's)")
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--tta", type=positive_int,
                   help="test-time views for the final scores (default 16 = 8 rotations x 2)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="load pretrained weights (default: as the paper)")
    p.add_argument("--weights-file", type=Path, help="pretrained weights file (.pth/.safetensors) to load")
    p.add_argument("--head", choices=["faithful", "plain"], help="faithful: Linear(1000,37) on the ImageNet head")
    p.add_argument("--tree-output", action="store_true", default=None,
                   help="Dieleman's decision-tree output layer instead of the sigmoid (ablation)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None)
    p.add_argument("--images-on", choices=["auto", "device", "stream"], default=None,
                   help="auto (default): the image cache on the GPU when it fits, else streamed from disk; "
                        "device: the whole cache in GPU memory (or RAM on the CPU); stream: read batch by batch "
                        "from the cache file (memory bounded by a few batches)")
    p.add_argument("--sync-batchnorm", action="store_true", help="SyncBatchNorm under torchrun")
    p.add_argument("--retrain", action="store_true", help="discard a finished or interrupted run in --out")
    p.add_argument("--stop-after-epochs", type=positive_int, metavar="N",
                   help="train at most N epochs in this call, then exit; the same command resumes (time-limited jobs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func="run_train")


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="predictions for every image in folders or a catalogue, from a run "
                       "(a Kaggle submission file for Kaggle GalaxyIDs); streamed, resumable, shards under torchrun")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--images", type=Path, nargs="+",
                       help="folder(s) of images (images_test_rev1/, a Kaggle-layout folder, or *.jpg/*.png); "
                            "the ID is the file name")
    where.add_argument("--catalog", type=Path, metavar="FILE",
                       help="a CSV with an ID column (id_str or GalaxyID) and an image path column (file_loc or "
                            "path; relative to the CSV's folder), as Zoobot's catalogues")
    p.add_argument("--run", "--run-dir", dest="run", type=Path, required=True,
                   help="run folder (its best checkpoint is used); under torchrun write --run-dir, since "
                        "torchrun's own parser reads --run as its --run-path")
    p.add_argument("--out", type=Path, required=True,
                   help="CSV to write: a Kaggle submission (GalaxyID column) when every ID is a whole number, "
                        "else an id_str column; replaced only by a complete, checked file")
    p.add_argument("--tta", type=positive_int, help="views (default: the run's, 16)")
    p.add_argument("--split", choices=["all", "val", "train"], default="all",
                   help="only the run's validation (or training) galaxies among the images")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    _add_device(p)
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--resize", action="store_true",
                   help="resize images that are not 424x424 (centre square, then 424 px) instead of refusing them")
    p.add_argument("--chunk-size", type=positive_int, default=4096, metavar="N",
                   help="images per progress record: an interrupted run loses at most this many (default 4096)")
    p.add_argument("--workers", type=positive_int, help="image decoding processes (default: the cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    p.set_defaults(func="run_predict")


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="RMSE of a submission against labels, overall and per question")
    p.add_argument("--pred", type=Path, required=True, help="submission CSV")
    p.add_argument("--truth", type=Path, nargs="+", required=True, help="label CSV(s) or Kaggle-layout folder(s)")
    p.set_defaults(func="run_score")


def _add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="run the notebooks headless (papermill) into results/<profile>/")
    p.add_argument("--profile", default="quick", choices=PROFILE_NAMES,
                   help="smoke (seconds) | quick (a CPU in minutes, the default) | paper (the paper's settings)")
    p.add_argument("--data-dir", nargs="+", type=Path, dest="data_dirs", default=None,
                   help="Kaggle-layout folders (default: synthetic data, made once; paper needs them)")
    _add_device(p)
    p.add_argument("--retrain", action="store_true", help="train every run again instead of reusing it")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="default: results/ of the clone galaxylib runs from, else ./results")
    p.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="only these notebooks, e.g. 04_paper_tables")
    p.add_argument("--allow-random-init", action="store_true", default=None,
                   help="train pretrained models from random weights when their weights are missing (quick and "
                   "smoke do; the paper profile otherwise stops before any training)")
    p.add_argument("--seeds", type=positive_int, metavar="N",
                   help="train every row with seeds 1..N (default: the profile's; quick: 3 for the baseline CNNs)")
    p.set_defaults(func="run_reproduce")


def _add_study(sub) -> None:
    p = sub.add_parser("study", help="train rows x seeds on given data and write tables only into results/<name>/")
    p.add_argument("--name", required=True, help="the results folder's name, e.g. sample -> results/sample/")
    p.add_argument("--experiments", nargs="+", required=True, metavar="EXPERIMENT",
                   help="the rows, e.g. baseline baseline_cbam")
    p.add_argument("--data-dir", nargs="+", type=Path, required=True, dest="data_dirs",
                   help="Kaggle-layout folders (several are combined)")
    p.add_argument("--profile", default="quick", choices=PROFILE_NAMES,
                   help="smoke (seconds) | quick (a CPU in minutes, the default) | paper (the paper's settings)")
    p.add_argument("--holdout", type=non_negative_int, default=0, metavar="N",
                   help="set N fully labelled galaxies aside (a fixed seeded choice); score the final models on them")
    p.add_argument("--seeds", type=positive_int, metavar="N", help="seeds 1..N of every row (default: the profile's)")
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="default: results")
    _add_device(p)
    p.add_argument("--retrain", action="store_true", help="train every run again instead of reusing it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func="run_study")


COMMANDS = [_add_check_data, _add_synth, _add_info, _add_train, _add_predict, _add_score, _add_reproduce, _add_study]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m galaxylib", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"galaxylib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed, for records (RESULTS.md)
        from galaxylib import commands

        return int(getattr(commands, args.func)(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
