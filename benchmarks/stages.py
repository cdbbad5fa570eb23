"""Measuring one stage of work in a fresh process: its peak resident memory, its wall time, what it reports.

A benchmark runs each stage as `python <script> --stage NAME ...` in its own subprocess, so that one stage's
memory never counts towards another's. The stage prints one JSON line (`report`) with its own peak resident
memory (VmHWM from /proc/self/status, else ru_maxrss) and that of its largest child process (pool workers,
after they have been joined); the benchmark reads it back with `run_stage`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

MARK = "STAGE-RESULT "


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, GB (1e9 bytes)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def children_peak_rss_gb() -> float:
    """The peak resident memory of the largest child process this process has waited for, GB."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale / 1e9


def report(**fields) -> None:
    """Print the stage's result line (with its memory figures) for `run_stage` to read."""
    fields.update(peak_rss_gb=round(peak_rss_gb(), 3), workers_peak_rss_gb=round(children_peak_rss_gb(), 3))
    print(MARK + json.dumps(fields), flush=True)


def run_stage(cmd: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Run one stage command in a fresh process; its report, plus wall seconds, or an `error` entry."""
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                             timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    lines = [line for line in res.stdout.splitlines() if line.startswith(MARK)]
    if res.returncode != 0 or not lines:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {res.returncode}: {' | '.join(tail)}", "wall_s": wall}
    out = json.loads(lines[-1][len(MARK) :])
    out["wall_s"] = round(wall, 2)
    return out


def dispatch(parser: argparse.ArgumentParser, argv, stages: dict, whole) -> int:
    """Parse the arguments; run one stage in this process (`--stage NAME`, what run_stage starts) or `whole(args)`."""
    parser.add_argument("--stage", choices=sorted(stages), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        stages[args.stage](args)
        return 0
    return whole(args)
