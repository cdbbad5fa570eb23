"""The decode-once image cache: every JPEG decoded, centre-cropped and resized once into a uint8 .npy memmap.

The file is named by a hash of the recipe and of every input's path, size and mtime, so changed data gets a new
cache; it is written to a temporary name and renamed when complete, so an interrupted build is never mistaken
for a cache.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from galaxylib import layout
from galaxylib.data.pool import plan_chunks, run_chunks
from galaxylib.data.problems import Problem, raise_problems
from galaxylib.errors import DataError

CACHE_VERSION = 1  # bump when the cache's pixel recipe changes, so old caches are not reused


def default_cache_dir() -> Path:
    """$GALAXYLIB_CACHE_DIR, else ~/.cache/galaxylib."""
    env = os.environ.get("GALAXYLIB_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "galaxylib"


class _CropError(ValueError):
    """The requested crop does not fit the image (a settings problem, not a corrupt file)."""


def load_image(path, crop: int = layout.FRAME, size: int | None = None) -> np.ndarray:
    """One image -> uint8 (size, size, 3): RGB, centre crop of `crop` px, PIL bilinear resize to `size`.

    The same steps as the paper's eval transform (CenterCrop then Resize, PIL antialiasing when shrinking);
    the centre offset is rounded like torchvision's CenterCrop.
    """
    size = crop if size is None else size
    with Image.open(path) as img:
        img = img.convert("RGB")
    w, h = img.size
    if crop > min(w, h):
        raise _CropError(f"crop {crop} is larger than the {w}x{h} image")
    left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    if size != crop:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _decode_chunk(task: tuple[str, int, list[str], int, int]) -> list[tuple[str, str]]:
    """Decode images into rows start.. of the memmap at `file`; returns (path, reason) for each failure."""
    file, start, paths, crop, size = task
    out = np.lib.format.open_memmap(file, mode="r+")
    bad = []
    for i, p in enumerate(paths):
        try:
            out[start + i] = load_image(p, crop, size)
        except _CropError as err:
            bad.append((p, str(err)))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            bad.append((p, f"cannot be decoded ({type(err).__name__}: {err})"))
    out.flush()
    del out
    return bad


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


def build_cache(paths: Sequence[Path], *, crop: int = layout.FRAME, size: int, cache_dir: Path | None = None,
                workers: int | None = None, progress: bool = True) -> np.ndarray:  # fmt: skip
    """Decode every image once -> read-only memmap (N, size, size, 3) uint8, rows aligned with `paths`.

    The file is named by a hash of the recipe and the inputs, so a second call reuses it and changed data
    gets a new one (old caches are left in place; delete the folder to reclaim space). It is written to a
    temporary name and renamed when complete, so an interrupted build is never mistaken for a cache.
    Several processes building the same cache at once each write their own and the last rename wins.
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
    if final.exists():
        cached = np.lib.format.open_memmap(final, mode="r")
        if cached.shape == shape and cached.dtype == np.uint8:
            return cached
    need, free = math.prod(shape) + 4096, shutil.disk_usage(cache_dir).free
    if need > free:
        message = f"the image cache needs {need / 1e9:.1f} GB but {cache_dir} has {free / 1e9:.1f} GB free"
        raise DataError(message + "; set GALAXYLIB_CACHE_DIR to a larger disk")
    fd, tmp = tempfile.mkstemp(prefix=final.stem + ".", suffix=".partial.npy", dir=cache_dir)
    os.close(fd)
    try:
        del_me = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        del del_me  # header written, file sized; workers fill it by index
        workers, spans = plan_chunks(len(paths), workers)
        tasks = [(tmp, a, [str(p) for p in paths[a:b]], crop, size) for a, b in spans]
        results = run_chunks(_decode_chunk, tasks, [b - a for a, b in spans], workers,
                              f"caching {size}px images", progress)  # fmt: skip
        raise_problems([Problem(Path(p), why) for bad in results for p, why in bad])
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return np.lib.format.open_memmap(final, mode="r")

