"""CPU speed on a shared machine: detect latency and training images/s, idle and beside one CPU-bound process.

    python benchmarks/bench_contention.py                  # full table (about 10 minutes on 2 cores)
    python benchmarks/bench_contention.py --quick          # a smoke run

Each measurement is a fresh `mnv3det` process (the OpenMP wait policy is read once per process), run with one of
these settings:
- `main before`: what mnv3det did before issue 10: torch imported before the entry point could set the OpenMP
  wait policy (libgomp's default spin-then-sleep), ONNX Runtime spinning (its default), threads = cores;
- `PASSIVE fixed`: the defaults before the thread governor: OMP_WAIT_POLICY=PASSIVE, threads = cores (1 for
  PyTorch on one image), ORT's own spinning;
- `default`: today's defaults (GOMP_SPINCOUNT=10000 set by the entry point; training and batched PyTorch
  validation follow the cores other processes leave free, mnv3det/core/cpu_share.py; 1 thread for PyTorch on one
  image, i.e. `detect` with a .pt; ONNX Runtime spins, and switches to a smaller non-spinning session while
  competitors hold cores);
- `--threads 1`: today's defaults with one thread everywhere (fixed: --threads turns the governor off);
- `spin 10k fixed`: GOMP_SPINCOUNT=10000 with threads = cores fixed (the default without the governor).
Conditions are `idle` and `busy` (one `while True: pass` process for the whole measurement). Settings and
conditions are taken in turn, round after round, so drift in the machine hits every cell alike.
Workloads: `detect .pt` and `detect .onnx` (inference ms per image over --detect-images images at --detect-imgsz,
default 64 at 320, after warm-up) and
`train` (images/s of a one-epoch run over --train-images demo images at 256, long enough for the governor's
one-second polls to matter as they do in a real epoch). Write the table into the README by hand.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COCO_IMAGES = Path(os.environ.get("MNV3DET_SHARED_DATASETS", ROOT.parent / "shared" / "datasets")) / "coco128/images/train2017"
# The old entry point: torch loads before mnv3det.cli could set the wait policy, so libgomp keeps its default.
OLD_ENTRY = "import torch, sys; from mnv3det.cli import main; sys.argv[0] = 'mnv3det'; main()"
NEW_ENTRY = "import sys; from mnv3det.cli import main; sys.argv[0] = 'mnv3det'; main()"

CORES = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
SETTINGS = {
    "main before": {"entry": OLD_ENTRY, "env": {"MNV3DET_ORT_SPIN": "1"}, "args": ["--threads", CORES]},
    "PASSIVE fixed": {"entry": NEW_ENTRY, "env": {"OMP_WAIT_POLICY": "PASSIVE", "MNV3DET_ADAPT_THREADS": "0"},
                       "args": []},
    "default": {"entry": NEW_ENTRY, "env": {}, "args": []},
    "--threads 1": {"entry": NEW_ENTRY, "env": {}, "args": ["--threads", "1"]},
    "spin 10k fixed": {"entry": NEW_ENTRY, "env": {"GOMP_SPINCOUNT": "10000", "MNV3DET_ADAPT_THREADS": "0"},
                        "args": []},
}
SPEED = re.compile(r"([\d.]+) ms inference")


def run_mnv3det(setting: dict, args: list[str], timeout: float = 900) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "MNV3DET_ADAPT_THREADS")}
    env.update({k: v for k, v in setting["env"].items() if v})  # "" = leave unset
    env["COLUMNS"] = "200"
    done = subprocess.run([sys.executable, "-c", setting["entry"], *args, *setting["args"]], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"mnv3det {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout + done.stderr


def detect_ms(setting: dict, weights: Path, images: Path, imgsz: int, work: Path) -> float:
    out = run_mnv3det(setting, ["detect", str(images), "--weights", str(weights), "--imgsz", str(imgsz), "--nosave",
                                "--project", str(work), "--name", "detect"])
    return float(SPEED.findall(out)[-1])


def train_images_per_s(setting: dict, work: Path, max_images: int, imgsz: int) -> float:
    run = tempfile.mkdtemp(dir=work)
    run_mnv3det(setting, ["train", "--epochs", "1", "--max-images", str(max_images), "--imgsz", str(imgsz),
                          "--batch", "16", "--workers", "1", "--no-plots", "--project", run, "--name", "t"])
    with open(Path(run) / "t" / "results.csv") as f:
        return float(list(csv.DictReader(f))[-1]["images_per_s"])


class Competitor:
    """One CPU-bound process for the duration of a `with` block (None = idle)."""

    def __init__(self, busy: bool):
        self.busy, self.proc = busy, None

    def __enter__(self):
        if self.busy:
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def prepare(work: Path, quick: bool, detect_images: int) -> tuple[Path, Path, Path]:
    """A checkpoint (one short training run), its dynamic ONNX export and a folder of `detect_images` images."""
    base = SETTINGS["default"]
    run_mnv3det(base, ["train", "--epochs", "1", "--max-images", "32", "--imgsz", "256", "--batch", "16",
                       "--workers", "0", "--no-plots", "--project", str(work), "--name", "prep"])
    weights = work / "prep" / "weights" / "last.pt"
    run_mnv3det(base, ["export", "--weights", str(weights), "--dynamic", "--runs", "1"])
    images = work / "images"
    images.mkdir()
    if COCO_IMAGES.is_dir():
        source = sorted(COCO_IMAGES.glob("*.jpg"))
    else:
        from mnv3det.data import demo_data_yaml

        source = sorted((demo_data_yaml().parent / "images" / "val").glob("*.jpg"))
    for path in source[: 4 if quick else detect_images]:
        (images / path.name).symlink_to(path)
    return weights, weights.with_suffix(".onnx"), images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="one round, 4 images, a 16-image training run")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of: " + ", ".join(SETTINGS))
    ap.add_argument("--detect-imgsz", type=int, default=320)
    ap.add_argument("--train-images", type=int, default=320, help="images in the timed training epoch")
    ap.add_argument("--detect-images", type=int, default=64, help="COCO128 images per detect run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/contention.json")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    settings = [s.strip() for s in args.settings.split(",")]
    load_before = os.getloadavg()
    cells: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        weights, onnx, images = prepare(work, args.quick, args.detect_images)
        for r in range(rounds):
            for busy in (False, True):
                for name in settings:
                    with Competitor(busy):
                        cond = "busy" if busy else "idle"
                        for label, value in (
                            ("detect .pt ms", lambda: detect_ms(SETTINGS[name], weights, images, args.detect_imgsz, work)),
                            ("detect .onnx ms", lambda: detect_ms(SETTINGS[name], onnx, images, args.detect_imgsz, work)),
                            ("train img/s", lambda: train_images_per_s(SETTINGS[name], work, 32 if args.quick else args.train_images, 256)),
                        ):
                            v = value()
                            cells.setdefault((name, label, cond), []).append(v)
                            print(f"round {r + 1} {cond:4s} {name:12s} {label:16s} {v:8.2f}", flush=True)
    load_after = os.getloadavg()
    print_table(cells, settings, load_before, load_after)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"load_before": load_before, "load_after": load_after, "rounds": rounds,
                                    "cells": [{"setting": s, "workload": w, "condition": c, "values": v}
                                              for (s, w, c), v in cells.items()]}, indent=1))


def print_table(cells: dict, settings: list[str], load_before, load_after) -> None:
    """Median per cell; 'kept' = busy throughput / idle throughput of the same setting."""
    workloads = ["detect .pt ms", "detect .onnx ms", "train img/s"]
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print("| setting | workload | idle | busy | kept under contention |")
    print("|---|---|---:|---:|---:|")
    for name in settings:
        for w in workloads:
            idle = statistics.median(cells[(name, w, "idle")])
            busy = statistics.median(cells[(name, w, "busy")])
            kept = idle / busy if w.endswith("ms") else busy / idle
            print(f"| {name} | {w} | {idle:.2f} | {busy:.2f} | {kept:.0%} |")


if __name__ == "__main__":
    main()
