"""The decode-once image cache, and streamed decoding for prediction.

`build_cache`: every JPEG decoded, centre-cropped and resized once into a uint8 .npy file that training reads
as a read-only memmap. The file is named by a hash of the recipe and of every input's path, size and mtime, so
changed data gets a new cache. It is built in chunks by the process pool (data/pool.py), each worker writing
its rows straight into `<name>.partial.npy`, and `<name>.partial.json` records which rows are complete: a
build that is killed (even with SIGKILL) continues where it stopped when it is run again, and gives the same
file as an uninterrupted build. The complete file is renamed to `<name>.npy`, so a partial build is never
mistaken for a cache; a lock file keeps two processes from building the same cache at once. Memory: the parent
holds the list of paths, each worker one chunk of rows; nothing holds the whole set.

`decode_stream`: the same decoding, block by block in input order, a few blocks ahead in the pool, for
prediction at survey scale where no cache of every image could fit on disk: memory bounded by the blocks in
flight, whatever the number of images.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from galaxylib import layout
from galaxylib.data.pool import chunk_size, default_workers, imap_ordered, iter_chunks, split_span
from galaxylib.data.problems import Problem, raise_problems
from galaxylib.errors import DataError
from galaxylib.fileio import atomic_write_text

CACHE_VERSION = 1  # bump when the cache's pixel recipe changes, so old caches are not reused
DECODE_BLOCK = 32  # images per task of decode_stream: ~17 MB at 424 px, so a few in flight per worker is cheap


def default_cache_dir() -> Path:
    """$GALAXYLIB_CACHE_DIR, else ~/.cache/galaxylib."""
    env = os.environ.get("GALAXYLIB_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "galaxylib"


class _CropError(ValueError):
    """The requested crop does not fit the image (a settings problem, not a corrupt file)."""


def _centre_square(img: Image.Image, side: int) -> Image.Image:
    """The centre side x side px, the offset rounded like torchvision's CenterCrop."""
    w, h = img.size
    left, top = int(round((w - side) / 2.0)), int(round((h - side) / 2.0))
    return img.crop((left, top, left + side, top + side))


def _load(path, crop: int, size: int, frame: int | None, resize: bool) -> tuple[np.ndarray, bool]:
    """(the image as load_image returns it, whether it had to be resized to the frame)."""
    with Image.open(path) as img:
        img = img.convert("RGB")
    resized = frame is not None and img.size != (frame, frame)
    if resized:
        if not resize:
            raise _CropError(f"image is {img.width}x{img.height}, expected {frame}x{frame} "
                             "(--resize resizes images of other sizes)")  # fmt: skip
        img = _centre_square(img, min(img.size)).resize((frame, frame), Image.Resampling.BILINEAR)
    w, h = img.size
    if crop > min(w, h):
        raise _CropError(f"crop {crop} is larger than the {w}x{h} image")
    img = _centre_square(img, crop)
    if size != crop:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8), resized


def load_image(path, crop: int = layout.FRAME, size: int | None = None, *, frame: int | None = None,
               resize: bool = False) -> np.ndarray:  # fmt: skip
    """One image -> uint8 (size, size, 3): RGB, centre crop of `crop` px, PIL bilinear resize to `size`.

    The same steps as the paper's eval transform (CenterCrop then Resize, PIL antialiasing when shrinking);
    the centre offset is rounded like torchvision's CenterCrop.

    Args:
        path: the image file.
        crop: centre crop, px of the image (of the frame, when `frame` is given).
        size: output side (default: `crop`, no resize).
        frame: the side the image must have (Kaggle's 424), or None to take any size as it is.
        resize: an image whose size is not frame x frame is first cut to its centre square and resized to
            the frame (PIL bilinear, antialiased) instead of being refused.
    """
    return _load(path, crop, crop if size is None else size, frame, resize)[0]


def _decode_into(out: np.ndarray, start: int, paths: Sequence[str], crop: int, size: int, frame: int | None,
                 resize: bool) -> tuple[list[tuple[int, str, str]], np.ndarray]:  # fmt: skip
    """Decode `paths` into out[start:]; returns ((index, path, reason) for each failure, which were resized)."""
    bad, resized = [], np.zeros(len(paths), bool)
    for i, p in enumerate(paths):
        try:
            out[start + i], resized[i] = _load(p, crop, size, frame, resize)
        except _CropError as err:
            bad.append((i, p, str(err)))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            bad.append((i, p, f"cannot be decoded ({type(err).__name__}: {err})"))
    return bad, resized


# ----------------------------------------------------------------------------------------------------------
# the cache


def _decode_chunk(task: tuple[str, int, list[str], int, int]) -> list[tuple[str, str]]:
    """Decode images into rows start.. of the memmap at `file`; returns (path, reason) for each failure."""
    file, start, paths, crop, size = task
    out = np.lib.format.open_memmap(file, mode="r+")
    bad, _ = _decode_into(out, start, paths, crop, size, None, False)
    out.flush()  # on disk before the parent records the chunk as done
    del out
    return [(p, why) for _, p, why in bad]


def _cache_key(paths: list[Path], crop: int, size: int) -> str:
    """Hash of the recipe and of every input's path, size and mtime: any change to the data rebuilds."""
    recipe = f"galaxylib image cache v{CACHE_VERSION} crop={crop} size={size} n={len(paths)}\n"
    h = hashlib.sha256(recipe.encode())
    missing = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            missing.append(p)
            continue
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    raise_problems([Problem(p, "image not found") for p in missing])
    return h.hexdigest()[:20]


def _open_complete(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The finished cache at `path` as a read-only memmap, or None when there is none of that shape."""
    if not path.exists():
        return None
    cached = np.lib.format.open_memmap(path, mode="r")
    return cached if cached.shape == shape and cached.dtype == np.uint8 else None


@contextlib.contextmanager
def exclusive(lock: Path, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock` (created, and removed on exit) while the block runs.

    A POSIX record lock: released by the kernel when this process dies, however it dies, and not inherited by
    pool workers. A waiter checks that the file it locked is still the one at `lock` (the holder removes it
    on exit), so two processes never both hold it. wait=False: raise BlockingIOError when another process
    holds it.
    """
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _merge(spans: list[list[int]]) -> list[list[int]]:
    """Sorted, non-overlapping [start, stop) spans, touching ones joined (keeps the record short)."""
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _missing(done: list[list[int]], n: int) -> list[tuple[int, int]]:
    """The [start, stop) spans of rows 0..n not covered by `done` (merged)."""
    gaps, at = [], 0
    for a, b in done:
        if a > at:
            gaps.append((at, a))
        at = max(at, b)
    return gaps + ([(at, n)] if at < n else [])


def _read_record(record: Path, partial: Path, shape: tuple[int, ...]) -> list[list[int]] | None:
    """The complete row spans of a partial build, or None when there is no usable one to continue."""
    try:
        meta = json.loads(record.read_text())
        arr = np.lib.format.open_memmap(partial, mode="r")
    except (OSError, ValueError):
        return None
    if tuple(meta.get("shape", ())) != shape or arr.shape != shape or arr.dtype != np.uint8:
        return None
    return _merge(meta.get("done", []))


def _write_record(record: Path, shape: tuple[int, ...], done: list[list[int]]) -> None:
    atomic_write_text(record, json.dumps({"shape": list(shape), "done": done}) + "\n")


def _build(paths: list[Path], shape: tuple[int, ...], crop: int, size: int, final: Path, workers: int | None,
           progress: bool) -> None:  # fmt: skip
    """Decode into `<final>.partial.npy`, recording finished chunks, then rename it to `final`."""
    partial = final.with_name(final.stem + ".partial.npy")
    record = final.with_name(final.stem + ".partial.json")
    n = shape[0]
    done = _read_record(record, partial, shape)
    if done is None:
        need, free = math.prod(shape) + 4096, shutil.disk_usage(final.parent).free
        if need > free:
            message = f"the image cache needs {need / 1e9:.1f} GB but {final.parent} has {free / 1e9:.1f} GB free"
            raise DataError(message + "; set GALAXYLIB_CACHE_DIR to a larger disk")
        record.unlink(missing_ok=True)
        del_me = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
        del del_me  # header written, file sized; workers fill it by index
        done = []
        _write_record(record, shape, done)
    todo = _missing(done, n)
    n_todo = sum(b - a for a, b in todo)
    workers = default_workers(n_todo, workers)
    spans = [piece for a, b in todo for piece in split_span(a, b, chunk_size(n_todo, workers))]
    tasks = [(str(partial), a, [str(p) for p in paths[a:b]], crop, size) for a, b in spans]
    failures: list[tuple[str, str]] = []
    desc = f"caching {size}px images" + (f" (resuming, {n - n_todo} done)" if n_todo < n else "")
    with tqdm(total=n, initial=n - n_todo, desc=desc, unit="img", disable=None if progress else True) as bar:
        for i, bad in iter_chunks(_decode_chunk, tasks, workers):
            if bad:
                failures += bad  # not recorded: a rerun decodes this chunk again
            else:
                done = _merge([*done, list(spans[i])])
                _write_record(record, shape, done)
            bar.update(spans[i][1] - spans[i][0])
    if failures:
        # a bad image means the inputs must change, and changed inputs get a new cache name anyway
        partial.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        raise_problems([Problem(Path(p), why) for p, why in failures])
    os.replace(partial, final)
    record.unlink(missing_ok=True)


def build_cache(paths: Sequence[Path], *, crop: int = layout.FRAME, size: int, cache_dir: Path | None = None,
                workers: int | None = None, progress: bool = True) -> np.ndarray:  # fmt: skip
    """Decode every image once -> read-only memmap (N, size, size, 3) uint8, rows aligned with `paths`.

    The file is named by a hash of the recipe and the inputs, so a second call reuses it and changed data
    gets a new one (old caches are left in place; delete the folder to reclaim space). An interrupted build
    (Ctrl-C, SIGKILL, a lost node) continues where it stopped when called again; a build that finds a
    corrupt image removes its partial file and raises a DataError naming every bad image. Several processes
    asking for the same cache at once wait for the one that builds it.
    """
    paths = [Path(p) for p in paths]
    if crop < 1 or size < 1:
        raise ValueError(f"crop and size must be positive, got crop={crop}, size={size}")
    shape = (len(paths), size, size, 3)
    if not paths:
        return np.zeros(shape, np.uint8)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"images-n{len(paths)}-crop{crop}-size{size}-{_cache_key(paths, crop, size)}.npy"
    cached = _open_complete(final, shape)
    if cached is not None:
        return cached
    with exclusive(final.with_suffix(".lock")):
        cached = _open_complete(final, shape)  # built by another process while this one waited
        if cached is None:
            _build(paths, shape, crop, size, final, workers, progress)
            cached = _open_complete(final, shape)
    return cached


# ----------------------------------------------------------------------------------------------------------
# streamed decoding (prediction)


def _decode_block(task: tuple[list[str], int, int, int | None, bool]) -> tuple[np.ndarray, np.ndarray, list]:
    paths, crop, size, frame, resize = task
    out = np.empty((len(paths), size, size, 3), np.uint8)
    bad, resized = _decode_into(out, 0, paths, crop, size, frame, resize)
    return out, resized, bad


def decode_stream(paths: Sequence[Path], *, crop: int, size: int, frame: int | None = None, resize: bool = False,
                  workers: int | None = None,
                  batch: int = DECODE_BLOCK) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """The images of `paths` decoded as `load_image` does, in order, `batch` images at a time.

    The pool (data/pool.py) decodes DECODE_BLOCK images per task, a few tasks ahead while the caller works on
    the current batch, so memory is bounded by the tasks in flight (2 per worker) and one batch, not by
    len(paths).

    Args:
        paths: the image files, in the order wanted.
        crop, size, frame, resize: as for `load_image`.
        workers: decoding processes (default: all cores for 512 images or more, else this process).
        batch: images per yielded batch (the last one may be shorter).

    Yields:
        (uint8 (b, size, size, 3) images, bool (b,) which of them were resized to the frame), b <= batch.

    Raises:
        DataError: naming every unusable image of the first DECODE_BLOCK images that hold one, after the
            whole batches before the first of them have been yielded.
    """
    paths = [str(p) for p in paths]
    workers = default_workers(len(paths), workers)
    tasks = ((paths[a:b], crop, size, frame, resize) for a, b in split_span(0, len(paths), DECODE_BLOCK))
    images: list[np.ndarray] = []
    flags: list[np.ndarray] = []
    held = 0
    for block, resized, bad in imap_ordered(_decode_block, tasks, workers):
        good = bad[0][0] if bad else len(block)  # the images before the first bad one are still usable
        images.append(block[:good])
        flags.append(resized[:good])
        held += good
        if held >= batch:
            whole, marks = np.concatenate(images), np.concatenate(flags)
            cut = held - held % batch
            for a in range(0, cut, batch):
                yield whole[a : a + batch], marks[a : a + batch]
            images, flags, held = [whole[cut:]], [marks[cut:]], held - cut
        raise_problems([Problem(Path(p), why) for _, p, why in bad])
    if held:
        yield np.concatenate(images), np.concatenate(flags)
