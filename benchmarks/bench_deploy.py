"""Deployment benchmark: exported-ONNX CPU latency per recipe, and end-to-end `detect` images/s on a folder.

    python benchmarks/bench_deploy.py                          # all recipes, 320 and 640, 20 runs each
    python benchmarks/bench_deploy.py --recipes mnv3-small yolov5n --runs 10 --detect-images 32

1. Each recipe (random weights, nc=80: latency does not depend on the weights) is exported with `export_model`
   (BN fused, verified against PyTorch) at batch 1 and each size; the file runs in onnxruntime on CPU with
   2 intra-op threads; the median of --runs timed runs (after 2 warm-up runs) is reported, with the ratio to yolov5n.
   These are the same export path and ORT settings as `mnv3det profile`'s ORT column (onnx_latency_ms).
2. `run_detect` over --detect-images COCO128 images at 640 (decode + letterbox + inference + NMS + draw + write),
   with the .pt (PyTorch) and the exported .onnx (ORT) model; images/s = images / wall time of the whole run.

Results go to benchmarks/results/deploy.json and deploy.md. Timings depend on the machine and on its load:
record the load average printed at the top when you compare numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_RECIPES = ["mnv3-small", "mnv3-large", "mnv2", "yolov5n", "yolov5s"]
COCO128 = Path(os.environ.get("MNV3DET_SHARED_DATASETS", REPO.parent / "shared" / "datasets")) / "coco128"


def ort_latencies(recipes: list[str], sizes: list[int], runs: int, workdir: Path, console: Console) -> list[dict]:
    from mnv3det.deploy.export.pipeline import export_model
    from mnv3det.deploy.runtime.timing import onnx_latency_ms
    from mnv3det.models import build_model

    rows = []
    for recipe in recipes:
        torch.manual_seed(0)
        model = build_model(recipe, nc=80)
        params = sum(p.numel() for p in model.parameters())
        row = {"recipe": recipe, "params_M": params / 1e6}
        for size in sizes:
            result = export_model(model, workdir / f"{recipe}-{size}.onnx", imgsz=size, dynamic=False, runs=1)
            row[f"verified_{size}"] = result.passed
            row[f"max_abs_diff_{size}"] = result.max_abs_diff
            row["size_MB"] = result.size_mb
            row[f"ort_ms_{size}"] = onnx_latency_ms(result.path, (1, 3, size, size), threads=2, runs=runs)
            console.print(f"{recipe} @{size}: {row[f'ort_ms_{size}']:.1f} ms (max |diff| vs torch {result.max_abs_diff:.1e})")
        rows.append(row)
    base = next((r for r in rows if r["recipe"] == "yolov5n"), None)
    for row in rows:
        for size in sizes:
            row[f"vs_yolov5n_{size}"] = row[f"ort_ms_{size}"] / base[f"ort_ms_{size}"] if base else None
    return rows


def detect_throughput(n_images: int, imgsz: int, workdir: Path, console: Console) -> list[dict]:
    from mnv3det.core.checkpoint import save_checkpoint
    from mnv3det.deploy.config import DetectConfig
    from mnv3det.deploy.detect_runner import run_detect
    from mnv3det.deploy.export.pipeline import export_model
    from mnv3det.models import build_model

    images = sorted((COCO128 / "images" / "train2017").glob("*.jpg"))[:n_images]
    if not images:
        console.print(f"[yellow]COCO128 not found at {COCO128}; skipping the detect benchmark")
        return []
    source = workdir / "images.txt"
    source.write_text("\n".join(str(p) for p in images) + "\n")
    torch.manual_seed(0)
    model = build_model("mnv3-small", nc=80)
    weights = save_checkpoint(
        {"recipe": model.recipe, "nc": 80, "names": [str(i) for i in range(80)], "model": model.state_dict(), "epoch": -1},
        workdir / "mnv3-small.pt",
    )
    onnx_path = export_model(model, workdir / "mnv3-small-dyn.onnx", imgsz=imgsz, dynamic=True, runs=1).path
    rows = []
    quiet = Console(file=open(os.devnull, "w"))
    for label, w in (("PyTorch .pt", weights), ("ONNX Runtime .onnx", onnx_path)):
        opts = DetectConfig(source=str(source), weights=w, imgsz=imgsz, device="cpu", project=workdir / "runs", name=label[:4])
        t0 = time.perf_counter()
        report = run_detect(opts, quiet)
        wall = time.perf_counter() - t0
        rows.append(
            {
                "model": f"mnv3-small {label}",
                "images": report.images,
                "imgsz": imgsz,
                "images_per_s": report.images / wall,
                **{f"{k}_ms": v for k, v in report.speed_ms.items()},
            }
        )
        console.print(f"detect {label}: {report.images / wall:.1f} images/s")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=DEFAULT_RECIPES)
    parser.add_argument("--sizes", nargs="+", type=int, default=[320, 640])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--detect-images", type=int, default=32)
    parser.add_argument("--detect-imgsz", type=int, default=640)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads for the PyTorch detect run (1: on a loaded 2-core machine, 2 OpenMP threads "
        "spin-waiting on each other made mnv3-small at 640 ~15x slower than 1 thread)",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the per-recipe ORT latency table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()
    load = tuple(round(x, 2) for x in os.getloadavg()) if hasattr(os, "getloadavg") else None
    console.print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load}")

    with tempfile.TemporaryDirectory() as tmp:
        latency = [] if args.no_latency else ort_latencies(args.recipes, args.sizes, args.runs, Path(tmp), console)
        detect = detect_throughput(args.detect_images, args.detect_imgsz, Path(tmp), console) if args.detect_images else []

    if latency:
        table = Table(title="ONNX Runtime CPU latency, batch 1, 2 threads (median)", title_justify="left")
        for col in ["recipe", "params (M)", *[f"ORT ms @{s}" for s in args.sizes], *[f"x yolov5n @{s}" for s in args.sizes]]:
            table.add_column(col, justify="right")
        for r in latency:
            ratios = [f"{r[f'vs_yolov5n_{s}']:.2f}" if r[f"vs_yolov5n_{s}"] else "-" for s in args.sizes]
            table.add_row(r["recipe"], f"{r['params_M']:.2f}", *[f"{r[f'ort_ms_{s}']:.1f}" for s in args.sizes], *ratios)
        console.print(table)
    if detect:
        t2 = Table(
            title=f"end-to-end detect (decode + letterbox + infer + NMS + draw + write), torch {args.threads} thread(s), "
            "ORT default threads",
            title_justify="left",
        )
        for col in ["model", "images", "imgsz", "images/s", "pre ms", "infer ms", "NMS ms"]:
            t2.add_column(col, justify="right")
        for r in detect:
            t2.add_row(
                r["model"], str(r["images"]), str(r["imgsz"]), f"{r['images_per_s']:.1f}",
                f"{r['preprocess_ms']:.1f}", f"{r['inference_ms']:.1f}", f"{r['nms_ms']:.1f}",
            )
        console.print(t2)

    meta = {
        "cpus": os.cpu_count(), "load_average": load, "torch": torch.__version__, "torch_threads": args.threads,
        "command": " ".join(sys.argv),
    }
    write_results(meta, latency, detect, args.sizes)
    console.print(f"written {RESULTS / 'deploy.json'} and {RESULTS / 'deploy.md'}")


def write_results(meta: dict, latency: list[dict], detect: list[dict], sizes: list[int]) -> None:
    """Update benchmarks/results/deploy.json (each section keeps the meta of the run that produced it) and deploy.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "deploy.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    if latency:
        results["ort_latency"] = {"meta": {**meta, "sizes": sizes}, "rows": latency}
    if detect:
        results["detect"] = {"meta": meta, "rows": detect}
    path.write_text(json.dumps(results, indent=1))

    lines = ["# Deployment benchmark", "", "2-core CPU machine; other jobs move absolute numbers (see the load average), so compare ratios.", ""]
    if "ort_latency" in results:
        m, rows = results["ort_latency"]["meta"], results["ort_latency"]["rows"]
        sz = m["sizes"]
        lines += [f"ONNX Runtime CPU, batch 1, 2 threads, median. `{m['command']}`, load average {m['load_average']}", ""]
        lines.append("| recipe | params (M) | " + " | ".join(f"ORT ms @{s}" for s in sz) + " | "
                     + " | ".join(f"x yolov5n @{s}" for s in sz) + " |")
        lines.append("|---" * (2 + 2 * len(sz)) + "|")
        for r in rows:
            ratios = [f"{r[f'vs_yolov5n_{s}']:.2f}" if r[f"vs_yolov5n_{s}"] else "-" for s in sz]
            lines.append(f"| {r['recipe']} | {r['params_M']:.2f} | " + " | ".join(f"{r[f'ort_ms_{s}']:.1f}" for s in sz)
                         + " | " + " | ".join(ratios) + " |")
        lines.append("")
    if "detect" in results:
        m, rows = results["detect"]["meta"], results["detect"]["rows"]
        lines += [f"End-to-end detect on COCO128 images. `{m['command']}`, torch threads {m['torch_threads']}, "
                  f"load average {m['load_average']}", ""]
        lines += ["| model | images | imgsz | images/s | pre ms | infer ms | NMS ms |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['model']} | {r['images']} | {r['imgsz']} | {r['images_per_s']:.1f} | "
                         f"{r['preprocess_ms']:.1f} | {r['inference_ms']:.1f} | {r['nms_ms']:.1f} |")
    (RESULTS / "deploy.md").write_text("\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
