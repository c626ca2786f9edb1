"""Peak memory of every export format (issue 21 §4: goal under 2 GB each), for the demo model on a ~500-image set.

    python benchmarks/bench_export_memory.py                        # every format at 512 and 640
    python benchmarks/bench_export_memory.py --formats onnx-int8 --sizes 512 --calib-images 20

1. A data set of --images images (default 500) is generated in a temporary folder (never in the repo): BCCD's and
   COCO128's images resized so their long side is 640, as a YOLO set with the demo set's four class names
   (BCCD's three classes and COCO's ids modulo 4; the numbers do not matter here, the sizes do). 90% train (the
   INT8 calibration split), 10% val (the INT8 mAP check).
2. The demo model: recipe mnv3-small with the demo set's classes, BN statistics taken from real images (one
   train-mode pass, so activations vary as a trained model's do; random weights otherwise), saved as best.pt.
3. Each (format, size) is exported as `mnv3det export --weights best.pt --format F --imgsz S --data SET` would,
   verification included, in a fresh process: its peak resident memory (`ru_maxrss` of that process, plus the
   largest child such as pnnx) is the figure. The machine's load average is recorded with it (memory figures do
   not depend on load; the wall time does).

Results: --out (default benchmarks/results/export-memory).json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATASETS = Path(os.environ.get("MNV3DET_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
FORMATS = ["onnx", "torchscript", "onnx-int8", "openvino", "openvino-int8", "ncnn"]
GOAL_MB = 2048
BCCD_CLASSES = {"RBC": 0, "WBC": 1, "Platelets": 2}


def _sources() -> list[tuple[Path, list[tuple[int, float, float, float, float]]]]:
    """(image, YOLO rows) for every BCCD and COCO128 image found."""
    out = []
    bccd = DATASETS / "bccd"
    for xml in sorted((bccd / "Annotations").glob("*.xml")):
        root = ET.parse(xml).getroot()
        w, h = float(root.findtext("size/width")), float(root.findtext("size/height"))
        rows = []
        for obj in root.iter("object"):
            box = obj.find("bndbox")
            x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            rows.append((BCCD_CLASSES.get(obj.findtext("name"), 0), (x1 + x2) / 2 / w, (y1 + y2) / 2 / h,
                         (x2 - x1) / w, (y2 - y1) / h))
        image = bccd / "JPEGImages" / f"{xml.stem}.jpg"
        if image.is_file():
            out.append((image, rows))
    coco = DATASETS / "coco128"
    for image in sorted((coco / "images").rglob("*.jpg")):
        label = coco / "labels" / image.parent.name / f"{image.stem}.txt"
        rows = []
        if label.is_file():
            for line in label.read_text().splitlines():
                c, *xywh = line.split()
                rows.append((int(c) % 4, *map(float, xywh)))
        out.append((image, rows))
    return out


def make_dataset(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` images (sources repeated, flipped, when there are fewer) as a YOLO set under `folder`; its yaml."""
    import cv2

    from mnv3det.data.demo import demo_data_yaml
    from mnv3det.core.yamlio import read_yaml

    names = read_yaml(demo_data_yaml(), "demo")["names"]
    sources = _sources()
    if not sources:
        raise SystemExit(f"no BCCD or COCO128 images under {DATASETS}; set MNV3DET_SHARED_DATASETS")
    random.Random(seed).shuffle(sources)
    n_val = max(count // 10, 1)
    for k in range(count):
        image_path, rows = sources[k % len(sources)]
        flip = (k // len(sources)) % 2 == 1  # a second pass over the sources: mirrored copies
        image = cv2.imread(str(image_path))
        scale = 640 / max(image.shape[:2])
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        if flip:
            image = image[:, ::-1]
            rows = [(c, 1 - x, y, w, h) for c, x, y, w, h in rows]
        split = "val" if k < n_val else "train"
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / "images" / split / f"{k:04d}.jpg"), image)
        (folder / "labels" / split / f"{k:04d}.txt").write_text(
            "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in rows))
    yaml = folder / "data.yaml"
    yaml.write_text(f"path: {folder}\ntrain: images/train\nval: images/val\nnames: {json.dumps(list(names))}\n")
    return yaml


def make_model(data_yaml: Path, path: Path) -> Path:
    """mnv3-small with the set's classes; BN statistics from 16 of its images (see the module docstring)."""
    import torch

    from mnv3det.core.checkpoint import save_checkpoint
    from mnv3det.data import create_dataloader, load_data
    from mnv3det.models import build_model

    spec = load_data(str(data_yaml))
    torch.manual_seed(0)
    model = build_model("mnv3-small", nc=spec.nc)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the pass
    loader = create_dataloader(spec.records("train", report=False)[:16], imgsz=320, batch_size=8, augment=False,
                               workers=0)
    model.train()
    with torch.no_grad():
        for images, *_ in loader:
            model(images.float() / 255)
    ckpt = {"recipe": model.recipe, "nc": spec.nc, "names": list(spec.names), "model": model.state_dict(),
            "epoch": -1}
    return save_checkpoint(ckpt, path)


def child(args: argparse.Namespace) -> None:
    """One export in this process; prints one JSON line with its peak memory."""
    t0 = time.perf_counter()
    from mnv3det.deploy.export.pipeline import export_checkpoint
    from mnv3det.deploy.formats import FORMATS

    weights = Path(args.weights)
    out = Path(args.workdir) / f"out_{args.child}_{args.size}"
    error = ""
    try:
        fmt = FORMATS[args.child]
        options = {"data": args.data, **({"calib_images": args.calib_images} if fmt.calibration else {})}
        export_checkpoint(weights, format=args.child, imgsz=args.size, runs=1, threads=args.threads,
                          dynamic=False if fmt.dynamic else None, output=out if fmt.folder else out.with_suffix(fmt.suffix),
                          **options)
    except Exception as err:  # reported in the table
        error = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB (Linux)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"format": args.child, "size": args.size, "peak_rss_mb": round(own, 1),
                      "child_peak_rss_mb": round(children, 1), "seconds": round(time.perf_counter() - t0, 1),
                      "error": error}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", nargs="+", default=FORMATS, choices=FORMATS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 640])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--calib-images", type=int, default=300, help="INT8 calibration images (export's default)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "export-memory")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from mnv3det.deploy.benchmark import available_formats

    have = set(available_formats())
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-export-memory-") as tmp:
        work = Path(tmp)
        print(f"generating {args.images} images under {work}", flush=True)
        data = make_dataset(work / "data", args.images)
        weights = make_model(data, work / "best.pt")
        for size in args.sizes:
            for fmt in args.formats:
                if fmt not in have:
                    print(f"{fmt}: not installed, skipped")
                    continue
                load = os.getloadavg()
                command = [sys.executable, __file__, "--child", fmt, "--size", str(size), "--weights", str(weights),
                           "--data", str(data), "--workdir", tmp, "--calib-images", str(args.calib_images),
                           "--threads", str(args.threads)]
                done = subprocess.run(command, capture_output=True, text=True)
                lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
                row = json.loads(lines[-1]) if lines else {
                    "format": fmt, "size": size, "peak_rss_mb": None, "child_peak_rss_mb": None, "seconds": None,
                    "error": f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1][:200]}"}
                row["load_avg_1_5_15"] = [round(v, 2) for v in load]
                rows.append(row)
                print(json.dumps(row), flush=True)
    write(rows, args)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    import psutil

    machine = {"cpu_count": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
               "platform": platform.platform(), "python": platform.python_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"images": args.images, "calib_images": args.calib_images, "threads": args.threads,
                "sizes": args.sizes, "model": "mnv3-small (demo classes, BN statistics from the set)"}
    args.out.with_suffix(".json").write_text(json.dumps({"machine": machine, "settings": settings, "rows": rows},
                                                        indent=2))
    lines = [f"Peak resident memory of one export (its own process; children such as pnnx apart), "
             f"{args.images}-image set, {args.calib_images} calibration images, {args.threads} threads. "
             f"Goal: under {GOAL_MB} MB.", "",
             "| format | imgsz | peak RSS MB | child peak MB | seconds | load avg (1, 5, 15 min) | note |",
             "|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        peak = r["peak_rss_mb"]
        note = r["error"] or ("over the goal" if peak and peak > GOAL_MB else "")
        lines.append(f"| {r['format']} | {r['size']} | {peak} | {r['child_peak_rss_mb']} | {r['seconds']} | "
                     f"{', '.join(map(str, r['load_avg_1_5_15']))} | {note} |")
    lines.append("")
    lines.append(f"Machine: {machine['cpu_count']} CPUs, {machine['memory_gb']} GB, {machine['platform']}.")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
