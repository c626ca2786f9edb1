"""ONNX Runtime's thread spinning, idle and beside one CPU-bound process: mnv3-small, static ONNX, batch 1.

    python benchmarks/bench_ort_spin.py --imgsz 320 --runs 300 --rounds 3

`detect`'s per-image figures in bench_contention.py are too short to separate ORT settings (3-5 ms over 16 images),
so this times `session.run` alone: each (spin, condition) cell is a fresh process (one live ORT pool at a time),
cells taken in turn over --rounds, median of --runs calls after 20 warm-up calls; the table shows round medians'
median. Decided `mnv3det.core.threads.ORT_ALLOW_SPINNING`; the third row is mnv3det's default today, the
OnnxBackend that switches to a smaller non-spinning session while competitors hold cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = """
import statistics, sys, time, numpy as np, onnxruntime as ort
path, imgsz, spin, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if spin == "adaptive":  # mnv3det's default: the backend picks its session per call (mnv3det/core/cpu_share.py)
    import torch
    from mnv3det.deploy.runtime.backends import OnnxBackend
    backend = OnnxBackend(path, torch.device("cpu"))
    session = backend.active_session
else:
    o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", spin)
    s = ort.InferenceSession(path, sess_options=o, providers=["CPUExecutionProvider"])
    session = lambda: s
name = session().get_inputs()[0].name
x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
for _ in range(20): session().run(None, {name: x})
t = []
for _ in range(runs):
    t0 = time.perf_counter(); session().run(None, {name: x}); t.append((time.perf_counter() - t0) * 1e3)
print(statistics.median(t))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from mnv3det.deploy.export.pipeline import export_model
    from mnv3det.models import build_model

    cells: dict[tuple[str, str], list[float]] = {}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(build_model("mnv3-small", nc=80).eval(), Path(tmp) / "m.onnx", imgsz=args.imgsz,
                            dynamic=False, runs=1).path
        for _ in range(args.rounds):
            for busy in (False, True):
                competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
                time.sleep(0.5 if busy else 0)
                try:
                    for spin in ("1", "0", "adaptive"):
                        out = subprocess.run([sys.executable, "-c", WORKER, str(path), str(args.imgsz), spin, str(args.runs)],
                                             capture_output=True, text=True, check=True, cwd=ROOT,
                                             env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
                        cells.setdefault((spin, "busy" if busy else "idle"), []).append(float(out.strip()))
                finally:
                    if competitor:
                        competitor.kill()
                        competitor.wait()
    print(f"load average before {load:.2f}, after {os.getloadavg()[0]:.2f}; mnv3-small {args.imgsz}, 2 threads, ms")
    print("| ORT spinning | idle | busy | kept |\n|---|---:|---:|---:|")
    for spin, label in (("1", "on (ORT default)"), ("0", "off"), ("adaptive", "mnv3det default (switches)")):
        idle, busy = (statistics.median(cells[(spin, c)]) for c in ("idle", "busy"))
        print(f"| {label} | {idle:.2f} | {busy:.2f} | {idle / busy:.0%} |")


if __name__ == "__main__":
    main()
