"""The process pool that image checks and the cache build share: chunks of images, a progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from tqdm.auto import tqdm

PARALLEL_MIN = 512  # below this many images a process pool costs more than it saves
CHUNK = 256  # images per pool task: small enough for a smooth progress bar, large enough to amortise IPC


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_chunks(n: int, workers: int | None) -> tuple[int, list[tuple[int, int]]]:
    """(workers, [(start, stop), ...]): serial for small inputs unless workers is given explicitly."""
    if workers is None:
        workers = 1 if n < PARALLEL_MIN else cpu_count()
    workers = max(1, min(int(workers), n)) if n else 1
    size = max(1, min(CHUNK, -(-n // (workers * 4))))
    return workers, [(s, min(s + size, n)) for s in range(0, n, size)]


def run_chunks(fn: Callable, tasks: list, sizes: list[int], workers: int, desc: str, progress: bool) -> list:
    """fn(task) for every task, in a process pool when workers > 1; results in task order."""
    results: list = [None] * len(tasks)
    with tqdm(total=sum(sizes), desc=desc, unit="img", disable=None if progress else True) as bar:
        if workers == 1:
            for i, task in enumerate(tasks):
                results[i] = fn(task)
                bar.update(sizes[i])
            return results
        pool = ProcessPoolExecutor(max_workers=workers)
        try:
            futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update(sizes[futures[fut]])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return results
