"""Which training preset for which dataset size: hyp.scratch against hyp.small-data (the measurement behind
`mnv3det.data.presets.suggest_preset`).

    python benchmarks/preset_threshold.py --hyp hyp.scratch --data bccd --imgsz 256 --epochs 20
    python benchmarks/preset_threshold.py --hyp hyp.small-data --data shapes:1600 --imgsz 128 --epochs 10
    python benchmarks/preset_threshold.py --hyp hyp.small-data --data shapes:64 --epochs 1   # smoke run

`--data bccd` is BCCD's train split (205 images) validated on its val split (87); `--data shapes:N` is a
shapes set made by the demo generator (N train images, 200 val images, 4 classes, other seeds than the
demo set), written once under $MNV3DET_CACHE/preset-shapes-N. mnv3-small from scratch, batch 16, one
thread (`--threads`). Prints one json line: per-epoch mAP50-95 (the fast COCO-matching evaluator on the
EMA weights), optimizer steps, wall time and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import yaml
from rich.console import Console

from mnv3det.data import load_data
from mnv3det.data.cache import cache_dir
from mnv3det.data.demo import DEMO_NAMES, make_demo_image, make_grain
from mnv3det.train.config import TrainConfig, apply_overrides, load_hyp
from mnv3det.train.trainer import fit

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MNV3DET_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


def shapes_set(n_train: int, n_val: int = 200, size: int = 256) -> Path:
    """A YOLO shapes set (demo generator, seeds 10/11) with n_train train images; reused when present."""
    import numpy as np

    root = cache_dir() / f"preset-shapes-{n_train}"
    if (root / "data.yaml").is_file():
        return root / "data.yaml"
    for split, count, seed in (("train", n_train, 10), ("val", n_val, 11)):
        rng = np.random.default_rng(seed)
        grain = make_grain(rng, size)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img, objects = make_demo_image(rng, size, grain)
            cv2.imwrite(str(root / "images" / split / f"{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            rows = [
                f"{c} {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} {(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}"
                for c, (x1, y1, x2, y2) in ((c, (max(0, a), max(0, b), min(size, d), min(size, e))) for c, (a, b, d, e) in objects)
            ]
            (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(rows) + "\n")
    data = {"path": str(root), "train": "images/train", "val": "images/val", "names": DEMO_NAMES}
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "data.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hyp", required=True, help="hyp.scratch or hyp.small-data")
    parser.add_argument("--data", default="bccd", help="bccd or shapes:N")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--project", default="runs/preset")
    args = parser.parse_args()

    data = str(SHARED / "bccd") if args.data == "bccd" else str(shapes_set(int(args.data.split(":")[1])))
    cfg = apply_overrides(TrainConfig(), load_hyp(args.hyp), f"--hyp {args.hyp}")
    cfg = apply_overrides(cfg, {
        "data": data, "epochs": args.epochs, "imgsz": args.imgsz, "batch": 16, "threads": args.threads,
        "workers": args.workers, "device": "cpu", "plots": False, "project": args.project,
        "name": f"{args.data.replace(':', '')}-{Path(args.hyp).name}",
    }, "benchmark options")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    result = fit(cfg, console=Console(stderr=True), show_progress=False)
    wall = time.perf_counter() - t0
    h = result.history
    n_train = len(load_data(data).records("train", report=False))
    accumulate = max(round(cfg.nbs / 16), 1)  # batches per optimizer step (batch 16)
    out = {
        "hyp": args.hyp, "data": args.data, "train_images": n_train, "imgsz": args.imgsz, "epochs": len(h),
        "optimizer_steps": -(-n_train // 16) * len(h) // accumulate,
        "mAP50-95_per_epoch": [round(float(e["metrics/mAP50-95"]), 4) for e in h],
        "mAP50_last": round(float(h[-1]["metrics/mAP50"]), 4), "mAP50-95_best": round(max(float(e["metrics/mAP50-95"]) for e in h), 4),
        "wall_s": round(wall, 1), "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
