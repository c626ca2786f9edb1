"""Latency of one exported model, measured in a fresh process: `python -m mnv3det.deploy.runtime.timing FORMAT PATH`.

Why a process per (model, runtime): a runtime's worker threads keep spinning for a while after each call, and
within one process a second runtime's pool (OpenVINO's, ncnn's OpenMP, torch's) then competes with the one being
timed: mnv3det measured up to 1.6x inflated latencies that way. A fresh process holds one runtime only.

The worker times the runtime's own call on a random float32 input of the model's (static) shape, batch 1, after
`warmup` untimed calls, and prints one JSON line: {"format", "median_ms", "min_ms", "runs", "threads"}.
`time_in_subprocess` runs it and reads that line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from mnv3det.core.threads import openmp_defaults_for

def runner_for(fmt: str, path: Path, threads: int, imgsz: tuple[int, int]) -> tuple[Callable[[Any], Any], Any]:
    """(run, input) for the model at `path`: `run(input)` is one forward pass of its runtime alone (no pre- or
    post-processing but what the file holds: an --nms file's NMS is timed with it). The runtime is the one the
    format records (deploy/formats.py) give the file; `fmt` is a label."""
    import numpy as np

    from mnv3det.deploy.formats import format_for_path

    record = format_for_path(Path(path))
    if record is None:
        raise ValueError(f"no runtime opens {path}")
    run, fixed = record.runtime_module().runner(Path(path), threads)
    shape = (1, 3, *imgsz)
    fixed = tuple(d if isinstance(d, int) and d > 0 else s for d, s in zip(fixed, shape)) if fixed else shape
    return run, np.random.default_rng(0).random(fixed, dtype=np.float32)


def runtime_latency(path: Path, shape: tuple[int, ...], threads: int, runs: int) -> float:
    """Median ms of the runtime call of the model at `path` on a random float32 input of `shape` (its own shape when
    static), in this process (`export`'s figure; `time_in_subprocess` is the careful one)."""
    run, x = runner_for("", path, threads, tuple(shape[2:]))
    return latency_ms(run, x, runs)


def time_runner(run: Callable[[Any], Any], x: Any, runs: int, warmup: int = 2) -> list[float]:
    """Milliseconds of `runs` timed calls after `warmup` untimed ones (torch-free: the timing worker imports it)."""
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def latency_ms(run: Callable[[Any], Any], x: Any, runs: int, warmup: int = 2) -> float:
    """Median milliseconds of `run(x)` over `runs` timed calls after `warmup` untimed ones."""
    return statistics.median(time_runner(run, x, runs, warmup))


def onnx_latency_ms(path: str | Path, shape: tuple[int, int, int, int], threads: int = 2, runs: int = 20) -> float:
    """Median latency (ms) of one onnxruntime CPU run of `path` on a random input of `shape`."""
    import numpy as np

    from mnv3det.deploy.runtime.backends import ort_cpu_session

    session = ort_cpu_session(path, threads)
    inp = session.get_inputs()[0]
    dtype = np.float16 if "float16" in inp.type else np.float32
    x = np.random.default_rng(0).random(shape, dtype=np.float32).astype(dtype)
    return latency_ms(lambda a: session.run(None, {inp.name: a}), x, runs)


def time_in_subprocess(
    fmt: str, path: Path, imgsz: tuple[int, int], threads: int, runs: int, warmup: int = 5, timeout: float = 600
) -> dict[str, Any]:
    """Run the worker for one model in a fresh Python process; its JSON result, or {"error": ...}."""
    command = [sys.executable, "-m", "mnv3det.deploy.runtime.timing", fmt, str(path), "--imgsz", str(imgsz[0]), str(imgsz[1]),
               "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)]
    env = {**os.environ, **openmp_defaults_for(os.environ)}  # the OpenMP wait the `mnv3det` entry point would set
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"format": fmt, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {"format": fmt, "error": tail[0][:200]}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("format", help="the format's name (a label: the file picks its runtime)")
    parser.add_argument("path", type=Path)
    parser.add_argument("--imgsz", type=int, nargs=2, required=True, metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    run, x = runner_for(args.format, args.path, args.threads, tuple(args.imgsz))
    times = time_runner(run, x, args.runs, args.warmup)
    print(json.dumps({"format": args.format, "median_ms": statistics.median(times), "min_ms": min(times),
                      "runs": args.runs, "threads": args.threads}))


if __name__ == "__main__":  # the OpenMP wait settings come from the parent (time_in_subprocess sets them)
    main()
