"""Atomic file writes: a reader (or a rerun after a crash) sees the old file or the new one, never half of one.

Each write goes to a temporary file next to the target, is flushed to the disk, and is renamed over it; a write
that fails (disk full, interrupted) removes its temporary file and leaves the old file in place. A full disk is
reported as one line naming the file and the space left (`DiskFull`), whatever library was writing (torch
reports it as a RuntimeError, numpy and pandas as an OSError). `check_writable` says before any compute
whether a file can be written at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from galaxylib.errors import UserError

TMP_SUFFIX = ".tmp"
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# torch's C++ writer loses the errno ("basic_ios::clear", "file write failed"): a failed write with less than
# this much space left is taken to be a full disk
_NEARLY_FULL = 1 << 20


class DiskFull(UserError):
    """A write failed because the disk (or the quota) is full."""


def temp_path(path: str | Path) -> Path:
    """The temporary name `atomic_path` writes `path` under: hidden, next to it, tagged with this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def free_bytes(folder: str | Path) -> int | None:
    """Bytes this user may still write in `folder` (None when it cannot be told)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size(n: int | None) -> str:
    if n is None:
        return "unknown space"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _is_disk_full(err: BaseException, folder: Path) -> bool:
    if isinstance(err, OSError):
        return err.errno in _FULL_ERRNOS
    if isinstance(err, RuntimeError):  # torch's writer: no errno, so look at the space left
        free = free_bytes(folder)
        return free is not None and free < _NEARLY_FULL
    return False


def disk_full_error(path: Path) -> DiskFull:
    """The one-line error for a write of `path` that ran out of space."""
    free = free_bytes(path.parent)
    return DiskFull(f"{path}: the disk is full ({_size(free)} free in {path.parent}); nothing was written "
                    "and the previous file, if any, is kept: free some space and run the same command again")


def _fsync(path: Path) -> None:
    """Flush a written file to the disk, so that a power cut after the rename cannot leave zeros behind it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, before_replace: Callable[[], object] | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on any failure it is removed.

    Args:
        path: the file to write.
        before_replace: called once the new file is complete and on the disk, just before it replaces `path`
            (e.g. to move the old file aside).

    Yields:
        The temporary path to write to (same folder, so the final rename is atomic).

    Raises:
        DiskFull: the disk filled up while writing (one line; the temporary file is gone, the old file kept).
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        _fsync(tmp)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException as err:
        full = not isinstance(err, UserError) and _is_disk_full(err, path.parent)
        tmp.unlink(missing_ok=True)
        if full:
            raise disk_full_error(path) from err
        if isinstance(err, OSError) and err.filename in (str(tmp), str(path)):
            raise UserError(f"{path}: cannot be written ({err.strerror})") from err
        raise


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` and move `tmp` over `path` when it returns (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def ensure_parent(path: str | Path) -> Path:
    """Create the folder `path` will be written in; a UserError naming the path when that is impossible."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{path}: cannot create its folder {path.parent} ({err.strerror})") from err
    return path


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers left in `folder` (call only while no one else writes
    there, e.g. under the run folder's lock). Returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def check_writable(path: str | Path, what: str = "output file") -> Path:
    """Refuse, before any compute, a file path that cannot be written: a folder, a path under a file, a
    read-only folder, a read-only file.

    Args:
        path: the file that will be written (it may not exist yet; missing folders will be created).
        what: how the message names it ("--out", "output file").

    Returns:
        The path.

    Raises:
        UserError: one line naming the path and why.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: {what} is a folder; give a file name, e.g. {path / 'submission.csv'}")
    if path.name in ("", ".", ".."):
        raise UserError(f"{path}: {what} must be a file name")
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor.is_symlink():
            raise UserError(f"{path}: {what} lies under a broken link {ancestor}")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{path}: {what} lies under {ancestor}, which is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{path}: {what} cannot be written: {ancestor} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        # the rename would still replace it, but a read-only file says "keep me"
        raise UserError(f"{path}: {what} exists and is read-only; remove it or choose another name")
    return path


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


def as_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """One path (str or Path) or several -> a list of Paths (a lone string is one path, not its characters)."""
    return [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
