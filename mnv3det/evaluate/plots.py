"""Evaluation plots: PR curves, metric-confidence curves, confusion matrix, image mosaics.

matplotlib is imported inside each function with the Agg backend selected there, so importing
this module changes nothing for a user who has their own backend (no action on import).
Every function writes one file and returns its path, through `write` (default `core.outputs.write_output`: whole
or absent, a full or read-only disk one line naming the folder; `mnv3det val` passes its run's `RunFiles.write`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

Writer = Callable[[Path, bytes], Path]  # (path, encoded file) -> path


def _writer(write: Writer | None) -> Writer:
    from mnv3det.core.outputs import write_output

    return write or write_output


def _save_figure(fig, path: str | Path, write: Writer | None, dpi: int = 150) -> Path:
    """The figure encoded in memory (format from the suffix), then written by `write`; the figure is closed."""
    plt = _pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    finally:
        plt.close(fig)
    return _writer(write)(Path(path), buffer.getvalue())


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (set here, never on import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _class_labels(names: Sequence[str], values: np.ndarray | None, fmt: str) -> list[str]:
    if values is None:
        return [str(n) for n in names]
    return [f"{n} {fmt.format(v)}" for n, v in zip(names, values)]


def plot_pr_curves(
    recall: np.ndarray, precision: np.ndarray, ap50: np.ndarray, names: Sequence[str], path: str | Path,
    *, write: Writer | None = None,
) -> Path:
    """Precision vs recall at IoU 0.5: one thin line per class, the class mean in bold.

    recall: (P,) axis; precision: (nc, P); ap50: (nc,) for the legend (NaN = class without ground truth).
    """
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(9, 6), tight_layout=True)
    present = ~np.isnan(ap50)
    show_legend = present.sum() <= 20  # a legend with 80 entries hides the plot
    for c in np.flatnonzero(present):
        ax.plot(recall, precision[c], linewidth=1, label=f"{names[c]} {ap50[c]:.3f}" if show_legend else None)
    if present.any():
        ax.plot(recall, precision[present].mean(0), linewidth=3, color="blue",
                label=f"all classes {np.nanmean(ap50):.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01), title="Precision-Recall curve")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    return _save_figure(fig, path, write)


def plot_metric_curve(
    conf: np.ndarray, values: np.ndarray, names: Sequence[str], path: str | Path, ylabel: str = "F1",
    present: np.ndarray | None = None, *, write: Writer | None = None,
) -> Path:
    """A metric (F1, precision or recall) against confidence: one line per class, the mean in bold.

    conf: (P,) axis; values: (nc, P); present: bool (nc,), the classes with ground truth. A present class the
    model never finds (AP 0) is drawn at zero and counts in the mean; classes without ground truth are skipped.
    None: the rows that are not all zero (a class with AP 0 then goes missing).
    """
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(9, 6), tight_layout=True)
    present = values.any(1) if present is None else np.asarray(present, bool)
    show_legend = present.sum() <= 20
    for c in np.flatnonzero(present):
        ax.plot(conf, values[c], linewidth=1, label=str(names[c]) if show_legend else None)
    if present.any():
        mean = values[present].mean(0)
        best = int(mean.argmax())
        ax.plot(conf, mean, linewidth=3, color="blue", label=f"all classes {mean[best]:.2f} at {conf[best]:.3f}")
    ax.set(xlabel="Confidence", ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.01), title=f"{ylabel}-Confidence curve")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    return _save_figure(fig, path, write)


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: str | Path, *,
                          write: Writer | None = None) -> Path:
    """Column-normalised confusion matrix (nc+1, nc+1) = [predicted, true], last row/column background."""
    plt = _pyplot()
    path = Path(path)
    labels = [str(n) for n in names] + ["background"]
    n = len(labels)
    size = min(4 + 0.35 * n, 24)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), tight_layout=True)
    shown = np.where(matrix < 0.005, np.nan, matrix)  # blank cells instead of a sea of zeros
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046)
    if n <= 30:  # tick labels and cell numbers stay readable up to ~30 classes
        ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        for i in range(n):
            for j in range(n):
                if not np.isnan(shown[i, j]):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if matrix[i, j] > 0.5 else "black")
    ax.set(xlabel="True", ylabel="Predicted", title="Confusion matrix (normalised per true class)")
    return _save_figure(fig, path, write)


MIN_TILE = 480  # tiles are drawn at least this long, so labels and boxes stay readable on small inputs
TILES_BY_SIZE = ((320, 4), (480, 9))  # (longest side up to, most tiles): small inputs get fewer, larger tiles


def mosaic_layout(count: int, h: int, w: int, max_images: int = 16, max_size: int = 1920) -> tuple[int, int, int, float]:
    """(images shown, columns, rows, scale) of a mosaic of `count` images of h x w.

    At most `max_images`, fewer for small inputs (TILES_BY_SIZE: 4 at 256 px, 9 at 416, 16 at 640); each tile scaled
    up to MIN_TILE when smaller, and down so the mosaic fits `max_size`."""
    long = max(h, w)
    most = next((n for limit, n in TILES_BY_SIZE if long <= limit), max_images)
    shown = max(1, min(count, max_images, most))
    cols = int(np.ceil(np.sqrt(shown)))
    rows = int(np.ceil(shown / cols))
    scale = max(1.0, MIN_TILE / long)
    scale = min(scale, max_size / max(cols * w, rows * h))
    return shown, cols, rows, scale


def plot_image_mosaic(
    images: np.ndarray,
    boxes: Sequence[np.ndarray],
    names: Sequence[str],
    path: str | Path,
    max_images: int = 16,
    max_size: int = 1920,
    *,
    write: Writer | None = None,
) -> Path:
    """A grid of images with boxes drawn on them (ground truth or predictions).

    images: uint8 (B, 3, H, W) RGB as the loader gives them; boxes: per image (n, 5) = (x1, y1, x2, y2, cls)
    for ground truth or (n, 6) = (..., score, cls) for predictions, in the same pixels as `images`.
    Predictions are labelled with their score. Drawn with OpenCV (fast, no figure needed); saved as jpg.
    """
    import cv2

    from mnv3det.deploy.runtime.annotate import draw_detections  # the boxes and labels of `detect` images

    path = Path(path)
    images = np.asarray(images)
    _, _, h, w = images.shape
    b, cols, rows, scale = mosaic_layout(len(images), h, w, max_images, max_size)
    images = images[:b]
    th, tw = int(h * scale), int(w * scale)
    mosaic = np.full((rows * th, cols * tw, 3), 255, np.uint8)  # BGR, as draw_detections and imwrite take it
    for i in range(b):
        tile = cv2.cvtColor(np.ascontiguousarray(images[i].transpose(1, 2, 0)), cv2.COLOR_RGB2BGR)
        if scale != 1:
            tile = cv2.resize(tile, (tw, th), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        det = np.asarray(boxes[i], np.float64).reshape(-1, boxes[i].shape[-1] if len(boxes[i]) else 5)
        scored = det.shape[1] == 6
        rows6 = det.copy() if scored else np.insert(det, 4, 1.0, axis=1)  # ground truth: no score to show
        rows6[:, :4] *= scale
        # lines and labels scale with each box and the tile (annotate.box_style): dense tiles stay readable
        tile = draw_detections(tile, rows6, list(map(str, names)), show_conf=scored)
        r, c = divmod(i, cols)
        mosaic[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = tile
        cv2.rectangle(mosaic, (c * tw, r * th), ((c + 1) * tw - 1, (r + 1) * th - 1), (255, 255, 255), 2)
    ok, encoded = cv2.imencode(Path(path).suffix or ".jpg", mosaic)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    return _writer(write)(Path(path), encoded.tobytes())
