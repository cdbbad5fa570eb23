"""Predictions at survey scale: any number of images, memory flat in their number, resumable, sharded.

`predict_to_file` decodes the images a chunk at a time (the process pool of data/pool.py works ahead),
predicts them (galaxylib.prediction, with the run's TTA views) and appends their rows to a partial file next to
the output; nothing holds all the images or all the predictions. Next to the partial file a small progress
record says how many rows are done and how long the file was then, under a key made of the run, the
checkpoint's weights, the inputs (every ID and path) and every setting that changes the numbers (views,
batch size, --resize, device type, precision, number of ranks). Kill it, run the same command again, and it
truncates the partial file to the last complete chunk and continues; the final file is byte-identical to an
uninterrupted run. A different key starts afresh.

    <out>.partial              rows so far, with the header (rank 0)
    <out>.partial.json         its progress record
    <out>.partial.rank<r>      under torchrun: the rows of rank r > 0, and its .json record

Under torchrun every rank predicts one contiguous shard (whole batches, so every batch is the same as in a
one-process run and the file is the same too); rank 0 waits for all, appends the other ranks' rows to its own,
checks the whole file and only then moves it over the output (galaxylib.fileio.replace_checked), so a good
output is never replaced by a bad one. The partial files must be on a filesystem every rank sees.

The check: for Kaggle GalaxyIDs the Kaggle submission check (prediction.check_submission: header, values in
[0, 1], one row per image); for other IDs (an `id_str` column) the same rules read in chunks, without the
Kaggle header.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galaxylib import layout, tree
from galaxylib.data.cache import decode_stream, exclusive
from galaxylib.data.inputs import Inputs
from galaxylib.data.pool import cpu_count
from galaxylib.device import amp_dtype, select_device
from galaxylib.distributed import Dist
from galaxylib.errors import UserError
from galaxylib.fileio import atomic_write_text, replace_checked
from galaxylib.prediction import (
    PREDICT_BATCH,
    check_submission,
    predict_batches,
    prediction_frame,
    refuse_non_finite,
)

CHUNK = 4096  # images per progress record (rounded up to whole batches): a kill loses at most this many
RECORD_VERSION = 1
CHECK_ROWS = 100_000  # rows per read when checking a non-Kaggle output


@dataclass
class PredictionResult:
    """What predict_to_file did (totals over all ranks)."""

    path: Path
    n: int
    id_column: str
    resized: int  # images resized to 424 x 424 (--resize)
    resumed: int  # images already predicted by an interrupted run
    seconds: float
    world_size: int


def _part(out: Path, rank: int) -> Path:
    return out.with_name(out.name + (".partial" if rank == 0 else f".partial.rank{rank}"))


def _record(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 of the model's state (names, dtypes, shapes, bytes): which checkpoint made the predictions."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _rows(inputs: Inputs, start: int, preds: np.ndarray, out: Path) -> bytes:
    """CSV rows (no header) for the images start.. : the same bytes as prediction.write_submission writes."""
    refuse_non_finite(inputs.ids[start : start + len(preds)], preds, out)
    return prediction_frame(inputs, preds, start).to_csv(header=False, index=False, float_format="%.6f").encode()


def _header(inputs: Inputs) -> bytes:
    return (",".join([inputs.id_column, *tree.COLUMNS]) + "\n").encode()


class _Progress:
    """A tqdm bar in a terminal; elsewhere (logs, batch jobs) one line per chunk with the rate and the ETA."""

    def __init__(self, total: int, done: int, enabled: bool, desc: str):
        self.total, self.done, self.first = total, done, done
        self.t0 = time.perf_counter()
        self.bar = self.log = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=desc, unit="img", smoothing=0.1)
        elif enabled:
            self.log = desc

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.log is not None:
            rate = (self.done - self.first) / max(time.perf_counter() - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"{self.log}: {self.done}/{self.total} images ({100 * self.done / self.total:.1f} %), "
                  f"{rate:.0f} img/s, ETA {_duration(eta)}", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _resume_point(part: Path, key: str) -> dict | None:
    """The progress of an interrupted run with this key, its partial file cut back to the last complete chunk."""
    try:
        meta = json.loads(_record(part).read_text())
        size = part.stat().st_size
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or size < meta.get("bytes", size + 1):
        return None
    if size > meta["bytes"]:  # rows of a chunk that was being written when the run was stopped
        os.truncate(part, meta["bytes"])
    return meta


def check_rows(path: Path, inputs: Inputs) -> None:
    """Check an output with non-Kaggle IDs in chunks: the header, one row per image in order, values in [0, 1].

    Raises:
        UserError: naming the file and the first problems.
    """
    expected = [inputs.id_column, *tree.COLUMNS]
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split(",")
    if header != expected:
        raise UserError(f"{path}: header must be {inputs.id_column} + the 37 columns in order")
    problems, at = [], 0
    reader = pd.read_csv(path, dtype={inputs.id_column: str}, keep_default_na=False, chunksize=CHECK_ROWS)
    for part in reader:
        ids = part[inputs.id_column].tolist()
        if ids != inputs.ids[at : at + len(ids)]:
            k = next((k for k, (a, b) in enumerate(zip(ids, inputs.ids[at:], strict=False)) if a != b), len(ids))
            want = inputs.ids[at + k] if at + k < len(inputs) else "no further row"
            problems.append(f"{path}: row {at + k + 1} is {inputs.id_column} {ids[k]!r}, expected {want!r}")
            break
        values = part[list(tree.COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy()
        bad = np.argwhere(~((values >= 0) & (values <= 1)))
        problems += [f"{path}: {inputs.id_column} {ids[r]}, column {tree.COLUMNS[c]}: not a number in [0, 1]"
                     for r, c in bad[:10]]  # fmt: skip
        at += len(ids)
        if problems:
            break
    if not problems and at != len(inputs):
        problems.append(f"{path}: {at} rows for {len(inputs)} images")
    if problems:
        raise UserError("\n".join(problems))


def predict_to_file(model: torch.nn.Module, cfg, inputs: Inputs, out: str | Path, *, tta: int,
                    device: str = "auto", batch_size: int = PREDICT_BATCH, chunk_size: int = CHUNK,
                    resize: bool = False, workers: int | None = None, progress: bool = True,
                    dist: Dist | None = None, run_label: str = "") -> PredictionResult:  # fmt: skip
    """Predict every image of `inputs` with a run's model into the CSV `out`, resumably (module docstring).

    Args:
        model: the run's model (a GalaxyModel), on the CPU.
        cfg: the run's RunConfig (its geometry: source_crop, cache_size, img_size, eval_crop).
        inputs: the images and their IDs (galaxylib.data.inputs), in output order.
        out: the file to write; replaced only by a complete, checked file.
        tta: test-time views (1, or 16 = the paper's 8 rotations x 2 flips).
        device: auto | cpu | cuda.
        batch_size: images per forward pass.
        chunk_size: images per progress record (rounded up to whole batches).
        resize: resize images that are not 424 x 424 (centre square, then 424 px) instead of refusing them.
        workers: decoding processes (default: the cores, shared among the ranks on a node).
        progress: a progress bar (terminal) or a line per chunk with the ETA (elsewhere).
        dist: this process's rank under torchrun (default: one process).
        run_label: the run folder and checkpoint, for the resume key.

    Returns:
        What was written, with totals over all ranks.

    Raises:
        UserError: an unusable image (DataError, naming it) or an output that fails its check.
    """
    out, dist = Path(out), dist or Dist()
    if not len(inputs):
        raise UserError(f"{inputs.source}: no images to predict")
    if batch_size < 1 or chunk_size < 1:
        raise UserError("--batch-size and --chunk-size must be at least 1")
    start_time = time.perf_counter()
    dev = select_device(device, dist.local_rank if dist.enabled else None)
    amp = amp_dtype("auto", dev)
    chunk = -(-chunk_size // batch_size) * batch_size
    n_batches = -(-len(inputs) // batch_size)
    shard = dist.rank_slice(n_batches)
    lo, hi = shard.start * batch_size, min(shard.stop * batch_size, len(inputs))
    key = hashlib.sha256(json.dumps({
        "version": RECORD_VERSION, "run": run_label, "weights": weights_hash(model),
        "geometry": [cfg.source_crop, cfg.cache_size, cfg.img_size, cfg.eval_crop], "tta": tta,
        "batch_size": batch_size, "resize": resize, "device": dev.type, "amp": str(amp),
        "world_size": dist.world_size, "rank": dist.rank, "inputs": inputs.fingerprint(),
        "id_column": inputs.id_column,
    }, sort_keys=True).encode()).hexdigest()[:24]  # fmt: skip
    part = _part(out, dist.rank)
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as locked:
        try:
            locked.enter_context(exclusive(part.with_name(part.name + ".lock"), wait=False))
        except BlockingIOError as err:
            busy = f"{out}: another predict is writing this file now; wait for it or use another --out"
            raise UserError(busy) from err
        return _predict_locked(model, cfg, inputs, out, part, key, lo, hi, tta=tta, dev=dev, amp=amp,
                               batch_size=batch_size, chunk=chunk, resize=resize, workers=workers,
                               progress=progress, dist=dist, start_time=start_time)  # fmt: skip


def _predict_locked(model, cfg, inputs: Inputs, out: Path, part: Path, key: str, lo: int, hi: int, *, tta: int,
                    dev, amp, batch_size: int, chunk: int, resize: bool, workers: int | None, progress: bool,
                    dist: Dist, start_time: float) -> PredictionResult:  # fmt: skip
    """predict_to_file, with this rank's partial file locked."""
    meta = _resume_point(part, key)
    if meta is None:
        part.write_bytes(_header(inputs) if dist.rank == 0 else b"")
        meta = {"key": key, "done": 0, "bytes": part.stat().st_size, "resized": 0, "total": hi - lo}
        atomic_write_text(_record(part), json.dumps(meta) + "\n")
    resumed = meta["done"]
    channels_last = cfg.channels_last and dev.type == "cuda"
    model = model.to(dev, memory_format=torch.channels_last) if channels_last else model.to(dev)
    bar = _Progress(hi - lo, resumed, progress and dist.is_main, f"predict ({tta} views)")
    try:
        if resumed < hi - lo:
            workers = workers or max(1, cpu_count() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
            _predict_shard(model, cfg, inputs, part, meta, lo + resumed, hi, chunk=chunk, tta=tta, dev=dev, amp=amp,
                           batch_size=batch_size, resize=resize, workers=workers, channels_last=channels_last,
                           bar=bar, out=out)  # fmt: skip
    finally:
        bar.close()
    totals = dist.all_reduce(torch.tensor([meta["resized"], resumed], dtype=torch.float64,
                                          device=dev if dev.type == "cuda" else "cpu"))  # fmt: skip
    dist.barrier()
    if dist.is_main:
        _merge_and_publish(out, inputs, dist.world_size)
    dist.barrier()
    return PredictionResult(out, len(inputs), inputs.id_column, int(totals[0]), int(totals[1]),
                            time.perf_counter() - start_time, dist.world_size)  # fmt: skip


def _predict_shard(model, cfg, inputs: Inputs, part: Path, meta: dict, start: int, stop: int, *, chunk: int,
                   tta: int, dev, amp, batch_size: int, resize: bool, workers: int, channels_last: bool,
                   bar: _Progress, out: Path) -> None:  # fmt: skip
    """Predict images start..stop, appending each complete chunk's rows to `part` and recording it."""
    resized_flags: collections.deque[np.ndarray] = collections.deque()

    def batches():
        for images, resized in decode_stream(inputs.paths[start:stop], crop=cfg.source_crop, size=cfg.cache_size,
                                             frame=layout.FRAME, resize=resize, workers=workers,
                                             batch=batch_size):  # fmt: skip
            resized_flags.append(resized)
            yield torch.from_numpy(images).permute(0, 3, 1, 2)

    preds = predict_batches(model, batches(), source_crop=cfg.source_crop, out_size=cfg.img_size,
                            eval_crop=cfg.eval_crop, tta=tta, device=dev, amp_dtype=amp,
                            channels_last=channels_last)  # fmt: skip
    pending: list[np.ndarray] = []
    held, resized, at = 0, 0, start
    # closing: on an error the decoding pool is shut down now, not when the traceback is freed
    with open(part, "ab") as f, contextlib.closing(preds):
        for p in preds:
            pending.append(p)
            held += len(p)
            resized += int(resized_flags.popleft().sum())
            if held < chunk and at + held < stop:
                continue
            try:
                rows = _rows(inputs, at, np.concatenate(pending), out)
            except UserError:  # predictions that can never be valid: keep nothing to resume from
                f.close()
                part.unlink(missing_ok=True)
                _record(part).unlink(missing_ok=True)
                raise
            f.write(rows)
            f.flush()
            os.fsync(f.fileno())  # the rows are on disk before the record says so
            at += held
            meta.update(done=meta["done"] + held, bytes=f.tell(), resized=meta["resized"] + resized)
            atomic_write_text(_record(part), json.dumps(meta) + "\n")
            bar.update(held)
            pending, held, resized = [], 0, 0


def _merge_and_publish(out: Path, inputs: Inputs, world_size: int) -> None:
    """Rank 0: append the other ranks' rows to its own, check the whole file, move it over `out`, tidy up."""
    part0 = _part(out, 0)
    others = [_part(out, r) for r in range(1, world_size)]
    with open(part0, "ab") as f:
        for part in others:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)

    def check(path: Path) -> None:
        if inputs.kaggle:
            check_submission(path, expected_ids=inputs.galaxy_ids(), name=out)
        else:
            check_rows(path, inputs)

    try:
        replace_checked(part0, out, check)
    finally:
        if not part0.exists():  # published, or removed by a failed check: the partial files are done with
            for part in [part0, *others]:
                _record(part).unlink(missing_ok=True)
            for part in others:
                part.unlink(missing_ok=True)
