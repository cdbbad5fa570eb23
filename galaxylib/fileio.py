"""Atomic file writes: a reader (or a rerun after a crash) sees the old file or the new one, never half of one.

Each write goes to a temporary file next to the target and is renamed over it; a write that fails (disk full,
interrupted) removes its temporary file and leaves the old file in place.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on any failure it is removed.

    Args:
        path: the file to write.

    Yields:
        The temporary path to write to (same folder, so the final rename is atomic).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` and move `tmp` over `path` when it returns (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_torch_save(obj, path: str | Path) -> Path:
    """torch.save `obj` to `path` atomically."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def replace_checked(tmp: str | Path, path: str | Path, check: Callable[[Path], object]) -> Path:
    """Move the finished file `tmp` over `path` once `check(tmp)` returns; a good `path` is never replaced by a
    bad file.

    For files written piece by piece (a resumable prediction) rather than in one call. When the check raises,
    `tmp` is removed, `path` is left as it was and the error propagates; an interruption (KeyboardInterrupt)
    leaves both in place.
    """
    tmp, path = Path(tmp), Path(path)
    try:
        check(tmp)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path
