"""Evaluation, step 3 of 3 (infer -> score -> write): the COCO results json and the plots.

Plots: PR curve, F1/P/R-confidence curves, the normalised confusion matrix, and for the first batches a
ground-truth and a prediction mosaic (`val_batch{k}_labels.jpg` / `_pred.jpg`, in letterboxed pixels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mnv3det.evaluate.infer import Inference
from mnv3det.evaluate.plots import Writer
from mnv3det.evaluate.metrics import CURVE_POINTS, ConfusionMatrix, FastMetrics
from mnv3det.evaluate.score import Scores

MOSAIC_BATCHES = 3  # validation batches drawn as ground-truth / prediction mosaics
MOSAIC_MIN_SCORE = 0.25  # drawing 300 low-score boxes per image hides the image


def write_json(rows: list[dict[str, Any]], path: str | Path, *, write: Writer | None = None) -> Path:
    """The COCO results json (image_id, category_id, bbox xywh, score), the boxes that were scored."""
    from mnv3det.core.outputs import write_output

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return (write or write_output)(path, json.dumps(rows).encode("utf-8"))


def write_plots(inference: Inference, scores: Scores, names: Sequence[str], folder: str | Path, *,
                write: Writer | None = None) -> list[str]:
    """Every plot into `folder` through `write` (see `evaluate.plots`); returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, (images, targets, dets) in enumerate(inference.batches):
        files += _plot_batch(images, targets, dets, list(names), folder, index, write)
    return files + _plot_metrics(scores.fast, scores.confusion, list(names), folder, write)


def _plot_batch(images: torch.Tensor, targets: torch.Tensor, dets: list[torch.Tensor], names: list[str],
                folder: Path, index: int, write: Writer | None) -> list[str]:
    """Mosaics of one batch in letterboxed pixels: ground truth (from the loader's targets) and predictions."""
    from mnv3det.evaluate.plots import plot_image_mosaic

    imgs = images.cpu().numpy()
    h, w = imgs.shape[2:]
    t = targets.cpu().numpy().astype(np.float64)  # (M, 6) img_idx, cls, cx, cy, w, h normalised
    gt = []
    for i in range(len(imgs)):
        rows = t[t[:, 0] == i]
        cx, cy, bw, bh = rows[:, 2] * w, rows[:, 3] * h, rows[:, 4] * w, rows[:, 5] * h
        gt.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, rows[:, 1]], 1))
    preds = [d[d[:, 4] > MOSAIC_MIN_SCORE].cpu().numpy() for d in dets]
    return [
        str(plot_image_mosaic(imgs, gt, names, folder / f"val_batch{index}_labels.jpg", write=write)),
        str(plot_image_mosaic(imgs, preds, names, folder / f"val_batch{index}_pred.jpg", write=write)),
    ]


def _plot_metrics(fast: FastMetrics, confusion: ConfusionMatrix, names: list[str], folder: Path,
                  write: Writer | None) -> list[str]:
    """PR curves, F1/P/R-confidence curves and the normalised confusion matrix."""
    from mnv3det.evaluate.plots import plot_confusion_matrix, plot_metric_curve, plot_pr_curves

    ap50 = np.where(fast.present, fast.ap50, np.nan)
    return [
        str(plot_pr_curves(CURVE_POINTS, fast.pr_curve, ap50, names, folder / "PR_curve.png", write=write)),
        str(plot_metric_curve(CURVE_POINTS, fast.f1_curve, names, folder / "F1_curve.png", "F1", fast.present, write=write)),
        str(plot_metric_curve(CURVE_POINTS, fast.p_curve, names, folder / "P_curve.png", "Precision", fast.present,
                               write=write)),
        str(plot_metric_curve(CURVE_POINTS, fast.r_curve, names, folder / "R_curve.png", "Recall", fast.present, write=write)),
        str(plot_confusion_matrix(confusion.normalized(), names, folder / "confusion_matrix.png", write=write)),
    ]
