"""The decoded images and labels where training reads them: on the GPU when the set fits, else streamed from
the cache file on disk, batch by batch, so that host memory is bounded by a few batches and never by N.

    images_on   where the images are                          memory it needs
    gpu         one uint8 tensor in GPU memory (the fastest)   the set, on the GPU
    memory      one uint8 tensor in host RAM (CPU runs only)   the set, in RAM
    stream      the .npy cache on disk (the page cache)        a few batches

Streaming reads each batch's rows from the cache file with positional reads (os.preadv, in sorted order, so
the reads are as sequential as the batch allows) straight into the batch's buffer: no memory mapping, so
the pages read stay in the kernel's page cache and are not counted in the process's resident memory. On CUDA
a background thread reads the next batches into pinned staging buffers and copies them to the GPU on a side
stream (non_blocking), overlapping the training step; on the CPU the rows are read when the batch is asked
for. Either way the batches, their order and their contents are the same as from memory: training through
the streaming path gives the same result (bitwise on the CPU).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from galaxylib.errors import UserError

IMAGES_ON = ("auto", "device", "stream")
GPU_FRACTION = 0.5  # auto holds the set on the GPU when it takes under this share of the free GPU memory
PREFETCH = 3  # batches read ahead on CUDA
FILL_ROWS = 256  # rows per copy when filling the GPU or RAM from the cache file
IOV_MAX = 1024  # buffers per preadv call (the Linux limit)


class RowReader:
    """Rows of a (N, ...) uint8 cache, read into caller-owned buffers.

    A memmap of a whole .npy file (what build_cache returns) is read with os.preadv from the file, so nothing
    is mapped into this process; any other array is indexed directly.
    """

    def __init__(self, cache: np.ndarray):
        self.cache = cache
        self.shape, self.row_bytes = tuple(cache.shape), int(np.prod(cache.shape[1:], dtype=np.int64))
        self.fd = None
        if isinstance(cache, np.memmap) and getattr(cache, "filename", None) and cache.flags.c_contiguous:
            offset = int(getattr(cache, "offset", 0))
            # only the whole file: a slice of a memmap keeps its parent's offset, so its rows would be wrong
            if os.path.getsize(cache.filename) == offset + cache.nbytes and cache.dtype == np.uint8:
                self.fd, self.offset = os.open(cache.filename, os.O_RDONLY), offset

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.close()

    def gather(self, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out[k] = cache[idx[k]] for every k; returns out. out: (len(idx), ...) uint8, C-contiguous."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.fd is None:
            out[...] = self.cache[idx]
            return out
        order = np.argsort(idx, kind="stable")
        rows, flat = idx[order], out.reshape(len(idx), -1)
        # one preadv per run of consecutive rows (a batch is random, but a long run is read in one call)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(np.arange(len(rows)), breaks):
            for part in np.array_split(run, -(-len(run) // IOV_MAX)) if len(run) else []:
                self._read(int(rows[part[0]]), [memoryview(flat[k]) for k in order[part]])
        return out

    def read_range(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """out[:] = cache[start:stop]."""
        return self.gather(np.arange(start, stop), out)

    def _read(self, row: int, buffers: list[memoryview]) -> None:
        want, offset = self.row_bytes * len(buffers), self.offset + row * self.row_bytes
        got = os.preadv(self.fd, buffers, offset)
        while got < want:  # a short read (rare on regular files): continue where it stopped
            k, r = divmod(got, self.row_bytes)
            rest = [buffers[k][r:], *buffers[k + 1 :]]
            more = os.preadv(self.fd, rest, offset + got)
            if more == 0:
                raise OSError(f"{self.cache.filename}: file ends early (truncated cache?)")
            got += more


class DeviceData:
    """The uint8 image cache and the labels, as close to the training device as memory allows.

    Args:
        cache: the decode-once cache (N, S, S, 3) uint8, normally the read-only memmap from build_cache.
        labels: (N, 37) with NaN where not labelled, or None.
        device: the training device.
        images_on: auto = on the GPU when the set takes under half of the free GPU memory, else streamed (on
            the CPU always streamed); device = the whole set on the device (GPU memory, or host RAM for CPU
            runs); stream = streamed from the cache file.
    """

    def __init__(self, cache: np.ndarray, labels: np.ndarray | None, device: torch.device,
                 images_on: str = "auto"):  # fmt: skip
        if images_on not in IMAGES_ON:
            raise UserError(f"unknown --images-on {images_on!r}: use {', '.join(IMAGES_ON)}")
        self.device = device
        self.reader = RowReader(cache)
        self.row_shape = tuple(cache.shape[1:])
        cuda = device.type == "cuda"
        if images_on == "auto":
            fits = cuda and cache.nbytes < GPU_FRACTION * torch.cuda.mem_get_info(device)[0]
            images_on = "device" if fits else "stream"
        self.images: torch.Tensor | None = None  # the whole set, when it is held on the device
        self._prefetch: _CudaPrefetch | None = None  # made on first use; keeps its pinned buffers
        if images_on == "device":
            self.images = self._load_all()
        self.where = "stream" if self.images is None else ("gpu" if cuda else "memory")
        if labels is not None:
            lab = torch.from_numpy(np.asarray(labels, np.float32))
            self.mask_host = ~torch.isnan(lab)
            self.labels = torch.nan_to_num(lab, nan=0.0).to(device)
            self.mask = self.mask_host.to(device)
            self.counts_host = self.mask_host.sum(1)

    def __len__(self) -> int:
        return len(self.reader)

    def _load_all(self) -> torch.Tensor:
        """The whole set on the device, copied FILL_ROWS at a time (host RAM never holds it on CUDA)."""
        n = len(self.reader)
        try:
            images = torch.empty((n, *self.row_shape), dtype=torch.uint8, device=self.device)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as err:  # RuntimeError: the CPU allocator's
            gb = n * self.reader.row_bytes / 1e9
            raise UserError(f"--images-on device: the {gb:.1f} GB image cache does not fit on {self.device}; "
                            "use --images-on auto or stream") from err  # fmt: skip
        if self.device.type == "cpu":
            self.reader.read_range(0, n, images.numpy())
            return images
        staging = torch.empty((FILL_ROWS, *self.row_shape), dtype=torch.uint8).pin_memory()
        for a in range(0, n, FILL_ROWS):
            b = min(a + FILL_ROWS, n)
            self.reader.read_range(a, b, staging[: b - a].numpy())
            images[a:b].copy_(staging[: b - a])  # synchronous: the staging buffer is reused next
        return images

    def images_at(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) uint8 on the device (a channels_last view of the NHWC cache)."""
        if self.images is not None:
            return self.images[idx.to(self.device, non_blocking=True)].permute(0, 3, 1, 2)
        out = np.empty((len(idx), *self.row_shape), np.uint8)
        x = torch.from_numpy(self.reader.gather(idx.numpy(), out))
        return x.to(self.device).permute(0, 3, 1, 2)

    def stream(self, batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """`images_at(idx)` for each idx in `batches`, in order; on CUDA read and copied ahead in the background.

        Stop iterating at any point: the background thread is stopped and joined.
        """
        if self.images is not None or self.device.type != "cuda":
            for idx in batches:
                yield self.images_at(idx)
            return
        if self._prefetch is None:
            self._prefetch = _CudaPrefetch(self.reader, self.row_shape, self.device)
        yield from self._prefetch(batches)

    def labels_at(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels with NaN as 0, mask) of the galaxies at `idx`, on the device."""
        i = idx.to(self.device, non_blocking=True)
        return self.labels[i], self.mask[i]


_END = object()


class _CudaPrefetch:
    """Batches read from the cache file into pinned buffers by a background thread and copied to the GPU on a
    side stream, PREFETCH batches ahead of the consumer.

    A pinned buffer is refilled only after its last copy has finished (a CUDA event per buffer); the GPU copy
    is allocated on the side stream and handed to the consumer's stream with record_stream, so the caching
    allocator does not reuse it while the consumer still reads it.
    """

    def __init__(self, reader: RowReader, row_shape: tuple[int, ...], device: torch.device,
                 depth: int = PREFETCH):  # fmt: skip
        self.reader, self.row_shape, self.device, self.depth = reader, row_shape, device, depth
        self.pinned: list[torch.Tensor] = []  # kept between calls: pinning host memory is slow
        self.copied: list[torch.cuda.Event | None] = []  # the last copy out of each buffer, across calls too
        self.side = torch.cuda.Stream(device)
        self.busy = False

    def _buffers(self, width: int) -> list[torch.Tensor]:
        if not self.pinned or self.pinned[0].shape[0] < width:
            for event in self.copied:
                if event is not None:
                    event.synchronize()
            self.pinned = [torch.empty((width, *self.row_shape), dtype=torch.uint8).pin_memory()
                           for _ in range(self.depth + 1)]  # fmt: skip
            self.copied = [None] * len(self.pinned)
        return self.pinned

    def __call__(self, batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        if not len(batches):
            return
        if self.busy:  # the buffers are shared: two streams at once would overwrite each other's batches
            raise RuntimeError("DeviceData.stream: finish (or close) one stream before starting another")
        self.busy = True
        try:
            yield from self._run(batches)
        finally:
            self.busy = False

    def _run(self, batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        pinned = self._buffers(max(len(b) for b in batches))
        copied, side = self.copied, self.side
        ready: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for n, idx in enumerate(batches):
                    slot = n % len(pinned)
                    if copied[slot] is not None:
                        copied[slot].synchronize()  # the previous copy out of this buffer is done
                    buf = pinned[slot][: len(idx)]
                    self.reader.gather(idx.numpy(), buf.numpy())
                    with torch.cuda.stream(side):
                        gpu = buf.to(self.device, non_blocking=True)
                        event = torch.cuda.Event()
                        event.record(side)
                    copied[slot] = event
                    if not put((gpu, event)):
                        return
                put(_END)
            except BaseException as err:  # handed to the consumer, which raises it
                put(err)

        thread = threading.Thread(target=produce, daemon=True, name="galaxylib-prefetch")
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                gpu, event = item
                current = torch.cuda.current_stream(self.device)
                current.wait_event(event)
                gpu.record_stream(current)
                yield gpu.permute(0, 3, 1, 2)
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    ready.get_nowait()
            thread.join()
