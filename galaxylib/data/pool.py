"""The process pool that image checks, the cache build and streamed decoding share: chunks of images in worker
processes that end with their parent, a progress bar.

A worker watches its parent: when the parent is gone (killed with SIGKILL, say, so that it could not shut the
pool down) the worker exits within a fraction of a second instead of lingering as an orphan that keeps decoding
into a file a rerun is about to use.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from tqdm import tqdm

PARALLEL_MIN = 512  # below this many images a process pool costs more than it saves
CHUNK = 256  # images per pool task: small enough for a smooth progress bar, large enough to amortise IPC
PARENT_POLL_S = 0.2  # how often a worker checks that its parent is still alive


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(n: int, workers: int | None) -> int:
    """Processes for n images: serial for small inputs unless `workers` is given explicitly."""
    if workers is None:
        workers = 1 if n < PARALLEL_MIN else cpu_count()
    return max(1, min(int(workers), n)) if n else 1


def split_span(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) cut into consecutive (a, b) pieces of at most `size` rows."""
    return [(s, min(s + size, stop)) for s in range(start, stop, max(1, size))]


def plan_chunks(n: int, workers: int | None) -> tuple[int, list[tuple[int, int]]]:
    """(workers, [(start, stop), ...]): serial for small inputs unless workers is given explicitly."""
    workers = default_workers(n, workers)
    return workers, split_span(0, n, chunk_size(n, workers))


def chunk_size(n: int, workers: int) -> int:
    """Rows per task: at most CHUNK, and at least four tasks per worker so that the pool stays busy."""
    return max(1, min(CHUNK, -(-n // (workers * 4))))


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)  # the parent is gone: nobody will read our results, and a rerun may be using our files


def _init_worker(parent: int) -> None:
    if os.getppid() != parent:  # the parent died while this worker was starting
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers exit when this process ends, however it ends (SIGKILL included)."""
    return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(os.getpid(),))


def iter_chunks(fn: Callable, tasks: list, workers: int) -> Iterator[tuple[int, object]]:
    """(task index, fn(task)) for every task as it completes, in a process pool when workers > 1.

    Stopping the iteration early (an exception, a closed generator) cancels the tasks not yet started and
    waits for the running ones, so that no worker is left writing after this returns.
    """
    if workers == 1:
        for i, task in enumerate(tasks):
            yield i, fn(task)
        return
    pool = worker_pool(workers)
    try:
        pending = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield pending.pop(fut), fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def imap_ordered(fn: Callable, tasks: Iterable, workers: int, ahead: int | None = None) -> Iterator:
    """fn(task) for every task, in task order, with at most `ahead` tasks (default 2 per worker) in flight.

    Memory stays bounded by `ahead` results however many tasks there are: the pool works ahead while the
    caller consumes. workers == 1 runs in this process.
    """
    if workers == 1:
        yield from map(fn, tasks)
        return
    ahead = ahead or 2 * workers
    pool = worker_pool(workers)
    queue: collections.deque[Future] = collections.deque()
    try:
        for task in tasks:
            queue.append(pool.submit(fn, task))
            if len(queue) >= ahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_chunks(fn: Callable, tasks: list, sizes: list[int], workers: int, desc: str, progress: bool) -> list:
    """fn(task) for every task, in a process pool when workers > 1; results in task order."""
    results: list = [None] * len(tasks)
    with tqdm(total=sum(sizes), desc=desc, unit="img", disable=None if progress else True) as bar:
        for i, result in iter_chunks(fn, tasks, workers):
            results[i] = result
            bar.update(sizes[i])
    return results
