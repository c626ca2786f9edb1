"""Plots of a training run: loss and metric curves from results.csv, and the label distribution.

Figures are drawn on matplotlib's object API with the Agg canvas (no pyplot state, no backend
switch on import), so plotting works headless and inside worker processes.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np


def _figure(rows: int, cols: int, size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, tight_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes.ravel()


def plot_results(csv_path: str | Path, out: str | Path | None = None) -> Path:
    """results.csv -> results.png: one panel per numeric column (train losses, metrics, lr)."""
    csv_path = Path(csv_path)
    out = Path(out) if out is not None else csv_path.with_name("results.png")
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in (rows[0].keys() if rows else []) if k != "epoch"]
    panels = [k for k in keys if k.startswith(("train/", "metrics/", "lr/"))] or keys
    cols = 4
    fig, axes = _figure(max(1, (len(panels) + cols - 1) // cols), cols, (14, 3.2 * max(1, (len(panels) + cols - 1) // cols)))
    epochs = [int(float(r["epoch"])) for r in rows]
    for ax, key in zip(axes, panels):
        values = np.array([float(r[key]) if r.get(key) not in (None, "", "nan") else np.nan for r in rows])
        ax.plot(epochs, values, marker=".", linewidth=1.5)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("epoch")
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
