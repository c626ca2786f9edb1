"""Edge latency table of issue 13: mnv3-small(-min) and yolov5n at 320 and 640 in ORT, OpenVINO (fp32, INT8), ncnn.

    python benchmarks/bench_edge.py                                  # the full table (run it on an idle machine)
    python benchmarks/bench_edge.py --runs 3 --rounds 1 --sizes 320  # a quick check that everything runs

1. Each model is built untrained with nc=3 (BCCD's classes; latency does not depend on the weights) and exported
   with mnv3det's own exporters at batch 1, static square input: ONNX fp32 (`export_model`), ONNX INT8, OpenVINO
   fp32, OpenVINO INT8 and ncnn (the same `export_model`, not verified: untrained). INT8 calibrates on --calib-images
   images of BCCD's train split (the demo set when BCCD is absent).
2. Timing: every (model, size, runtime) runs in its own fresh process (`mnv3det.deploy.runtime.timing`), which times the
   runtime's forward call alone on a random input: --threads threads, 5 warm-up calls, --runs timed calls, median.
   --rounds rounds go over all pairs in turn; the table shows the median of the round medians. ncnn runs on
   --ncnn-threads threads (default 1, its default in mnv3det: with 2 under a passive OpenMP wait policy, its threads
   slept between its ~400 parallel regions per forward; see deploy/runtime/ncnn.py).
3. Ratios, for every model other than yolov5n: its fastest runtime over yolov5n's fastest, per size (the issue's
   goal: <= 0.5), and its fastest over yolov5n in ORT fp32 at each size (goal <= 0.35 at 640). The first is also
   given as the median of per-round ratios, steadier when the machine's speed drifts between rounds.

Results: --out (default benchmarks/results/edge).json and .md, with the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RUNTIMES = {  # column -> timing format
    "ORT fp32": "onnx",
    "ORT INT8": "onnx-int8",
    "OpenVINO fp32": "openvino",
    "OpenVINO INT8": "openvino-int8",
    "ncnn": "ncnn",
}
BASELINE = "yolov5n"  # every other model is compared with it
BCCD = Path(os.environ.get("MNV3DET_SHARED_DATASETS", REPO.parent / "shared" / "datasets")) / "bccd"


def export(recipe: str, size: int, fmt: str, folder: Path, calib_data: str | None, calib_images: int) -> Path:
    """Write the untrained `recipe` at `size` as `fmt` under `folder`; returns the file or folder."""
    import torch

    from mnv3det.deploy.config import ExportConfig
    from mnv3det.deploy.export.pipeline import export_model
    from mnv3det.deploy.formats import FORMATS
    from mnv3det.models import build_model

    torch.manual_seed(0)
    model = build_model(recipe, nc=3).eval()
    record = FORMATS[fmt]
    config = ExportConfig(format=fmt, imgsz=size, dynamic=False if record.dynamic else None, data=calib_data,
                          calib_images=calib_images, int8_max_drop=0, runs=0, verify=fmt == "onnx")
    return export_model(model, record.output_for(folder / f"{recipe}_{size}.pt"), config).path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mnv3-small", "mnv3-small-min", BASELINE])
    parser.add_argument("--sizes", nargs="+", type=int, default=[320, 640])
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES), metavar="RUNTIME")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ncnn-threads", type=int, default=1, help="threads for ncnn (its default in mnv3det)")
    parser.add_argument("--runs", type=int, default=50, help="timed calls per process")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all pairs, taken in turn")
    parser.add_argument("--calib-images", type=int, default=32)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "edge")
    args = parser.parse_args()

    from mnv3det.deploy.benchmark import available_formats
    from mnv3det.deploy.runtime.timing import time_in_subprocess

    have = set(available_formats())
    runtimes = [r for r in args.runtimes if RUNTIMES[r] in have]
    skipped = sorted(set(args.runtimes) - set(runtimes))
    calib = str(BCCD) if BCCD.is_dir() else None
    print(f"load average {os.getloadavg()}; calibration data: {calib or 'the demo set'}; not installed: {skipped}")
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        jobs = []  # (model, size, runtime, path)
        for recipe in args.models:
            for size in args.sizes:
                for runtime in runtimes:
                    print(f"exporting {recipe}@{size} for {runtime}", flush=True)
                    path = export(recipe, size, RUNTIMES[runtime], Path(tmp), calib, args.calib_images)
                    jobs.append((recipe, size, runtime, path))
        rounds: dict[tuple, list[float]] = {job[:3]: [] for job in jobs}
        for r in range(args.rounds):
            for recipe, size, runtime, path in jobs:
                threads = args.ncnn_threads if runtime == "ncnn" else args.threads
                out = time_in_subprocess(RUNTIMES[runtime], path, (size, size), threads, args.runs)
                if "error" in out:
                    print(f"  {recipe}@{size} {runtime}: {out['error']}")
                    continue
                rounds[(recipe, size, runtime)].append(out["median_ms"])
                print(f"round {r + 1}: {recipe}@{size} {runtime}: {out['median_ms']:.2f} ms", flush=True)
    table = {key: statistics.median(v) for key, v in rounds.items() if v}
    write(table, rounds, args, runtimes)


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def paired_ratio(rounds: dict, mine: tuple, theirs: tuple) -> float | None:
    """Median over rounds of (mine / theirs) timed in the same round: on a VM whose speed drifts between rounds, a
    ratio of two processes run seconds apart varies less than the ratio of the two overall medians."""
    a, b = rounds.get(mine, []), rounds.get(theirs, [])
    return statistics.median(x / y for x, y in zip(a, b)) if a and len(a) == len(b) else None


def write(table: dict, rounds: dict, args: argparse.Namespace, runtimes: list[str]) -> None:
    """The markdown table (rows model @ size, a column per runtime), the ratios, and the JSON."""
    lines = ["| model @ size | " + " | ".join(runtimes) + " |", "|---|" + "---:|" * len(runtimes)]
    for recipe in args.models:
        for size in args.sizes:
            cells = [f"{table[(recipe, size, r)]:.2f}" if (recipe, size, r) in table else "-" for r in runtimes]
            lines.append(f"| {recipe} @{size} | " + " | ".join(cells) + " |")
    ratios = {}
    for size in args.sizes:
        fastest = {m: min(((v, r) for (mm, s, r), v in table.items() if mm == m and s == size), default=None)
                   for m in args.models}
        yolo, ort = fastest.get(BASELINE), table.get((BASELINE, size, "ORT fp32"))
        for model, best in fastest.items():
            if model == BASELINE or best is None:
                continue
            if yolo:
                paired = paired_ratio(rounds, (model, size, best[1]), (BASELINE, size, yolo[1]))
                ratios[f"{model} fastest / {BASELINE} fastest @{size}"] = (
                    f"{best[0] / yolo[0]:.2f} ({best[1]} vs {yolo[1]}; median of per-round ratios "
                    f"{'-' if paired is None else format(paired, '.2f')})")
            if ort:
                ratios[f"{model} fastest / {BASELINE} ORT fp32 @{size}"] = f"{best[0] / ort:.2f}"
    header = (f"{cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()}; "
              f"batch 1, {args.threads} threads (ncnn {args.ncnn_threads}), median of {args.rounds} rounds "
              f"x {args.runs} runs, each (model, runtime) in its own process (ms)")
    text = "\n".join([header, "", *lines, "", *(f"- {k}: {v}" for k, v in ratios.items())]) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    rows = [{"model": m, "size": s, "runtime": r, "ms": v} for (m, s, r), v in table.items()]
    args.out.with_suffix(".json").write_text(json.dumps({"header": header, "rows": rows, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
