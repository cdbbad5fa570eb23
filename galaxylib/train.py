"""The training loop: the paper's recipe (Adam, MSE on sigmoid outputs, cosine annealing per epoch) on a fast path.

`Trainer.fit` reads as five stages:

    prepare_data   read and validate the folders, take the profile's subset, split as the paper did,
                   decode the images once and put them where training reads them
    build          the model, channels_last, DDP / torch.compile, Adam
    resume         the last checkpoint of an interrupted run of the same config, if any
    epochs         augment on the device -> forward -> masked MSE -> backward -> step; validate; checkpoint
    final_scores   the final model's validation scores with TTA, per question, against the mean predictor

bf16 autocast, channels_last, cudnn benchmark and fused Adam are on by default on CUDA; `--precision fp32` is
the paper's own arithmetic. Metrics are accumulated on the device and read once per epoch, so the GPU never
waits for the host. The run folder (galaxylib.rundir) makes a rerun resume or reuse; under torchrun the same
code runs data-parallel (galaxylib.distributed) and only rank 0 writes.
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
from galaxylib import rundir
from galaxylib.augment import TrainAugment, eval_transform
from galaxylib.data.store import DeviceData
from galaxylib.device import amp_dtype, device_name, select_device
from galaxylib.distributed import init_distributed
from galaxylib.errors import TrainingDiverged, UserError
from galaxylib.experiments import RunConfig
from galaxylib.metrics import VOTES, mean_predictor, noise_floor, per_question_rmse, rmse
from galaxylib.models import build_model, count_parameters
from galaxylib.predict import predict, write_submission


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
    if not cfg.data_dirs:
        raise UserError("no data folder given (--data-dir DIR)")
    data = gdata.load_folders(cfg.data_dirs, progress=progress)
    if data.labels is None:
        raise UserError(f"{cfg.data_dirs[0]}: training needs labels (training_solutions_rev1*.csv)")
    data, _ = gdata.holdout_split(data, cfg.holdout)
    data = gdata.profile_subset(data, cfg.max_images, cfg.split_seed)
    train_idx, val_idx = gdata.paper_split(data, test_size=0.1, seed=cfg.split_seed)
    return data, np.asarray(train_idx), np.asarray(val_idx)


class Trainer:
    """One run of one experiment; `fit()` trains (or resumes, or reuses) and returns the metrics."""

    def __init__(self, cfg: RunConfig, out: Path, *, progress: bool = True, retrain: bool = False,
                 sync_batchnorm: bool = False, stop_after_epochs: int | None = None):
        self.ddp = init_distributed(cfg.device)
        self.cfg = cfg.replace(world_size=self.ddp.world_size)
        self.run = rundir.RunDir(out)
        self.progress, self.sync_batchnorm, self.stop_after_epochs = progress, sync_batchnorm, stop_after_epochs
        self.device = select_device(cfg.device, self.ddp.local_rank if self.ddp.enabled else None)
        self.amp = amp_dtype(cfg.precision, self.device)
        self.augment = TrainAugment(out_size=cfg.img_size, source_crop=cfg.source_crop, crop_range=cfg.crop_range)
        if retrain and self.ddp.is_main:
            self.run.clear()
        self.ddp.barrier()

    def say(self, message: str, always: bool = False) -> None:
        """One line for the user (rank 0 only; only with progress on unless `always`)."""
        if self.ddp.is_main and (self.progress or always):
            print(message, flush=True)

    def fit(self) -> dict:
        """Train, resume or reuse the run; returns metrics.json's contents ({"finished": False} when stopped)."""
        cfg = self.cfg
        finished = self.run.finished_metrics(cfg)
        if finished is not None:
            self.say(f"{self.run.path}: finished run reused (use --retrain to train again)")
            return finished
        state = self.run.resumable_state(cfg)
        if self.ddp.is_main:
            self.run.write_config(cfg)
        self._seed_and_backends()
        prep = self.prepare_data()
        built = self.build(prep)
        start_epoch, history, best = self.resume(built, state)
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
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

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
        store = DeviceData(cache, data.labels, self.device)
        return Prepared(data, train_idx, val_idx, store, gdata.data_source(cfg.data_dirs))

    def build(self, prep: Prepared) -> Built:
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
            kept = f"the last good checkpoint ({self.run.file(rundir.LAST)}, epoch {epoch}) is kept" if epoch else (
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
        val_images = store.images[torch.as_tensor(prep.val_idx, device=store.images.device)]
        geometry = dict(source_crop=cfg.source_crop, out_size=cfg.img_size, eval_crop=cfg.eval_crop,
                        device=self.device, amp_dtype=self.amp, channels_last=cfg.channels_last)
        preds = predict(built.model, val_images, tta=cfg.tta, **geometry)
        one_view = predict(built.model, val_images, tta=1, **geometry)
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
            "device": device_name(self.device), "precision": "bf16" if self.amp else "fp32",
            "world_size": self.ddp.world_size, "images_on": store.where, "finished": True,
        }  # fmt: skip

    # -- one epoch ------------------------------------------------------------------------------------------------

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def train_epoch(self, built: Built, prep: Prepared, epoch: int) -> float:
        """One pass over the training galaxies in a seeded random order; returns the epoch's MSE."""
        cfg, ddp, store, model = self.cfg, self.ddp, prep.store, built.train_model
        model.train()
        train_t = torch.as_tensor(prep.train_idx, dtype=torch.long)
        perm = train_t[torch.randperm(len(train_t), generator=epoch_generator(cfg.seed, epoch, 0))]
        aug_gen = epoch_generator(cfg.seed, epoch, 1)
        bar = None
        if self.progress and ddp.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(perm), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="img", leave=False)
        sq_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        count = torch.zeros((), device=self.device, dtype=torch.float64)
        t0 = time.perf_counter()
        for step, start in enumerate(range(0, len(perm), cfg.batch_size)):
            batch = perm[start : start + cfg.batch_size]
            if len(batch) < ddp.world_size:  # a last batch too small to give every rank an image is skipped
                break
            params = self.augment.sample(len(batch), aug_gen)  # for the global batch: the same for any world size
            mine = ddp.rank_slice(len(batch))
            idx = batch[mine]
            global_count = float(store.counts_host[batch].sum())
            x = self.augment.apply(store.images_at(idx), {k: v[mine] for k, v in params.items()})
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
            if bar is not None:
                bar.update(len(batch))
                if step % 10 == 0:
                    mse = (sq_sum / count.clamp(min=1)).item()  # one sync every 10 steps, for the display only
                    bar.set_postfix(rmse=f"{math.sqrt(max(mse, 0)):.4f}",
                                    img_s=f"{(start + len(batch)) / (time.perf_counter() - t0):.0f}")
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
        batch = max(cfg.batch_size, 256)  # no gradients: larger batches fit
        for start in range(0, len(shard), batch):
            idx = shard[start : start + batch]
            x = eval_transform(store.images_at(idx), source_crop=cfg.source_crop, out_size=cfg.img_size,
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
