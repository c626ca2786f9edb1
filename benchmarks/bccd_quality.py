"""Quality on real data: train a recipe on BCCD from scratch, then score best.pt with pycocotools.

    python benchmarks/bccd_quality.py --recipe mnv3-small --hyp hyp.small-data --json bccd_mnv3s.json
    python benchmarks/bccd_quality.py --recipe yolov5n --json bccd_v5n.json
    python benchmarks/bccd_quality.py --epochs 1 --max-images 16     # smoke run (proves the script works)

Protocol (issue 4): BCCD (../shared/datasets/bccd, VOC) train split (205 images), validated on its val
split (87 images) every epoch, 30 epochs at 416, batch 16, CPU. best.pt (EMA weights, best fitness)
is then evaluated by pycocotools (COCOeval, no NMS time limit). The json holds AP50-95, AP50, per-class
AP, the training wall time (including per-epoch validation) and the final evaluation time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from rich.console import Console

from mnv3det.train.config import TrainConfig, apply_overrides, load_hyp
from mnv3det.data import load_data
from mnv3det.models.checkpoint import load_model
from mnv3det.evaluate.config import EvalConfig
from mnv3det.evaluate.evaluator import evaluate
from mnv3det.train.trainer import fit

REPO = Path(__file__).resolve().parents[1]
BCCD = Path(os.environ.get("MNV3DET_SHARED_DATASETS", REPO.parent / "shared" / "datasets")) / "bccd"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="mnv3-small")
    parser.add_argument("--hyp", default=None, help="hyp preset or yaml (e.g. hyp.small-data)")
    parser.add_argument("--data", default=str(BCCD))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-images", type=int, default=None, help="cap train and val images (smoke runs only)")
    parser.add_argument("--project", default="runs/bccd")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results (default: run_dir/bccd_quality.json)")
    args = parser.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"BCCD not found at {args.data}; pass --data or set MNV3DET_SHARED_DATASETS")

    console = Console(stderr=True)
    cfg = TrainConfig()
    if args.hyp:
        cfg = apply_overrides(cfg, load_hyp(args.hyp), f"--hyp {args.hyp}")
    cfg = apply_overrides(cfg, {
        "recipe": args.recipe, "data": args.data, "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
        "workers": args.workers, "threads": args.threads, "device": args.device, "max_images": args.max_images,
        "project": args.project, "name": f"{Path(args.recipe).stem}{'-' + Path(args.hyp).stem if args.hyp else ''}",
    }, "benchmark options")

    t0 = time.perf_counter()
    result = fit(cfg, console=console)
    train_s = time.perf_counter() - t0
    weights = result.best or result.last

    spec = load_data(cfg.data)
    val = spec.records(cfg.val_split)
    val = val[: args.max_images] if args.max_images else val
    model, _ = load_model(weights, device=cfg.device or "cpu")
    t1 = time.perf_counter()
    ev = evaluate(model, val, spec, EvalConfig(imgsz=cfg.imgsz, batch=cfg.batch, workers=cfg.workers),
                  device=cfg.device or "cpu", save_json=result.run_dir / "val_predictions.json")
    eval_s = time.perf_counter() - t1
    history = result.history
    out = {
        "recipe": cfg.recipe, "hyp": args.hyp, "epochs": cfg.epochs, "epochs_done": result.epochs_done,
        "imgsz": cfg.imgsz, "batch": cfg.batch, "train_images": len(spec.records(cfg.train_split)[: args.max_images or None]),
        "val_images": len(val), "val_boxes": int(ev.instances), "weights": str(weights), "evaluator": ev.source,
        "AP50-95": ev.map, "AP50": ev.map50, "per_class_AP50-95": {c.name: c.ap for c in ev.per_class},
        "per_class_AP50": {c.name: c.ap50 for c in ev.per_class},
        "best_epoch_fitness": result.best_fitness,
        "train_wall_s": round(train_s, 1), "eval_wall_s": round(eval_s, 1),
        "mean_train_images_per_s": round(sum(h["images_per_s"] for h in history) / max(len(history), 1), 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "note": "CPU timings depend on machine load",
        "run_dir": str(result.run_dir),
    }
    path = args.json or result.run_dir / "bccd_quality.json"
    path.write_text(json.dumps(out, indent=2))
    Console().print_json(json.dumps(out))
    console.print(f"written {path}")


if __name__ == "__main__":
    main()
