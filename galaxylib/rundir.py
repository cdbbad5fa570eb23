"""A run folder: what one training run leaves behind, written and read in one place, and what it guarantees.

    config.json            the RunConfig (its hash names the run), the run's name, and the data fingerprint
    split.csv              GalaxyID -> train / val / unused
    history.csv            one row per epoch
    last.pt                model + optimiser + history after the latest epoch (resume from here)
    last.prev.pt           the same one epoch earlier: what a damaged last.pt falls back to
    best.pt                the model of the best validation epoch
    *.pt.sha256            each checkpoint's sha256, written after it (`sha256sum -c last.pt.sha256` checks it)
    metrics.json           the final scores; present only when the run finished
    val_predictions.csv    the final model's validation predictions (TTA), in Kaggle's format
    val_predictions_1view.csv  the same with one centre view (no TTA)
    lock                   present while a training writes here (pid and host of the writer)

The guarantees:
- One writer: a training holds the folder's lock (flock on `lock`) from start to end; a second one is refused in
  one line naming the holder. The lock dies with its process, so one left by a killed run is taken over (and
  said); temporary files such a run left are removed then.
- The same data: config.json records the data's fingerprint (galaxylib.data.fingerprint); a rerun whose data
  folders hold other data refuses to resume or reuse the run (`DataChanged`) unless told to start afresh.
- Verified checkpoints: each is checked against its sha256 before use; a damaged last.pt falls back to
  last.prev.pt (and says so), a damaged best.pt is refused.
- Whole files: every file is written atomically (galaxylib.fileio): a crash or a full disk leaves the old file
  or the new one, never half of one, and no temporary file.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from galaxylib.data.fingerprint import describe_change
from galaxylib.errors import CheckpointDamaged, DataChanged, RunFolderBusy, UserError
from galaxylib.experiments import RunConfig
from galaxylib.fileio import atomic_path, atomic_write_text, remove_stale_temps

CONFIG = "config.json"
SPLIT = "split.csv"
HISTORY = "history.csv"
LAST = "last.pt"
LAST_PREV = "last.prev.pt"
BEST = "best.pt"
METRICS = "metrics.json"
VAL_PREDICTIONS = "val_predictions.csv"
LOCK = "lock"
CHECKSUM_SUFFIX = ".sha256"
FINGERPRINT_KEY = "data_fingerprint"
VAL_PREDICTIONS_1VIEW = "val_predictions_1view.csv"
HISTORY_COLUMNS = ["epoch", "train_loss", "train_rmse", "val_loss", "val_rmse", "lr", "seconds", "images_per_s",
                   "train_seconds", "val_seconds"]  # fmt: skip
RESUME_KEYS = ("model", "optimizer", "epoch", "history", "best", "config")
RETRAIN_HINT = "use --retrain to train again from scratch, or another --out"


def checksum_file(path: Path) -> Path:
    """The sidecar holding a checkpoint's sha256 (`sha256sum` format)."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _one_line(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------------------
# the lock

_HELD_LOCK_FDS: set[int] = set()


def _close_inherited_locks() -> None:
    """In a forked child (a worker pool): drop the copy of each lock descriptor, so that the lock ends with the
    process that took it even if a child outlives it."""
    for fd in list(_HELD_LOCK_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCK_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def _holder_text(raw: bytes) -> str:
    """'pid 123 on host h since ...' from a lock file's contents ('' when empty or unreadable)."""
    try:
        info = json.loads(raw.decode())
        return f"pid {info['pid']} on host {info['host']} since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return ""


def _gone_note(raw: bytes) -> str:
    """When the holder ran on this host and its pid no longer exists: say that a child of it holds the lock."""
    with contextlib.suppress(ValueError, KeyError, TypeError):
        info = json.loads(raw.decode())
        if info["host"] == socket.gethostname():
            try:
                os.kill(int(info["pid"]), 0)
            except ProcessLookupError:
                return " (that process has ended, but a process it started still holds the lock)"
            except PermissionError:
                pass
    return ""


class RunLock:
    """The exclusive lock on a run folder: flock on its `lock` file, which records the holder."""

    def __init__(self, path: Path, fd: int, previous: str, created_folder: bool = False):
        self.path, self._fd = path, fd
        self.previous = previous  # the holder a killed run left in the file ('' when it was free)
        self.created_folder = created_folder  # removed again on release when nothing was written into it

    @classmethod
    def acquire(cls, folder: Path) -> RunLock:
        """Take the lock or raise RunFolderBusy naming the holder.

        A holder that releases unlinks the file while still holding it; a process that opened the old file just
        before then gets a lock on an unlinked file, sees that the path now names another file (or none), and
        tries again.
        """
        path = folder / LOCK
        created = not folder.exists()
        for _ in range(20):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise UserError(f"{folder}: cannot be used as a run folder ({err.strerror}: {err.filename})") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raw = os.pread(fd, 4096, 0)
                os.close(fd)
                holder = (_holder_text(raw) or "another process") + _gone_note(raw)
                raise RunFolderBusy(f"{folder}: another training is writing this run folder ({holder}; lock file "
                                    f"{path}); wait for it to end, or use another --out") from None
            except OSError as err:
                os.close(fd)
                raise UserError(f"{path}: cannot lock the run folder ({err.strerror}); the file system does not "
                                "support flock: use a run folder on a local disk") from err
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = _holder_text(os.pread(fd, 4096, 0))
            since = datetime.datetime.now().isoformat(timespec="seconds")
            info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}) + "\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
            _HELD_LOCK_FDS.add(fd)
            return cls(path, fd, previous, created)
        raise RunFolderBusy(f"{folder}: could not take the lock {path}: other processes keep taking it")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still holding it: see acquire
        _HELD_LOCK_FDS.discard(self._fd)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        if self.created_folder:
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()  # only if empty: a run refused before writing leaves no trace

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------------------------------------
# checkpoints


def load_checkpoint(path: Path, keys: tuple[str, ...] = ("model",)) -> dict:
    """A checkpoint's contents (on the CPU), verified first against its sha256 when one was recorded.

    Args:
        path: the .pt file.
        keys: entries the checkpoint must hold.

    Raises:
        CheckpointDamaged: one line naming the file: checksum mismatch, unreadable, or entries missing.
    """
    import torch

    sums = checksum_file(path)
    if sums.is_file():
        try:
            expected = sums.read_text().split()[0]
        except (OSError, UnicodeDecodeError, IndexError) as err:
            raise CheckpointDamaged(f"{sums}: unreadable checksum file ({_one_line(err)})") from err
        if sha256_of(path) != expected:
            raise CheckpointDamaged(f"{path} is damaged (its sha256 differs from the one in {sums.name})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for damaged files
        raise CheckpointDamaged(f"{path}: unreadable checkpoint ({_one_line(err)})") from err
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointDamaged(f"{path}: not a galaxylib checkpoint (no {', '.join(missing)})")
    return state


@dataclass
class Resume:
    """Where an interrupted run continues from."""

    state: dict  # the checkpoint's contents
    source: str  # LAST, or LAST_PREV when last.pt was damaged or missing
    notes: list[str] = field(default_factory=list)  # what was wrong with last.pt, for the user


# ----------------------------------------------------------------------------------------------------------
# the folder


class RunDir:
    """One run folder (it need not exist yet)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def lock(self) -> RunLock:
        """Take the folder's lock (a context manager); stale temporary files of killed writers are removed."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path}: --out is a file, not a run folder")
        lock = RunLock.acquire(self.path)
        remove_stale_temps(self.path)
        return lock

    # -- reading --------------------------------------------------------------------------------------------------

    def _read_json(self, name: str) -> dict:
        path = self.file(name)
        try:
            value = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise UserError(f"{path}: unreadable ({_one_line(err)}); {RETRAIN_HINT}") from err
        if not isinstance(value, dict):
            raise UserError(f"{path}: unreadable (not a JSON object); {RETRAIN_HINT}")
        return value

    def _read_csv(self, name: str, columns: list[str]) -> pd.DataFrame:
        path = self.file(name)
        if not path.is_file():
            raise UserError(f"{self.path}: no {name}")
        try:
            df = pd.read_csv(path)
        except Exception as err:  # pandas raises many types for unreadable files
            raise UserError(f"{path}: unreadable ({_one_line(err)})") from err
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise UserError(f"{path}: unreadable (no column {', '.join(missing)})")
        return df

    def config(self) -> RunConfig | None:
        """The saved config, or None when there is none."""
        path = self.file(CONFIG)
        if not path.is_file():
            return None
        try:
            return RunConfig.from_dict(self._read_json(CONFIG))
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path}: unreadable run config ({_one_line(err)}); {RETRAIN_HINT}") from err

    def fingerprint(self) -> dict | None:
        """The data fingerprint recorded with the config (None: no config, or one from before fingerprints)."""
        if not self.file(CONFIG).is_file():
            return None
        value = self._read_json(CONFIG).get(FINGERPRINT_KEY)
        return value if isinstance(value, dict) else None

    def check_data(self, fingerprint: dict | None) -> None:
        """Refuse (DataChanged) when the data now differs from the data this folder's run was trained on."""
        saved = self.fingerprint()
        if saved is None or fingerprint is None:
            return
        change = describe_change(saved, fingerprint)
        if change:
            raise DataChanged(f"{self.path} was trained on other data than the data folders hold now ({change}); "
                              "use --retrain to train again on the data as it is now, or another --out")

    def finished_metrics(self, cfg: RunConfig, fingerprint: dict | None = None) -> dict | None:
        """metrics.json of a finished run of exactly `cfg` here, else None.

        Reads the small JSON files only, never the checkpoint (2.4 GB with Adam's state for ConvNeXt Large).

        Raises:
            DataChanged: `fingerprint` (the data now) differs from the one recorded for the finished run.
        """
        if not (self.file(METRICS).is_file() and self.file(LAST).is_file()):
            return None
        saved = self.config()
        if saved is None or saved.result_hash() != cfg.result_hash():
            return None
        metrics = self._read_json(METRICS)
        if metrics.get("epochs") != cfg.epochs:
            return None
        self.check_data(fingerprint)
        return metrics

    def has_checkpoint(self) -> bool:
        return self.file(LAST).exists() or self.file(LAST_PREV).exists()

    def resume_point(self, cfg: RunConfig, fingerprint: dict | None = None) -> Resume | None:
        """The checkpoint an interrupted run of `cfg` continues from; None when there is none.

        last.pt is verified (sha256, contents, settings); when it is damaged or missing, last.prev.pt is used
        and the notes say why. Nothing is changed on disk (see `promote_previous`).

        Raises:
            UserError: the folder holds a run with other settings.
            DataChanged: the data changed since the run started.
            CheckpointDamaged: no usable checkpoint is left.
        """
        if not self.has_checkpoint():
            return None
        saved = self.config()
        if saved is not None and saved.result_hash() != cfg.result_hash():
            raise UserError(f"{self.path} holds a run with other settings ({saved.run_name()}); "
                            "use another --out, or --retrain to overwrite it")
        self.check_data(fingerprint)
        notes: list[str] = []
        for name in (LAST, LAST_PREV):
            path = self.file(name)
            if not path.exists():
                if name == LAST:
                    notes.append(f"{path} is missing (the run was stopped while saving it)")
                continue
            try:
                state = load_checkpoint(path, RESUME_KEYS)
                written_by = RunConfig.from_dict(state["config"])
            except CheckpointDamaged as err:
                notes.append(str(err))
                continue
            except (KeyError, TypeError, ValueError) as err:
                notes.append(f"{path}: not a galaxylib checkpoint ({_one_line(err)})")
                continue
            if written_by.result_hash() != cfg.result_hash():
                raise UserError(f"{path} was written by a run with other settings ({written_by.run_name()}) "
                                f"than {CONFIG} says; the folder mixes two runs: {RETRAIN_HINT}")
            if name == LAST_PREV:
                notes.append(f"resuming from {name} (epoch {state['epoch']}) instead")
            return Resume(state, name, notes)
        raise CheckpointDamaged("; ".join(notes) + f"; no good earlier checkpoint to resume from: {RETRAIN_HINT}")

    def split(self) -> pd.DataFrame:
        """split.csv: GalaxyID and part (train / val / unused)."""
        return self._read_csv(SPLIT, ["GalaxyID", "part"])

    def ids_in(self, part: str) -> set[int]:
        """The GalaxyIDs of one part of the split (train or val)."""
        split = self.split()
        try:
            return set(split.loc[split["part"] == part, "GalaxyID"].astype(np.int64))
        except (ValueError, TypeError) as err:
            raise UserError(f"{self.file(SPLIT)}: unreadable ({_one_line(err)})") from err

    def history(self) -> pd.DataFrame:
        return self._read_csv(HISTORY, ["epoch"])

    def metrics(self) -> dict:
        if not self.file(METRICS).is_file():
            raise UserError(f"{self.path}: no {METRICS} (the run has not finished)")
        return self._read_json(METRICS)

    # -- writing --------------------------------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget a previous run here (--retrain): its checkpoints, history, scores and predictions."""
        for name in (LAST, LAST_PREV, BEST, METRICS, HISTORY, VAL_PREDICTIONS, VAL_PREDICTIONS_1VIEW):
            self.file(name).unlink(missing_ok=True)
            checksum_file(self.file(name)).unlink(missing_ok=True)

    def write_config(self, cfg: RunConfig, fingerprint: dict | None = None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        d = cfg.to_dict()
        d["run_name"] = cfg.run_name()
        if fingerprint is not None:
            d[FINGERPRINT_KEY] = fingerprint
        atomic_write_text(self.file(CONFIG), json.dumps(d, indent=2) + "\n")

    def write_split(self, ids: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
        parts = np.full(len(ids), "unused", dtype=object)
        parts[train_idx], parts[val_idx] = "train", "val"
        atomic_write_text(self.file(SPLIT), pd.DataFrame({"GalaxyID": ids, "part": parts}).to_csv(index=False))

    def write_history(self, history: list[dict]) -> None:
        atomic_write_text(self.file(HISTORY), pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(index=False))

    def save_checkpoint(self, name: str, state: dict) -> None:
        """torch.save atomically, then record its sha256; the last.pt it replaces becomes last.prev.pt.

        A crash between the steps leaves a state `resume_point` handles: no last.pt (last.prev.pt is used), or
        a new last.pt without its checksum (it is complete: the rename is atomic; it is checked by loading it).
        """
        import torch

        path = self.file(name)

        def keep_previous() -> None:
            if name == LAST and path.exists():
                self._move_checkpoint(LAST, LAST_PREV)
            else:
                checksum_file(path).unlink(missing_ok=True)  # never a checksum of the old file next to the new one

        with atomic_path(path, before_replace=keep_previous) as tmp:
            torch.save(state, tmp)
            sha = sha256_of(tmp)
        atomic_write_text(checksum_file(path), f"{sha}  {name}\n")

    def promote_previous(self) -> None:
        """Make last.prev.pt the last checkpoint again (after last.pt was found damaged or missing)."""
        self._move_checkpoint(LAST_PREV, LAST)

    def _move_checkpoint(self, src: str, dst: str) -> None:
        """Move a checkpoint over another with its checksum: the checksum first, so that a crash in between never
        leaves a checkpoint beside the checksum of another file (a checkpoint without one is checked by loading)."""
        source, target = self.file(src), self.file(dst)
        if checksum_file(source).exists():
            os.replace(checksum_file(source), checksum_file(target))
        else:
            checksum_file(target).unlink(missing_ok=True)
        os.replace(source, target)

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_text(self.file(METRICS), json.dumps(metrics, indent=2) + "\n")


def load_run(run_dir: str | Path, which: str = "best"):
    """The config and model of a finished or interrupted run, its checkpoint verified.

    Args:
        run_dir: the run folder.
        which: "best" (best validation epoch) or "last" checkpoint.

    Returns:
        (RunConfig, the model in eval mode on the CPU).
    """
    from galaxylib.models import build_model

    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise UserError(f"{run.path}: no such run folder")
    cfg = run.config()
    if cfg is None:
        raise UserError(f"{run.path}: not a run folder (no {CONFIG})")
    ckpt = run.file(f"{which}.pt")
    if not ckpt.is_file():
        raise UserError(f"{run.path}: no {which}.pt checkpoint (was the run interrupted before its first epoch?)")
    try:
        state = load_checkpoint(ckpt)
    except CheckpointDamaged as err:
        other = "last" if which == "best" else "best"
        raise CheckpointDamaged(f"{err}; retrain the run, or use --checkpoint {other}") from err
    model = build_model(cfg.model, img_size=cfg.img_size, pretrained=False, head=cfg.head,
                        tree_output=cfg.tree_output)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointDamaged(f"{ckpt} does not fit the model that {run.file(CONFIG)} describes "
                                f"({_one_line(err, 120)})") from err
    return cfg, model.eval()
