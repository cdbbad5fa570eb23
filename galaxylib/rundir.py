"""A run folder: what one training run leaves behind, written and read in one place.

    config.json            the RunConfig (its hash names the run) and the run's name
    split.csv              GalaxyID -> train / val / unused
    history.csv            one row per epoch
    last.pt                model + optimiser + history after the latest epoch (resume from here)
    best.pt                the model of the best validation epoch
    metrics.json           the final scores; present only when the run finished
    val_predictions.csv    the final model's validation predictions (TTA), in Kaggle's format
    val_predictions_1view.csv  the same with one centre view (no TTA)

Every file is written atomically (galaxylib.fileio). Rerunning the same config resumes from last.pt or reuses a
finished run; a folder that holds another config is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from galaxylib.errors import UserError
from galaxylib.experiments import RunConfig
from galaxylib.fileio import atomic_torch_save, atomic_write_text

CONFIG = "config.json"
SPLIT = "split.csv"
HISTORY = "history.csv"
LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.json"
VAL_PREDICTIONS = "val_predictions.csv"
VAL_PREDICTIONS_1VIEW = "val_predictions_1view.csv"
HISTORY_COLUMNS = ["epoch", "train_loss", "train_rmse", "val_loss", "val_rmse", "lr", "seconds", "images_per_s",
                   "train_seconds", "val_seconds"]  # fmt: skip


class RunDir:
    """One run folder (it need not exist yet)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    # -- reading --------------------------------------------------------------------------------------------------

    def config(self) -> RunConfig | None:
        """The saved config, or None when there is none."""
        path = self.file(CONFIG)
        if not path.is_file():
            return None
        try:
            return RunConfig.load(path)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path}: unreadable run config ({err}); delete the run folder or use --retrain") from err

    def finished_metrics(self, cfg: RunConfig) -> dict | None:
        """metrics.json of a finished run of exactly `cfg` here, else None.

        Reads the small JSON files only, never the checkpoint (2.4 GB with Adam's state for ConvNeXt Large).
        """
        metrics_path = self.file(METRICS)
        if not (metrics_path.is_file() and self.file(LAST).is_file()):
            return None
        saved = self.config()
        if saved is None or saved.result_hash() != cfg.result_hash():
            return None
        metrics = json.loads(metrics_path.read_text())
        return metrics if metrics.get("epochs") == cfg.epochs else None

    def resumable_state(self, cfg: RunConfig) -> dict | None:
        """The last checkpoint when this folder holds an interrupted run of `cfg`; an error when it holds another."""
        last = self.file(LAST)
        if not last.exists():
            return None
        saved = self.config()
        if saved is not None and saved.result_hash() != cfg.result_hash():
            raise UserError(f"{self.path} holds a run with other settings ({saved.run_name()}); "
                            "use another --out, or --retrain to overwrite it")
        return load_checkpoint(last)

    def split(self) -> pd.DataFrame:
        """split.csv: GalaxyID and part (train / val / unused)."""
        path = self.file(SPLIT)
        if not path.is_file():
            raise UserError(f"{self.path}: no {SPLIT}")
        return pd.read_csv(path)

    def ids_in(self, part: str) -> set[int]:
        """The GalaxyIDs of one part of the split (train or val)."""
        split = self.split()
        return set(split.loc[split["part"] == part, "GalaxyID"].astype(np.int64))

    def history(self) -> pd.DataFrame:
        path = self.file(HISTORY)
        if not path.is_file():
            raise UserError(f"{self.path}: no {HISTORY}")
        return pd.read_csv(path)

    def metrics(self) -> dict:
        path = self.file(METRICS)
        if not path.is_file():
            raise UserError(f"{self.path}: no {METRICS} (the run has not finished)")
        return json.loads(path.read_text())

    # -- writing --------------------------------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget a previous run here (--retrain): its checkpoints, history and scores."""
        for name in (LAST, BEST, METRICS, HISTORY):
            self.file(name).unlink(missing_ok=True)

    def write_config(self, cfg: RunConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        d = cfg.to_dict()
        d["run_name"] = cfg.run_name()
        atomic_write_text(self.file(CONFIG), json.dumps(d, indent=2) + "\n")

    def write_split(self, ids: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
        parts = np.full(len(ids), "unused", dtype=object)
        parts[train_idx], parts[val_idx] = "train", "val"
        atomic_write_text(self.file(SPLIT), pd.DataFrame({"GalaxyID": ids, "part": parts}).to_csv(index=False))

    def write_history(self, history: list[dict]) -> None:
        atomic_write_text(self.file(HISTORY), pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(index=False))

    def save_checkpoint(self, name: str, state: dict) -> None:
        atomic_torch_save(state, self.file(name))

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_text(self.file(METRICS), json.dumps(metrics, indent=2) + "\n")


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's contents (on the CPU); a UserError naming the file when it cannot be read."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UserError(f"{path}: unreadable checkpoint ({err}); delete it or use --retrain") from err


def load_run(run_dir: str | Path, which: str = "best"):
    """The config and model of a finished or interrupted run.

    Args:
        run_dir: the run folder.
        which: "best" (best validation epoch) or "last" checkpoint.

    Returns:
        (RunConfig, the model in eval mode on the CPU).
    """
    from galaxylib.models import build_model

    run = RunDir(run_dir)
    cfg = run.config()
    if cfg is None:
        raise UserError(f"{run.path}: not a run folder (no {CONFIG})")
    ckpt = run.file(f"{which}.pt")
    if not ckpt.is_file():
        raise UserError(f"{run.path}: no {which}.pt checkpoint (was the run interrupted before its first epoch?)")
    state = load_checkpoint(ckpt)
    model = build_model(cfg.model, img_size=cfg.img_size, pretrained=False, head=cfg.head,
                        tree_output=cfg.tree_output)
    model.load_state_dict(state["model"])
    return cfg, model.eval()
