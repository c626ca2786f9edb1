"""The end of a training run: the pycocotools result of best.pt on val, and the next three commands to try.

    best.pt on val (pycocotools, 40 images): mAP50-95 0.638, mAP50 0.912
    next:
      mnv3det val --weights runs/train/exp/weights/best.pt
      mnv3det detect 'my data/images/val/0001.jpg' --weights runs/train/exp/weights/best.pt
      mnv3det export --weights runs/train/exp/weights/best.pt --format onnx

Per-epoch validation uses the fast in-process mAP; this one run of COCOeval is the number `mnv3det val` gives
(the README quotes it). Paths are quoted with shlex.quote, so the commands paste into a shell as they are.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Callable, Sequence

import torch


def evaluate_best(weights: Path, records: Sequence[Any], spec: Any, imgsz: int, batch: int, workers: int,
                  device: torch.device, loader: Any = None, between_batches: Callable[[], object] | None = None) -> Any:
    """EvalResult of the checkpoint `weights` (BN fused) on `records` with pycocotools, at the training size.
    between_batches: the run's thread-governor poll (core/cpu_share.py), as per-epoch validation gets it."""
    from mnv3det.models.checkpoint import load_model
    from mnv3det.evaluate.config import EvalConfig
    from mnv3det.evaluate.evaluator import evaluate

    model, _ = load_model(weights, device=device, fuse=True)
    config = EvalConfig(imgsz=imgsz, batch=batch, coco=True, workers=workers)
    return evaluate(model, list(records), spec, config, device=device, progress=False, loader=loader,
                    between_batches=between_batches)


def result_line(weights: Path, result: Any, split: str) -> str:
    """'best.pt on val (pycocotools, 40 images): mAP50-95 0.638, mAP50 0.912'."""
    return (f"{weights.name} on {split} ({result.source}, {result.images} images): mAP50-95 {result.map:.3f}, "
            f"mAP50 {result.map50:.3f}")


def next_commands(weights: Path, data: str | None, image: Path | None) -> list[str]:
    """val, detect and export of `weights`, each a line a shell takes as it is (paths quoted)."""
    w = shlex.quote(str(weights))
    val = f"mnv3det val --weights {w}" + (f" --data {shlex.quote(str(data))}" if data else "")
    detect = f"mnv3det detect {shlex.quote(str(image)) if image else 'IMAGE_OR_FOLDER'} --weights {w}"
    return [val, detect, f"mnv3det export --weights {w} --format onnx"]
