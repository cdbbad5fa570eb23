"""The public API: train a row of the paper's tables, predict with a run, open a run, in one line each.

    import galaxylib as gz
    run = gz.train("baseline", "data/galaxy-zoo", profile="quick")   # trains, resumes or reuses runs/baseline-...
    df = gz.predict(run, "data/galaxy-zoo/images_test_rev1")        # GalaxyID + the 37 columns, one row per image
    run = gz.load_run("runs/baseline-seed1-1a2b3c4d")
    gz.EXPERIMENTS, gz.PROFILES                                      # the table rows, and the scales to run them at

Every argument that names a file or folder takes a str or a pathlib.Path. The command line
(`python -m galaxylib ...`) and the notebooks call the same modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["EXPERIMENTS", "PROFILES", "Run", "load_run", "predict", "train"]

from galaxylib.experiments import EXPERIMENTS, PROFILES, RunConfig, resolve


@dataclass
class Run:
    """A run folder: its settings (`config`), its scores (`metrics`, None until it finished) and its model.

    Attributes:
        path: the run folder.
        config: the RunConfig it trained with.
        metrics: metrics.json's contents, or None for an unfinished run.
        checkpoint: which checkpoint `model` loads ("best" or "last").
    """

    path: Path
    config: RunConfig
    metrics: dict | None = None
    checkpoint: str = "best"
    _model: Any = field(default=None, repr=False)

    @property
    def model(self):
        """The trained GalaxyModel (eval mode, CPU), loaded from the checkpoint on first use."""
        if self._model is None:
            from galaxylib.rundir import load_run as load

            self._model = load(self.path, self.checkpoint)[1]
        return self._model

    def history(self) -> pd.DataFrame:
        """history.csv: one row per epoch."""
        from galaxylib.rundir import RunDir

        return RunDir(self.path).history()


def train(experiment: str, data_dir: str | Path | list[str | Path], *, profile: str = "quick",
          out: str | Path | None = None, progress: bool = True, retrain: bool = False, **settings) -> Run:
    """Train one experiment (a row of Table I or II), or resume or reuse its run folder.

    Args:
        experiment: e.g. "baseline", "baseline_cbam", "resnet50", "dinov2_base" (galaxylib.EXPERIMENTS).
        data_dir: a Kaggle-layout folder, or several.
        profile: "smoke", "quick" (a CPU in minutes) or "paper".
        out: the run folder; default runs/<experiment>-seed<k>-<hash> in the current folder.
        progress: progress bars in a terminal and one line per epoch.
        retrain: train again even when the folder holds a finished run.
        **settings: RunConfig fields to override (epochs=2, seed=3, device="cpu", img_size=64, ...).

    Returns:
        The finished run.
    """
    from galaxylib.training import train as train_run

    cfg = resolve(experiment, profile, data_dirs=data_dir, **settings)
    run_dir = Path(out) if out is not None else Path("runs") / cfg.run_name()
    metrics = train_run(cfg, run_dir, progress=progress, retrain=retrain)
    return Run(run_dir, cfg, metrics if metrics.get("finished", True) else None)


def load_run(path: str | Path, checkpoint: str = "best") -> Run:
    """A run folder written by `train` (or the command line, or the notebooks).

    Args:
        path: the run folder.
        checkpoint: "best" (the best validation epoch, the default for predictions) or "last".
    """
    from galaxylib.errors import UserError
    from galaxylib.rundir import RunDir

    run = RunDir(path)
    cfg = run.config()
    if cfg is None:
        raise UserError(f"{run.path}: not a run folder (no config.json)")
    metrics = run.metrics() if run.file("metrics.json").is_file() else None
    return Run(run.path, cfg, metrics, checkpoint)


def predict(run: Run | str | Path, images: str | Path | list[str | Path], *, tta: int | None = None,
            device: str = "auto", progress: bool = True) -> pd.DataFrame:
    """The 37 predicted vote fractions for every image in `images`, with the run's settings.

    Args:
        run: a Run, or a run folder.
        images: a folder of images (or a Kaggle-layout folder, whose images_test_rev1/ is used), several
            folders, or a list of image files.
        tta: test-time views (default: the run's, 16 = 8 rotations x 2 flips).
        device: auto | cpu | cuda.
        progress: a progress bar in a terminal.

    Returns:
        One row per image: GalaxyID (Kaggle IDs) or id_str (other file names) and the 37 Kaggle columns, sorted
        by ID. For millions of images write to a file instead (`python -m galaxylib predict`: streamed,
        resumable).
    """
    from galaxylib.data.inputs import from_folders, from_paths
    from galaxylib.prediction import predict_files, prediction_frame

    run = run if isinstance(run, Run) else load_run(run)
    paths = [Path(images)] if isinstance(images, str | Path) else [Path(p) for p in images]
    inputs = from_paths(paths) if all(p.is_file() for p in paths) else from_folders(paths)
    preds = predict_files(run.model, run.config, inputs.paths, tta=tta or run.config.tta, device=device,
                          progress=progress)
    return prediction_frame(inputs, preds)
