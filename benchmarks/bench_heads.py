"""What the anchor-free head costs in CPU latency (issue 29): static ONNX files of each recipe at its size, timed by
mnv3det's timing worker in fresh processes (ONNX Runtime fp32, batch 1, 1 and 2 threads), blocks taken in turn.

    python benchmarks/bench_heads.py                       # the issue's points
    python benchmarks/bench_heads.py --points mnv3-small-min-af@416,mnv3-small-min@448 --rounds 5

Latency depends on the graph and the input size, not on the weights, so each recipe is built with fresh weights
(nc = 3, BCCD's classes) instead of a trained checkpoint: no training run is needed to time a point. Run it on an
idle machine; it prints the load average before and after, and a markdown table of medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

POINTS = ("mnv3-small-min-af@384,mnv3-small-min-af@416,benchmarks/recipes/mnv3-small-min-af1.yaml@416,mnv3-small-min@416,"
          "mnv3-small-min@448,mnv3-small-min@512,yolov5n@256,yolov5n@320")


def export_point(recipe: str, imgsz: int, folder: Path, path: Path | None = None) -> Path:
    """A static float32 ONNX file of `recipe` (a name or a yaml path) at `imgsz` (BN fused, fresh weights), with the
    export metadata the runtimes read; written to `path` (default folder/NAME-SIZE.onnx)."""
    import torch

    from mnv3det.deploy.export.onnx import write_onnx
    from mnv3det.deploy.runtime.metadata import export_metadata
    from mnv3det.models import build_model

    torch.manual_seed(0)
    model = build_model(recipe, nc=3).eval().fuse()
    strides = [int(s) for s in model.stride]
    meta = export_metadata(list(model.names), strides, (imgsz, imgsz), 1, False, False, recipe,
                           objectness=not model.anchor_free)
    path = path or folder / f"{Path(recipe).stem}-{imgsz}.onnx"
    write_onnx(model, torch.zeros(1, 3, imgsz, imgsz), path, meta)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", default=POINTS, help="recipe@size,...")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    from mnv3det.deploy.runtime.timing import time_in_subprocess

    points = [(p.split("@")[0], int(p.split("@")[1])) for p in args.points.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        files = {p: export_point(*p, Path(tmp)) for p in points}
        before = os.getloadavg()[0]
        samples: dict[tuple[str, int, int], list[float]] = {}
        for _ in range(args.rounds):
            for (recipe, imgsz), path in files.items():
                for threads in (1, 2):
                    timed = time_in_subprocess("onnx", path, (imgsz, imgsz), threads, args.runs)
                    if "error" in timed:
                        raise SystemExit(f"{recipe}@{imgsz}: {timed['error']}")
                    samples.setdefault((recipe, imgsz, threads), []).append(float(timed["median_ms"]))
        after = os.getloadavg()[0]
    print(f"load average {before:.2f} before, {after:.2f} after; {args.rounds} rounds of {args.runs} runs")
    print("| recipe @ size | ORT fp32 ms, 1 thread | 2 threads |")
    print("|---|---:|---:|")
    for recipe, imgsz in points:
        t1, t2 = (statistics.median(samples[(recipe, imgsz, t)]) for t in (1, 2))
        print(f"| {recipe} @{imgsz} | {t1:.2f} | {t2:.2f} |")


if __name__ == "__main__":
    main()
