"""The training loop: the paper's recipe (Adam, MSE on sigmoid outputs, cosine annealing per epoch) on a fast path.

Data enters once: the JPEGs are decoded into a uint8 cache, held on the GPU (or in pinned host memory when it
does not fit), and every batch is augmented on the training device by one affine resample. bf16 autocast,
channels_last, cudnn benchmark and fused Adam are on by default on CUDA; `--precision fp32` is the paper's own
setting. Metrics are accumulated on the device and read once per epoch, so the GPU never waits for the host.

A run is a folder: config.json, history.csv, last.pt (every epoch, written atomically), best.pt, metrics.json,
val_predictions.csv. Running the same command again resumes from last.pt, or reuses a finished run.
Under torchrun the same code runs data-parallel (DistributedDataParallel); only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from galaxylib import data as gdata
from galaxylib import evaluate
from galaxylib.augment import TrainAugment, affine_resample, eval_transform
from galaxylib.cli import UserError
from galaxylib.experiments import RunConfig
from galaxylib.models import build_model, count_parameters

HISTORY_COLUMNS = ["epoch", "train_loss", "train_rmse", "val_loss", "val_rmse", "lr", "seconds", "images_per_s",
                   "train_seconds", "val_seconds"]


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------------------------------------
# helpers


@dataclass
class Dist:
    """This process's place in a (possibly single-process) data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> Dist:
    """Join the torchrun process group when launched by torchrun (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local)


def select_device(name: str, ddp: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for, but PyTorch sees no CUDA GPU (use --device cpu)")
        return torch.device("cuda", ddp.local_rank if ddp.enabled else torch.device(name).index or 0)
    if name != "cpu":
        raise UserError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device("cpu")


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast by default on CUDA; fp32 (no autocast) on CPU and whenever asked for."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise UserError(f"unknown precision {precision!r}: use auto, fp32 or bf16")
    return torch.bfloat16 if precision == "bf16" else None


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """Seeded per epoch, so that a resumed run draws the same batches and augmentations as an uninterrupted one."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


def _all_reduce(t: torch.Tensor, ddp: Dist) -> torch.Tensor:
    if ddp.enabled:
        dist.all_reduce(t)
    return t


def _rank_slice(n: int, ddp: Dist) -> slice:
    """This rank's part of a global batch of n: the remainder goes to the lowest ranks, one each."""
    base, extra = divmod(n, ddp.world_size)
    start = ddp.rank * base + min(ddp.rank, extra)
    return slice(start, start + base + (ddp.rank < extra))


# ----------------------------------------------------------------------------------------------------------
# data on the device


class DeviceData:
    """The decoded images and labels as tensors where training reads them.

    On CUDA the uint8 cache goes to GPU memory when it takes under half of what is free, else to pinned host
    memory; labels are kept with NaN replaced by 0 and a mask, so partial labels cost nothing extra.
    """

    def __init__(self, cache: np.ndarray, labels: np.ndarray | None, device: torch.device):
        self.device = device
        host = torch.from_numpy(np.array(cache))  # a writable copy in RAM (the cache file stays read-only)
        on_gpu = device.type == "cuda" and host.numel() < 0.5 * torch.cuda.mem_get_info(device)[0]
        if device.type == "cuda" and not on_gpu:
            host = host.pin_memory()
        self.images = host.to(device) if on_gpu or device.type == "cpu" else host
        self.where = "gpu" if on_gpu else ("pinned host" if device.type == "cuda" else "host")
        if labels is not None:
            lab = torch.from_numpy(np.asarray(labels, np.float32))
            self.mask_host = ~torch.isnan(lab)
            self.labels = torch.nan_to_num(lab, nan=0.0).to(device)
            self.mask = self.mask_host.to(device)
            self.counts_host = self.mask_host.sum(1)

    def images_at(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 on the device (a channels_last view of the NHWC cache)."""
        if self.images.device == self.device:
            x = self.images[idx.to(self.device, non_blocking=True)]
        else:
            x = self.images[idx].pin_memory().to(self.device, non_blocking=True)
        return x.permute(0, 3, 1, 2)

    def labels_at(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i = idx.to(self.device, non_blocking=True)
        return self.labels[i], self.mask[i]


def prepare_data(cfg: RunConfig, progress: bool = True) -> tuple[gdata.GalaxyData, np.ndarray, np.ndarray]:
    """Load and validate the folders, take the profile's subset, split as the paper did."""
    if not cfg.data_dirs:
        raise UserError("no data folder given (--data-dir DIR)")
    data = gdata.load_folders([Path(d) for d in cfg.data_dirs])
    if data.labels is None:
        raise UserError(f"{cfg.data_dirs[0]}: training needs labels (training_solutions_rev1*.csv)")
    if cfg.max_images and len(data) > cfg.max_images:
        keep = np.sort(np.random.default_rng(cfg.seed).permutation(len(data))[: cfg.max_images])
        data = data.subset(keep)
    train_idx, val_idx = gdata.paper_split(data, test_size=0.1, seed=cfg.seed)
    return data, np.asarray(train_idx), np.asarray(val_idx)


# ----------------------------------------------------------------------------------------------------------
# the loop


class Trainer:
    """One run of one experiment; `fit()` trains (or resumes, or reuses) and returns the metrics."""

    def __init__(self, cfg: RunConfig, out: Path, *, progress: bool = True, retrain: bool = False,
                 sync_batchnorm: bool = False, stop_after_epochs: int | None = None):
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.stop_after_epochs = stop_after_epochs
        self.ddp = init_distributed(cfg.device)
        cfg.world_size = self.ddp.world_size
        self.device = select_device(cfg.device, self.ddp)
        self.amp = amp_dtype(cfg.precision, self.device)
        self.sync_batchnorm = sync_batchnorm
        if retrain and self.ddp.is_main:
            for name in ("last.pt", "best.pt", "metrics.json", "history.csv"):
                (self.out / name).unlink(missing_ok=True)
        if self.ddp.enabled:
            dist.barrier()

    # -- run folder -------------------------------------------------------------------------------------------

    def _check_run_folder(self) -> dict | None:
        """The saved checkpoint when this folder holds the same run; an error when it holds another."""
        cfg_path, last = self.out / "config.json", self.out / "last.pt"
        if not last.exists():
            return None
        if cfg_path.exists():
            saved = RunConfig.load(cfg_path)
            if saved.result_hash() != self.cfg.result_hash():
                raise UserError(f"{self.out} holds a run with other settings ({saved.run_name()}); "
                                "use another --out, or --retrain to overwrite it")
        try:
            return torch.load(last, map_location="cpu", weights_only=False)
        except Exception as err:
            raise UserError(f"{last}: unreadable checkpoint ({err}); delete it or use --retrain") from err

    def _write_config(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        d = self.cfg.to_dict()
        d["run_name"] = self.cfg.run_name()
        _atomic_write_text(json.dumps(d, indent=2) + "\n", self.out / "config.json")

    # -- main entry -----------------------------------------------------------------------------------------------

    def fit(self) -> dict:
        cfg, ddp = self.cfg, self.ddp
        if ddp.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        metrics_path = self.out / "metrics.json"
        finished = finished_metrics(cfg, self.out)
        if finished is not None:
            if ddp.is_main and self.progress:
                print(f"{self.out}: finished run reused (use --retrain to train again)")
            return finished
        state = self._check_run_folder()
        if ddp.is_main:
            self._write_config()

        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormal floats are slow on x86 CPUs; flushing them costs no accuracy
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        data, train_idx, val_idx = prepare_data(cfg, self.progress and ddp.is_main)
        self.data_info = dict(source=gdata.data_source([Path(d) for d in cfg.data_dirs]),
                              n_train=int(len(train_idx)), n_val=int(len(val_idx)))
        if ddp.is_main:
            part = np.full(len(data), "unused", dtype=object)
            part[train_idx], part[val_idx] = "train", "val"
            _atomic_write_text(pd.DataFrame({"GalaxyID": data.ids, "part": part}).to_csv(index=False),
                               self.out / "split.csv")
        if ddp.enabled and not ddp.is_main:
            dist.barrier()  # rank 0 builds the cache first; the others then reuse it instead of racing to write it
        cache = gdata.build_cache(data.image_paths, crop=cfg.source_crop, size=cfg.cache_size,
                                  progress=self.progress and ddp.is_main)
        if ddp.enabled and ddp.is_main:
            dist.barrier()
        dd = DeviceData(cache, data.labels, self.device)

        model = build_model(cfg.model, img_size=cfg.img_size, pretrained=cfg.pretrained,
                            weights_file=cfg.weights_file, head=cfg.head, tree_output=cfg.tree_output)
        n_params = count_parameters(model)
        if self.sync_batchnorm and ddp.enabled:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        fused = self.device.type == "cuda"
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=fused)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.min_lr)
        history: list[dict] = []
        start_epoch, best = 0, {"val_rmse": math.inf, "epoch": 0}
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history, start_epoch, best = state["history"], state["epoch"], state["best"]
            if ddp.is_main:
                print(f"{self.out}: resuming after epoch {start_epoch} of {cfg.epochs}")

        train_model = model
        if ddp.enabled:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            train_model = torch.compile(train_model)

        augment = TrainAugment(out_size=cfg.img_size, source_crop=cfg.source_crop, crop_range=cfg.crop_range,
                               seed=cfg.seed)
        train_t = torch.as_tensor(train_idx, dtype=torch.long)
        val_t = torch.as_tensor(val_idx, dtype=torch.long)
        self.timing = dict(images_on=dd.where)

        end_epoch = cfg.epochs if self.stop_after_epochs is None else min(cfg.epochs,
                                                                          start_epoch + self.stop_after_epochs)
        for epoch in range(start_epoch, end_epoch):
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_loss = self._train_epoch(train_model, optimizer, augment, dd, train_t, epoch)
            self._average_buffers(model)
            t1 = time.perf_counter()  # _train_epoch ends with a host read of its totals, so the GPU is done
            val_loss = self._evaluate(model, dd, val_t)
            scheduler.step()
            t2 = time.perf_counter()
            seconds = t2 - t0
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise TrainingDiverged(
                    f"epoch {epoch + 1}: the loss became {'NaN' if math.isnan(train_loss) else 'infinite'}; "
                    f"training stopped, the last good checkpoint ({self.out / 'last.pt'}, epoch {epoch}) is kept")
            row = dict(epoch=epoch + 1, train_loss=train_loss, train_rmse=math.sqrt(train_loss),
                       val_loss=val_loss, val_rmse=math.sqrt(val_loss), lr=lr, seconds=seconds,
                       images_per_s=(len(train_idx) + len(val_idx)) / seconds, train_seconds=t1 - t0,
                       val_seconds=t2 - t1)
            history.append(row)
            if row["val_rmse"] < best["val_rmse"]:
                best = {"val_rmse": row["val_rmse"], "epoch": epoch + 1}
                if ddp.is_main:
                    _atomic_save({"model": model.state_dict(), "epoch": epoch + 1, "config": cfg.to_dict()},
                                 self.out / "best.pt")
            if ddp.is_main:
                _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": history,
                              "best": best, "config": cfg.to_dict()}, self.out / "last.pt")
                _atomic_write_text(pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(index=False),
                                   self.out / "history.csv")
                if self.progress:
                    print(f"epoch {epoch + 1}/{cfg.epochs}  train rmse {row['train_rmse']:.5f}  "
                          f"val rmse {row['val_rmse']:.5f}  lr {lr:.3g}  {seconds:.1f} s", flush=True)

        if end_epoch < cfg.epochs:
            if ddp.is_main and self.progress:
                print(f"{self.out}: stopped after epoch {end_epoch} of {cfg.epochs}; run again to resume")
            return {"finished": False, "epoch": end_epoch}
        self.model = model  # kept for callers that inspect the trained weights (tests, notebooks)
        metrics = self._final_metrics(model, data, dd, train_idx, val_idx, history, best, n_params)
        if ddp.is_main:
            _atomic_write_text(json.dumps(metrics, indent=2) + "\n", metrics_path)
        if ddp.enabled:
            dist.barrier()
        return metrics

    # -- one epoch ------------------------------------------------------------------------------------------------

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def _train_epoch(self, model, optimizer, augment: TrainAugment, dd: DeviceData, train_t: torch.Tensor,
                     epoch: int) -> float:
        cfg, ddp = self.cfg, self.ddp
        model.train()
        perm = train_t[torch.randperm(len(train_t), generator=_epoch_generator(cfg.seed, epoch, 0))]
        aug_gen = _epoch_generator(cfg.seed, epoch, 1)
        batches = range(0, len(perm), cfg.batch_size)
        bar = None
        if self.progress and ddp.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(perm), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="img", leave=False)
        sq_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        count = torch.zeros((), device=self.device, dtype=torch.float64)
        t0 = time.perf_counter()
        for step, start in enumerate(batches):
            gidx = perm[start : start + cfg.batch_size]
            if len(gidx) < ddp.world_size:  # a last batch too small to give every rank an image is skipped
                break
            params = augment.sample(len(gidx), aug_gen)  # drawn for the global batch: same for any world size
            part = _rank_slice(len(gidx), ddp)
            idx = gidx[part]
            global_count = float(dd.counts_host[gidx].sum())
            x = affine_resample(dd.images_at(idx), source_crop=cfg.source_crop, out_size=cfg.img_size,
                                max_crop=cfg.crop_range[1] - 1,
                                **{k: v[part].to(self.device, non_blocking=True) for k, v in params.items()})
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y, m = dd.labels_at(idx)
            with self._autocast():
                pred = model(x)
            err = (pred.float() - y).square() * m
            # DDP averages gradients over ranks; scaling by world_size makes the result the exact global mean
            loss = err.sum() * (ddp.world_size / max(global_count, 1.0))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sq_sum += err.detach().sum()
            count += m.sum()
            if bar is not None:
                bar.update(len(gidx))
                if step % 10 == 0:
                    mse = (sq_sum / count.clamp(min=1)).item()  # one sync every 10 steps, for the display only
                    bar.set_postfix(rmse=f"{math.sqrt(max(mse, 0)):.4f}",
                                    img_s=f"{(start + len(gidx)) / (time.perf_counter() - t0):.0f}")
        if bar is not None:
            bar.close()
        totals = _all_reduce(torch.stack([sq_sum, count]), ddp)
        return float(totals[0] / totals[1].clamp(min=1))

    @torch.no_grad()
    def _average_buffers(self, model) -> None:
        """Batch-norm running statistics are updated on each rank's own images: average them across ranks, so
        every rank validates, and rank 0 saves, the same model."""
        if not self.ddp.enabled:
            return
        for buf in model.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf)
                buf /= self.ddp.world_size

    @torch.no_grad()
    def _evaluate(self, model, dd: DeviceData, val_t: torch.Tensor) -> float:
        """Validation MSE over every labelled entry (the evaluation transform, no TTA)."""
        cfg, ddp = self.cfg, self.ddp
        model.eval()
        shard = val_t[ddp.rank :: ddp.world_size]
        sq_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        count = torch.zeros((), device=self.device, dtype=torch.float64)
        batch = max(cfg.batch_size, 256)  # no gradients: larger batches fit
        for start in range(0, len(shard), batch):
            idx = shard[start : start + batch]
            x = eval_transform(dd.images_at(idx), source_crop=cfg.source_crop, out_size=cfg.img_size,
                               eval_crop=cfg.eval_crop)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y, m = dd.labels_at(idx)
            with self._autocast():
                pred = model(x)
            sq_sum += ((pred.float() - y).square() * m).sum()
            count += m.sum()
        totals = _all_reduce(torch.stack([sq_sum, count]), ddp)
        return float(totals[0] / totals[1].clamp(min=1))

    # -- after training -------------------------------------------------------------------------------------------

    def _final_metrics(self, model, data, dd: DeviceData, train_idx, val_idx, history, best, n_params) -> dict:
        """Scores of the final model (the paper submitted its last epoch): plain (the last epoch's validation
        pass) and with TTA, per question."""
        cfg = self.cfg
        val_images = dd.images[torch.as_tensor(val_idx, device=dd.images.device)]
        preds = evaluate.predict(model, val_images, source_crop=cfg.source_crop, out_size=cfg.img_size,
                                 eval_crop=cfg.eval_crop, tta=cfg.tta, device=self.device, amp_dtype=self.amp,
                                 channels_last=cfg.channels_last)
        truth = data.labels[val_idx]
        mean_pred = np.broadcast_to(evaluate.mean_predictor(data.labels[train_idx]), truth.shape)
        if self.ddp.is_main:
            evaluate.write_submission(data.ids[val_idx], preds, self.out / "val_predictions.csv")
        seconds = [h["seconds"] for h in history]
        device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else (
            platform.processor() or platform.machine()) + f" ({os.cpu_count()} cores)"
        return {
            "experiment": cfg.experiment, "profile": cfg.profile, "run_name": cfg.run_name(),
            "data_source": self.data_info["source"], "n_train": self.data_info["n_train"],
            "n_val": self.data_info["n_val"], "labelled_columns": int((~np.isnan(truth)).any(0).sum()),
            "pretrained": cfg.pretrained, "parameters": n_params,
            "epochs": cfg.epochs, "img_size": cfg.img_size,
            "val_rmse": history[-1]["val_rmse"], "val_rmse_tta": evaluate.rmse(preds, truth),
            "tta_views": cfg.tta, "best_val_rmse": best["val_rmse"], "best_epoch": best["epoch"],
            "mean_predictor_rmse": evaluate.rmse(mean_pred, truth),
            "per_question_rmse_tta": evaluate.per_question_rmse(preds, truth),
            "seconds_per_epoch": float(np.median(seconds)) if seconds else None,
            "total_seconds": float(np.sum(seconds)),
            "device": device_name, "precision": "bf16" if self.amp else "fp32",
            "world_size": self.ddp.world_size, "images_on": dd.where, "finished": True,
        }  # fmt: skip


def finished_metrics(cfg: RunConfig, run_dir: str | Path) -> dict | None:
    """metrics.json of a finished run of exactly `cfg` in run_dir, else None.

    Reads the small JSON files only, never the checkpoint (2.4 GB with Adam's state for ConvNeXt Large).
    """
    run_dir = Path(run_dir)
    cfg_path, metrics_path = run_dir / "config.json", run_dir / "metrics.json"
    if not (cfg_path.is_file() and metrics_path.is_file() and (run_dir / "last.pt").is_file()):
        return None
    saved = RunConfig.load(cfg_path)
    metrics = json.loads(metrics_path.read_text())
    if saved.result_hash() != cfg.result_hash() or metrics.get("epochs") != cfg.epochs:
        return None
    return metrics


def train(cfg: RunConfig, out: str | Path, *, progress: bool = True, retrain: bool = False,
          sync_batchnorm: bool = False, stop_after_epochs: int | None = None) -> dict:
    """Train (or resume, or reuse) one run in `out` and return its metrics.

    `stop_after_epochs` ends this call early (for time-limited cluster jobs); calling again resumes.
    """
    return Trainer(cfg, Path(out), progress=progress, retrain=retrain, sync_batchnorm=sync_batchnorm,
                   stop_after_epochs=stop_after_epochs).fit()


def load_run(run_dir: str | Path, which: str = "best") -> tuple[RunConfig, torch.nn.Module]:
    """The config and model of a finished or interrupted run (`which` = best or last checkpoint)."""
    run_dir = Path(run_dir)
    cfg_path, ckpt = run_dir / "config.json", run_dir / f"{which}.pt"
    if not cfg_path.is_file():
        raise UserError(f"{run_dir}: not a run folder (no config.json)")
    if not ckpt.is_file():
        raise UserError(f"{run_dir}: no {which}.pt checkpoint (was the run interrupted before its first epoch?)")
    try:
        cfg = RunConfig.load(cfg_path)
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UserError(f"{run_dir}: unreadable run ({err})") from err
    model = build_model(cfg.model, img_size=cfg.img_size, pretrained=False, head=cfg.head,
                        tree_output=cfg.tree_output)
    model.load_state_dict(state["model"])
    return cfg, model.eval()

