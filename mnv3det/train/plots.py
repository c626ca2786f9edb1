"""Plots of a training run: curves from results.csv, the label distribution, augmented training batches.

Figures are drawn on matplotlib's object API with the Agg canvas (no pyplot state, no backend
switch on import), so plotting works headless and inside worker processes.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import Tensor


def _figure(rows: int, cols: int, size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, tight_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes.ravel()


def results_series(csv_path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """results.csv -> {column: (epochs numbered from 1 as in the log, values)} for the plotted columns."""
    with Path(csv_path).open() as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in (rows[0].keys() if rows else []) if k != "epoch"]
    panels = [k for k in keys if k.startswith(("train/", "val/", "metrics/", "lr/"))] or keys
    epochs = np.array([int(float(r["epoch"])) for r in rows])  # from 1, as the log
    series = {key: (epochs, np.array([float(r[key]) if r.get(key) not in (None, "", "nan") else np.nan for r in rows]))
              for key in panels}
    # a column the head never fills (obj for the anchor-free head, dfl for YOLOv5's) gets no panel
    return {key: value for key, value in series.items() if np.isfinite(value[1]).any() or not rows}


def plot_results(csv_path: str | Path, out: str | Path | None = None) -> Path:
    """results.csv -> results.png: one panel per numeric column (losses, metrics, lr); each loss panel holds the
    train curve and, beside it, the validation one (`val/box_loss` on `box_loss`), so a widening gap shows."""
    csv_path = Path(csv_path)
    out = Path(out) if out is not None else csv_path.with_name("results.png")
    series = results_series(csv_path)
    val_of = {k: "val/" + k.split("/", 1)[1] for k in series if k.startswith("train/")}
    paired = {k: v for k, v in val_of.items() if v in series}  # train/box_loss -> val/box_loss
    panels = [k for k in series if k not in paired.values()]
    cols = 4
    fig, axes = _figure(max(1, (len(panels) + cols - 1) // cols), cols, (14, 3.2 * max(1, (len(panels) + cols - 1) // cols)))
    for ax, key in zip(axes, panels):
        epochs, values = series[key]
        if key in paired:  # a loss: train and val in one panel
            ax.plot(epochs, values, marker=".", linewidth=1.5, label="train")
            val_epochs, val_values = series[paired[key]]
            keep = ~np.isnan(val_values)  # epochs without validation (--val-interval) have no val loss
            ax.plot(val_epochs[keep], val_values[keep], marker=".", linewidth=1.5, label="val")
            ax.legend(fontsize=8)
            ax.set_title(key.split("/", 1)[1] + " (train, val)", fontsize=10)
        else:
            ax.plot(epochs, values, marker=".", linewidth=1.5)
            ax.set_title(key, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.savefig(out, dpi=100)
    return out


def plot_labels(
    classes: Sequence[np.ndarray], boxes_wh: Sequence[np.ndarray], names: Sequence[str], out: str | Path
) -> Path:
    """Label distribution: instances per class and box width/height (fractions of the image)."""
    out = Path(out)
    cls = np.concatenate([np.asarray(c).reshape(-1) for c in classes]) if classes else np.zeros(0)
    wh = np.concatenate([np.asarray(w).reshape(-1, 2) for w in boxes_wh]) if boxes_wh else np.zeros((0, 2))
    fig, (ax_cls, ax_wh) = _figure(1, 2, (11, 4))
    counts = np.bincount(cls.astype(np.int64), minlength=len(names)) if len(cls) else np.zeros(len(names), int)
    ax_cls.bar(range(len(names)), counts, color="tab:blue")
    ax_cls.set_xticks(range(len(names)), [str(n) for n in names], rotation=90 if len(names) > 8 else 0, fontsize=8)
    ax_cls.set_ylabel("instances")
    ax_cls.set_title(f"{int(counts.sum())} boxes in {len(names)} classes")
    if len(wh):
        ax_wh.hist2d(wh[:, 0], wh[:, 1], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
    ax_wh.set_xlabel("width / image width")
    ax_wh.set_ylabel("height / image height")
    ax_wh.set_title("box sizes")
    fig.savefig(out, dpi=100)
    return out


def plot_label_records(records: Sequence[Any], names: Sequence[str], out: str | Path) -> Path:
    """`plot_labels` for ImageRecords (crowd boxes left out, as in training)."""
    classes, wh = [], []
    for r in records:
        keep = ~np.asarray(r.crowd, bool)
        classes.append(np.asarray(r.classes)[keep])
        boxes = np.asarray(r.boxes, np.float32)[keep].reshape(-1, 4)
        wh.append((boxes[:, 2:] - boxes[:, :2]) / np.array([r.width, r.height], np.float32))
    return plot_labels(classes, wh, names, out)


def plot_train_batch(images: Tensor, targets: Tensor, names: Sequence[str], out: str | Path) -> Path:
    """train_batch*.jpg: a training batch as the model sees it (after augmentation), with its boxes.

    images: uint8 (B, 3, H, W) RGB; targets: (M, 6) = [img_idx, cls, cx, cy, w, h] normalised by W/H.
    """
    from mnv3det.evaluate.plots import plot_image_mosaic

    imgs = images.numpy()
    h, w = imgs.shape[2:]
    t = targets.numpy().astype(np.float64)
    xyxy = np.concatenate([t[:, 2:4] - t[:, 4:6] / 2, t[:, 2:4] + t[:, 4:6] / 2], 1) * np.array([w, h, w, h])
    boxes = [np.concatenate([xyxy[t[:, 0] == i], t[t[:, 0] == i, 1:2]], 1) for i in range(len(imgs))]
    return plot_image_mosaic(imgs, boxes, names, out)
