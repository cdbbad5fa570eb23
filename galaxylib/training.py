"""The training loop: the paper's recipe (Adam, MSE on sigmoid outputs, cosine annealing per epoch) on a fast path.

`Trainer.fit` locks the run folder, decides from the data's fingerprint whether to reuse, resume or start, and
then reads as five stages:

    build          the model, channels_last, DDP / torch.compile, Adam (first: a model that cannot be built
                   stops the run before anything is written)
    prepare_data   read and validate the folders, take the profile's subset, split as the paper did,
                   decode the images once into the on-disk cache, and hold it on the GPU when it fits or
                   stream it from disk batch by batch (data/store.py: memory bounded by a few batches)
    resume         the last verified checkpoint of an interrupted run of the same config and data, if any
    epochs         augment on the device -> forward -> masked MSE -> backward -> step; validate; checkpoint
    final_scores   the final model's validation scores with TTA, per question, against the mean predictor

bf16 autocast, channels_last, cudnn benchmark and fused Adam are on by default on CUDA; `--precision fp32` is
the paper's own arithmetic. Metrics are accumulated on the device and read once per epoch, so the GPU never
waits for the host. The run folder (galaxylib.rundir) makes a rerun resume or reuse; under torchrun the same
code runs data-parallel (galaxylib.distributed) and only rank 0 writes and holds the lock. A last batch of one
image (of fewer than two per rank) is folded into the batch before it (`train_batches`): batch-norm cannot
train on one value per channel.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from galaxylib import data as gdata
from galaxylib import rundir, tree
from galaxylib.augment import TrainAugment, eval_transform
from galaxylib.data.store import DeviceData
from galaxylib.device import amp_dtype, device_name, resolve_precision, select_device, set_float32_matmul
from galaxylib.distributed import init_distributed
from galaxylib.errors import TrainingDiverged, UserError
from galaxylib.experiments import RunConfig
from galaxylib.metrics import VOTES, mean_predictor, noise_floor, per_question_rmse, rmse
from galaxylib.models import build_model, count_parameters
from galaxylib.prediction import PREDICT_BATCH, predict_batches, write_submission

MIN_TRAIN = 2  # images per process in a training step: batch-norm in training mode needs two values per channel


def get_lr(epoch: int, cfg: RunConfig) -> float:
    """The learning rate of epoch `epoch` (0-based): cosine annealing from cfg.lr to cfg.min_lr over cfg.epochs
    epochs, stepped once per epoch (the closed form of the paper's CosineAnnealingLR(T_max=epochs, eta_min))."""
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * epoch / cfg.epochs)) / 2


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """Seeded per epoch, so that a resumed run draws the same batches and augmentations as an uninterrupted one."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


@dataclass
class Prepared:
    """The data of a run, ready for training."""

    data: gdata.GalaxyData
    train_idx: np.ndarray
    val_idx: np.ndarray
    store: DeviceData
    source: str  # synthetic / Kaggle sample / full Kaggle


@dataclass
class Built:
    """The model and what trains it."""

    model: torch.nn.Module  # the plain model (what is saved)
    train_model: torch.nn.Module  # the same, possibly wrapped by DDP and torch.compile
    optimizer: torch.optim.Optimizer
    n_params: int


def prepare_data(cfg: RunConfig, progress: bool = True) -> tuple[gdata.GalaxyData, np.ndarray, np.ndarray]:
    """Load and validate the folders, set the held-out galaxies aside, take the profile's subset, split as the
    paper did. The subset and the split depend on cfg.split_seed only, never on the training seed.

    Args:
        cfg: the run's settings (data_dirs, holdout, max_images, split_seed).
        progress: a progress bar while the images are checked.

    Returns:
        (galaxies, train indices, validation indices), indices sorted.
    """
    data = read_folders(cfg, progress=progress)
    data, _ = gdata.holdout_split(data, cfg.holdout)
    data = gdata.profile_subset(data, cfg.max_images, cfg.split_seed)
    need = MIN_TRAIN * max(1, cfg.world_size)
    split = gdata.paper_split(data, test_size=0.1, seed=cfg.split_seed) if len(data) > 1 else ([], [])
    train_idx, val_idx = split
    if len(train_idx) < need or len(val_idx) < 1:
        cap = f" (--max-images {cfg.max_images})" if cfg.max_images and cfg.max_images <= len(data) else ""
        raise UserError(f"{', '.join(cfg.data_dirs)}: {len(data)} labelled galaxies{cap} are too few: training "
                        f"needs at least {need} to train on (batch-norm needs two per process) and 1 to validate")
    return data, np.asarray(train_idx), np.asarray(val_idx)


def read_folders(cfg: RunConfig, *, verify_images: bool = True, progress: bool = False) -> gdata.GalaxyData:
    """The labelled galaxies of the run's data folders, validated (every image decoded when `verify_images`)."""
    if not cfg.data_dirs:
        raise UserError("no data folder given (--data-dir DIR)")
    data = gdata.load_folders(cfg.data_dirs, verify_images=verify_images, progress=progress)
    if data.labels is None:
        raise UserError(f"{cfg.data_dirs[0]}: training needs labels (training_solutions_rev1*.csv)")
    return data


def fingerprint_data(cfg: RunConfig) -> dict:
    """The fingerprint (galaxylib.data.fingerprint) of the run's data folders as they are now: labels read and
    validated, images listed and stat-ed but not decoded, so that deciding to reuse a run stays cheap."""
    return gdata.data_fingerprint(read_folders(cfg, verify_images=False))


def check_settings(cfg: RunConfig) -> None:
    """Refuse settings no run can use, naming the setting (the command line checks its options already; this
    guards calls from Python)."""
    for name in ("epochs", "batch_size", "img_size", "tta"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{name} must be a whole number >= 1, got {value!r}")
    if cfg.max_images is not None and (not isinstance(cfg.max_images, int) or cfg.max_images < 1):
        raise UserError(f"max_images must be a whole number >= 1 or None (all), got {cfg.max_images!r}")
    for name, low in (("lr", "> 0"), ("min_lr", ">= 0")):
        value = getattr(cfg, name)
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < 0 or (value == 0 and name == "lr"):
            raise UserError(f"{name} must be a finite number {low}, got {value!r}")


def train_batches(n: int, batch_size: int, world_size: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of each training step over n shuffled galaxies: batches of `batch_size`, except that a last
    batch too small to give every rank at least MIN_TRAIN images (batch-norm needs two values per channel in
    training mode) is folded into the one before it, which grows by that much. With one process that is a last
    batch of one; every other remainder is kept as its own smaller batch, as the paper's DataLoader did."""
    stops = list(range(batch_size, n, batch_size)) + [n]
    if len(stops) > 1 and stops[-1] - stops[-2] < MIN_TRAIN * world_size:
        del stops[-2]
    starts = [0, *stops[:-1]]
    return list(zip(starts, stops, strict=True))


class Trainer:
    """One run of one experiment; `fit()` trains (or resumes, or reuses) and returns the metrics."""

    def __init__(self, cfg: RunConfig, out: Path, *, progress: bool = True, retrain: bool = False,
                 sync_batchnorm: bool = False, stop_after_epochs: int | None = None):
        check_settings(cfg)
        self.ddp = init_distributed(cfg.device)
        self.cfg = cfg.replace(world_size=self.ddp.world_size)
        self.run = rundir.RunDir(out)
        self.progress, self.sync_batchnorm, self.stop_after_epochs = progress, sync_batchnorm, stop_after_epochs
        self.device = select_device(cfg.device, self.ddp.local_rank if self.ddp.enabled else None)
        self.amp = amp_dtype(cfg.precision, self.device)
        self.augment = TrainAugment(out_size=cfg.img_size, source_crop=cfg.source_crop, crop_range=cfg.crop_range)
        self.retrain = retrain

    def say(self, message: str, always: bool = False) -> None:
        """One line for the user (rank 0 only; only with progress on unless `always`)."""
        if self.ddp.is_main and (self.progress or always):
            print(message, flush=True)

    def fit(self) -> dict:
        """Train, resume or reuse the run; returns metrics.json's contents ({"finished": False} when stopped).

        The run folder is locked throughout (rank 0 holds the lock; every rank stops when it cannot be taken).
        """
        lock, refused = None, None
        if self.ddp.is_main:
            try:
                lock = self.run.lock()
            except UserError as err:
                refused = err
        if not self._all_ranks_ok(refused is None):
            raise refused or UserError(f"{self.run.path}: rank 0 could not lock the run folder")
        try:
            if lock is not None and lock.previous:
                self.say(f"{self.run.path}: took over the lock left by {lock.previous} (that run was killed)",
                         always=True)
            return self._fit()
        finally:
            if lock is not None:
                lock.release()

    def _all_ranks_ok(self, ok: bool) -> bool:
        """True on every rank when `ok` is True on every rank (one collective under torchrun)."""
        if not self.ddp.enabled:
            return ok
        flag = torch.tensor([0.0 if ok else 1.0], device=self.device)
        return float(self.ddp.all_reduce(flag)[0]) == 0.0

    def _fit(self) -> dict:
        cfg = self.cfg
        if self.retrain and self.ddp.is_main:
            self.run.clear()
        self.ddp.barrier()
        fingerprint = fingerprint_data(cfg)
        finished = self.run.finished_metrics(cfg, fingerprint)
        if finished is not None:
            self.say(f"{self.run.path}: finished run reused (use --retrain to train again)")
            return finished
        resume = self.run.resume_point(cfg, fingerprint)
        self._seed_and_backends()
        built = self.build()  # before anything is written: a model that cannot be built leaves the folder as it was
        self.ddp.barrier()  # every rank has read the checkpoint before rank 0 repairs or rewrites anything
        if self.ddp.is_main:
            if resume is not None and resume.source == rundir.LAST_PREV:
                self.run.promote_previous()
            self.run.write_config(cfg, fingerprint)
        for note in resume.notes if resume is not None else []:
            self.say(note, always=True)
        prep = self.prepare_data()
        start_epoch, history, best = self.resume(built, None if resume is None else resume.state)
        end_epoch = cfg.epochs if self.stop_after_epochs is None else min(cfg.epochs,
                                                                          start_epoch + self.stop_after_epochs)
        for epoch in range(start_epoch, end_epoch):
            best = self.run_epoch(epoch, prep, built, history, best)
        if end_epoch < cfg.epochs:
            self.say(f"{self.run.path}: stopped after epoch {end_epoch} of {cfg.epochs}; run again to resume")
            return {"finished": False, "epoch": end_epoch}
        self.model = built.model  # kept for callers that inspect the trained weights (tests, notebooks)
        metrics = self.final_scores(prep, built, history, best)
        if self.ddp.is_main:
            self.run.write_metrics(metrics)
        self.ddp.barrier()
        return metrics

    # -- stages ---------------------------------------------------------------------------------------------------

    def _seed_and_backends(self) -> None:
        torch.manual_seed(self.cfg.seed)
        np.random.seed(self.cfg.seed)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal floats are slow on x86 CPUs; flushing them costs no accuracy
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        set_float32_matmul(self.cfg.precision, self.device)  # fp32 is PyTorch's default arithmetic, the paper's

    def prepare_data(self) -> Prepared:
        """Galaxies, the split (written to split.csv), and the decoded images on the device."""
        cfg, ddp = self.cfg, self.ddp
        data, train_idx, val_idx = prepare_data(cfg, self.progress and ddp.is_main)
        if ddp.is_main:
            self.run.write_split(data.ids, train_idx, val_idx)
        if not ddp.is_main:
            ddp.barrier()  # rank 0 builds the cache first; the others then reuse it instead of racing to write it
        cache = gdata.build_cache(data.image_paths, crop=cfg.source_crop, size=cfg.cache_size,
                                  progress=self.progress and ddp.is_main)
        if ddp.is_main:
            ddp.barrier()
        store = DeviceData(cache, data.labels, self.device, images_on=cfg.images_on)
        return Prepared(data, train_idx, val_idx, store, gdata.data_source(cfg.data_dirs))

    def build(self) -> Built:
        """The model (pretrained weights from disk when the config says so), DDP / compile, and Adam."""
        cfg = self.cfg
        model = build_model(cfg.model, img_size=cfg.img_size, pretrained=cfg.pretrained,
                            weights_file=cfg.weights_file, head=cfg.head, tree_output=cfg.tree_output)
        n_params = count_parameters(model)
        if self.sync_batchnorm and self.ddp.enabled:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=self.device.type == "cuda")
        train_model = model
        if self.ddp.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        if cfg.compile:
            train_model = torch.compile(train_model)
        return Built(model, train_model, optimizer, n_params)

    def resume(self, built: Built, state: dict | None) -> tuple[int, list[dict], dict]:
        """(first epoch to train, history so far, best epoch so far) from the last checkpoint, if there is one."""
        if state is None:
            return 0, [], {"val_rmse": math.inf, "epoch": 0}
        built.model.load_state_dict(state["model"])
        built.optimizer.load_state_dict(state["optimizer"])
        self.say(f"{self.run.path}: resuming after epoch {state['epoch']} of {self.cfg.epochs}", always=True)
        return state["epoch"], state["history"], state["best"]

    def run_epoch(self, epoch: int, prep: Prepared, built: Built, history: list[dict], best: dict) -> dict:
        """Train one epoch, validate, append to `history`, write the checkpoints; returns the best epoch so far."""
        cfg = self.cfg
        lr = get_lr(epoch, cfg)
        for group in built.optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        train_loss = self.train_epoch(built, prep, epoch)
        self.ddp.average_buffers(built.model)
        t1 = time.perf_counter()  # train_epoch ends with a host read of its totals, so the GPU is done
        val_loss = self.validate(built.model, prep)
        seconds = time.perf_counter() - t0
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            last = self.run.file(rundir.LAST)
            kept = f"the last good checkpoint ({last}, epoch {epoch}) is kept" if epoch and last.is_file() else (
                "no checkpoint was written")
            raise TrainingDiverged(f"epoch {epoch + 1}: the loss became "
                                   f"{'NaN' if math.isnan(train_loss) else 'infinite'}; training stopped, {kept}")
        row = dict(epoch=epoch + 1, train_loss=train_loss, train_rmse=math.sqrt(train_loss), val_loss=val_loss,
                   val_rmse=math.sqrt(val_loss), lr=lr, seconds=seconds,
                   images_per_s=(len(prep.train_idx) + len(prep.val_idx)) / seconds, train_seconds=t1 - t0,
                   val_seconds=seconds - (t1 - t0))  # fmt: skip
        history.append(row)
        if row["val_rmse"] < best["val_rmse"]:
            best = {"val_rmse": row["val_rmse"], "epoch": epoch + 1}
            if self.ddp.is_main:
                self.run.save_checkpoint(rundir.BEST, {"model": built.model.state_dict(), "epoch": epoch + 1,
                                                       "config": cfg.to_dict()})
        if self.ddp.is_main:
            self.run.save_checkpoint(rundir.LAST, {
                "model": built.model.state_dict(), "optimizer": built.optimizer.state_dict(), "epoch": epoch + 1,
                "history": history, "best": best, "config": cfg.to_dict()})  # fmt: skip
            self.run.write_history(history)
        self.say(f"epoch {epoch + 1}/{cfg.epochs}  train rmse {row['train_rmse']:.5f}  "
                 f"val rmse {row['val_rmse']:.5f}  lr {lr:.3g}  {seconds:.1f} s")
        return best

    def final_scores(self, prep: Prepared, built: Built, history: list[dict], best: dict) -> dict:
        """Scores of the final model (the paper submitted its last epoch): plain (the last epoch's validation
        pass) and with TTA, per question, the mean predictor's and the labels' noise floor; the per-galaxy
        predictions with TTA (val_predictions.csv) and with one view (val_predictions_1view.csv), which the
        bootstrap intervals and the TTA comparison are computed from."""
        cfg, store = self.cfg, prep.store
        val_t = torch.as_tensor(prep.val_idx, dtype=torch.long)
        batches = [val_t[s : s + PREDICT_BATCH] for s in range(0, len(val_t), PREDICT_BATCH)]
        geometry = dict(source_crop=cfg.source_crop, out_size=cfg.img_size, eval_crop=cfg.eval_crop,
                        device=self.device, amp_dtype=self.amp, channels_last=cfg.channels_last)

        def predicted(tta: int) -> np.ndarray:
            out = list(predict_batches(built.model, store.stream(batches), tta=tta, **geometry))
            return np.concatenate(out) if out else np.zeros((0, tree.NUM_OUTPUTS))

        preds = predicted(cfg.tta)
        one_view = preds if cfg.tta == 1 else predicted(1)  # the same pass: run it once
        labels = prep.data.labels
        truth = labels[prep.val_idx]
        mean_pred = np.broadcast_to(mean_predictor(labels[prep.train_idx]), truth.shape)
        if self.ddp.is_main:
            val_ids = prep.data.ids[prep.val_idx]
            write_submission(val_ids, preds, self.run.file(rundir.VAL_PREDICTIONS))
            write_submission(val_ids, one_view, self.run.file(rundir.VAL_PREDICTIONS_1VIEW))
        seconds = [h["seconds"] for h in history]
        return {
            "experiment": cfg.experiment, "profile": cfg.profile, "run_name": cfg.run_name(),
            "data_source": prep.source, "n_train": int(len(prep.train_idx)), "n_val": int(len(prep.val_idx)),
            "labelled_columns": int((~np.isnan(truth)).any(0).sum()),
            "pretrained": cfg.pretrained, "parameters": built.n_params,
            "epochs": cfg.epochs, "img_size": cfg.img_size,
            "seed": cfg.seed, "split_seed": cfg.split_seed, "holdout": cfg.holdout,
            "val_rmse": history[-1]["val_rmse"], "val_rmse_tta": rmse(preds, truth),
            "val_rmse_1view": rmse(one_view, truth),
            "tta_views": cfg.tta, "best_val_rmse": best["val_rmse"], "best_epoch": best["epoch"],
            "mean_predictor_rmse": rmse(mean_pred, truth),
            "noise_floor": noise_floor(truth).rmse, "noise_floor_votes": VOTES,
            "per_question_rmse_tta": per_question_rmse(preds, truth),
            "seconds_per_epoch": float(np.median(seconds)) if seconds else None,
            "total_seconds": float(np.sum(seconds)),
            "device": device_name(self.device), "precision": resolve_precision(cfg.precision, self.device),
            "world_size": self.ddp.world_size, "images_on": store.where, "finished": True,
        }  # fmt: skip

    # -- one epoch ------------------------------------------------------------------------------------------------

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def train_epoch(self, built: Built, prep: Prepared, epoch: int, max_steps: int | None = None) -> float:
        """One pass over the training galaxies in a seeded random order; returns the epoch's MSE.

        max_steps: stop after that many steps (benchmarks time a few steps; a run never sets it)."""
        cfg, ddp, store, model = self.cfg, self.ddp, prep.store, built.train_model
        model.train()
        train_t = torch.as_tensor(prep.train_idx, dtype=torch.long)
        perm = train_t[torch.randperm(len(train_t), generator=epoch_generator(cfg.seed, epoch, 0))]
        aug_gen = epoch_generator(cfg.seed, epoch, 1)
        # the epoch's batches up front, so that the store can read ahead; a last batch too small to give every
        # rank two images is folded into the one before (train_batches)
        spans = train_batches(len(perm), cfg.batch_size, ddp.world_size)[:max_steps]
        batches = [perm[start:stop] for start, stop in spans]
        mine = [ddp.rank_slice(len(b)) for b in batches]
        bar = None
        if self.progress and ddp.is_main:
            from tqdm import tqdm

            # a bar in a terminal only (disable=None): notebooks and logs get the one line per epoch below
            bar = tqdm(total=len(perm), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="img", leave=False, disable=None)
        sq_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        count = torch.zeros((), device=self.device, dtype=torch.float64)
        t0, seen = time.perf_counter(), 0
        for step, images in enumerate(store.stream([b[m] for b, m in zip(batches, mine, strict=True)])):
            batch = batches[step]
            params = self.augment.sample(len(batch), aug_gen)  # for the global batch: the same for any world size
            idx = batch[mine[step]]
            global_count = float(store.counts_host[batch].sum())
            x = self.augment.apply(images, {k: v[mine[step]] for k, v in params.items()})
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y, m = store.labels_at(idx)
            with self._autocast():
                pred = model(x)
            err = (pred.float() - y).square() * m
            # DDP averages gradients over ranks; scaling by world_size makes the result the exact global mean
            loss = err.sum() * (ddp.world_size / max(global_count, 1.0))
            built.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            built.optimizer.step()
            sq_sum += err.detach().sum()
            count += m.sum()
            seen += len(batch)
            if bar is not None:
                bar.update(len(batch))
                if step % 10 == 0:
                    mse = (sq_sum / count.clamp(min=1)).item()  # one sync every 10 steps, for the display only
                    bar.set_postfix(rmse=f"{math.sqrt(max(mse, 0)):.4f}",
                                    img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        if bar is not None:
            bar.close()
        totals = ddp.all_reduce(torch.stack([sq_sum, count]))
        return float(totals[0] / totals[1].clamp(min=1))

    @torch.no_grad()
    def validate(self, model: torch.nn.Module, prep: Prepared) -> float:
        """Validation MSE over every labelled entry (the evaluation transform, no TTA)."""
        cfg, ddp, store = self.cfg, self.ddp, prep.store
        model.eval()
        shard = torch.as_tensor(prep.val_idx, dtype=torch.long)[ddp.rank :: ddp.world_size]
        sq_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        count = torch.zeros((), device=self.device, dtype=torch.float64)
        size = max(cfg.batch_size, PREDICT_BATCH)  # no gradients: larger batches fit
        batches = [shard[s : s + size] for s in range(0, len(shard), size)]
        for idx, images in zip(batches, store.stream(batches), strict=True):
            x = eval_transform(images, source_crop=cfg.source_crop, out_size=cfg.img_size,
                               eval_crop=cfg.eval_crop)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y, m = store.labels_at(idx)
            with self._autocast():
                pred = model(x)
            sq_sum += ((pred.float() - y).square() * m).sum()
            count += m.sum()
        totals = ddp.all_reduce(torch.stack([sq_sum, count]))
        return float(totals[0] / totals[1].clamp(min=1))


def train(cfg: RunConfig, out: str | Path, *, progress: bool = True, retrain: bool = False,
          sync_batchnorm: bool = False, stop_after_epochs: int | None = None) -> dict:
    """Train (or resume, or reuse) one run in `out` and return its metrics.

    Args:
        cfg: the run's settings (experiments.resolve).
        out: the run folder.
        progress: progress bars and one line per epoch.
        retrain: discard what the folder holds and train again.
        sync_batchnorm: SyncBatchNorm under torchrun.
        stop_after_epochs: end this call after that many epochs (time-limited jobs); calling again resumes.

    Returns:
        The run's metrics.json contents, or {"finished": False, "epoch": N} when stopped early.
    """
    return Trainer(cfg, Path(out), progress=progress, retrain=retrain, sync_batchnorm=sync_batchnorm,
                   stop_after_epochs=stop_after_epochs).fit()
