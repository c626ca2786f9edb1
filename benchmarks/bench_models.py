"""Model zoo benchmark: params, GFLOPs and CPU latency (PyTorch eager + ONNX Runtime) with ratios to yolov5n.

    python benchmarks/bench_models.py                       # mnv3-small, mnv3-large, yolov5n, yolov5s at 320 and 640
    python benchmarks/bench_models.py --head-widths 0.25,0.5  # also mnv3-small with other head width_multiple

Latency is the median of --runs batch-1 runs after warm-up, BN fused, --threads threads, timed in blocks taken in turn
across the models so that load from other jobs on the machine hits all of them alike. Results go to
benchmarks/results/bench_models.{json,md}. The goal for the default Small recipe: ONNX Runtime latency at
most 0.6 x yolov5n's at 640 and no slower than yolov5n at 320.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: on a machine shared with other jobs, busy-waiting OpenMP threads stall each
# other and turn a 30 ms eager forward into 300-900 ms (measured here); passive waiting keeps eager numbers sane.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from mnv3det.models.recipes import load_recipe  # noqa: E402
from mnv3det.deploy.profile import ModelProfile, profile_models  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "yolov5n"


def _variants(recipes: list[str], head_widths: list[float]) -> list[tuple[str, Any]]:
    """(label, recipe) pairs; head-width variants of mnv3-small are built from its dict."""
    out: list[tuple[str, Any]] = [(name, name) for name in recipes]
    for width in head_widths:
        data, _ = load_recipe("mnv3-small")
        data["width_multiple"] = width
        out.append((f"mnv3-small@w{width:g}", data))
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else round(a / b, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="mnv3-small,mnv3-large,yolov5n,yolov5s")
    parser.add_argument("--sizes", default="320,640")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--head-widths", default="", help="extra mnv3-small head width_multiple values, e.g. 0.25,0.5")
    parser.add_argument("--out", default=str(RESULTS / "bench_models"), help="output path without suffix")
    args = parser.parse_args()

    recipes = [r for r in args.recipes.split(",") if r]
    if BASELINE not in recipes:
        recipes.append(BASELINE)
    sizes = [int(s) for s in args.sizes.split(",")]
    widths = [float(w) for w in args.head_widths.split(",") if w]
    load_before = os.getloadavg()
    console = Console(width=150)
    started = time.time()
    results: dict[int, dict[str, ModelProfile]] = {}
    for size in sizes:
        variants = _variants(recipes, widths)
        console.log(f"{len(variants)} models @ {size}: costs, then latency timed in blocks taken in turn")
        profiles = profile_models([recipe for _, recipe in variants], imgsz=size, threads=args.threads, runs=args.runs)
        for (label, _), prof in zip(variants, profiles):
            prof.recipe = label
        results[size] = {label: prof for (label, _), prof in zip(variants, profiles)}

    rows = []
    for size, profs in results.items():
        base = profs[BASELINE]
        for label, p in profs.items():
            rows.append({
                "recipe": label, "imgsz": size, "params": p.params, "gflops": round(p.gflops, 3),
                "eager_ms": None if p.eager_ms is None else round(p.eager_ms, 2),
                "ort_ms": None if p.ort_ms is None else round(p.ort_ms, 2),
                "gflops_vs_yolov5n": _ratio(p.gflops, base.gflops),
                "eager_vs_yolov5n": _ratio(p.eager_ms, base.eager_ms),
                "ort_vs_yolov5n": _ratio(p.ort_ms, base.ort_ms),
                "ort_note": p.ort_note,
            })
    meta = {
        "note": "median latency; other jobs on the machine move absolute numbers (see the load average), so compare ratios",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "threads": args.threads, "runs": args.runs, "batch": 1, "seconds": round(time.time() - started, 1),
        "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
    }
    try:
        import onnxruntime

        meta["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        meta["onnxruntime"] = None

    table = Table(title=f"CPU, batch 1, {args.threads} threads, median of {args.runs} runs (loaded machine)")
    for col in ("recipe", "imgsz", "params", "GFLOPs", "eager ms", "ORT ms", "GFLOPs/v5n", "eager/v5n", "ORT/v5n"):
        table.add_column(col, justify="left" if col == "recipe" else "right")
    fmt = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
    for r in rows:
        table.add_row(r["recipe"], str(r["imgsz"]), f"{r['params']:,}", fmt(r["gflops"]), fmt(r["eager_ms"]),
                      fmt(r["ort_ms"]), fmt(r["gflops_vs_yolov5n"]), fmt(r["eager_vs_yolov5n"]), fmt(r["ort_vs_yolov5n"]))
    console.print(table)

    goal = {}
    small = {r["imgsz"]: r for r in rows if r["recipe"] == "mnv3-small"}
    if 640 in small and small[640]["ort_vs_yolov5n"] is not None:
        goal["ort_640_le_0.6x_yolov5n"] = small[640]["ort_vs_yolov5n"] <= 0.6
    if 320 in small and small[320]["ort_vs_yolov5n"] is not None:
        goal["ort_320_le_1.0x_yolov5n"] = small[320]["ort_vs_yolov5n"] <= 1.0
    console.print(f"goal for mnv3-small: {goal or 'not measured'}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "goal": goal, "results": rows}, indent=2) + "\n")
    lines = [
        "# bench_models results",
        "",
        f"{meta['note']}. Batch 1, {args.threads} threads, median of {args.runs} runs, BN fused; "
        f"torch {meta['torch']}, onnxruntime {meta['onnxruntime']}, load average before/after "
        f"{meta['loadavg_before'][0]}/{meta['loadavg_after'][0]} on {meta['cpu_count']} CPUs.",
        "",
        "| recipe | imgsz | params | GFLOPs | eager ms | ORT ms | GFLOPs / yolov5n | eager / yolov5n | ORT / yolov5n |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['imgsz']} | {r['params']:,} | {fmt(r['gflops'])} | {fmt(r['eager_ms'])} | "
                     f"{fmt(r['ort_ms'])} | {fmt(r['gflops_vs_yolov5n'])} | {fmt(r['eager_vs_yolov5n'])} | "
                     f"{fmt(r['ort_vs_yolov5n'])} |")
    lines += ["", f"Goal for mnv3-small: {goal or 'not measured'}", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    console.print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
