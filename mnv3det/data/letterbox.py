"""Letterbox: resize keeping the aspect ratio, then pad to the target shape."""

from __future__ import annotations

import cv2
import numpy as np


def letterbox(
    img: np.ndarray,
    new_shape: int | tuple[int, int] = 640,
    color: tuple[int, int, int] = (114, 114, 114),
    auto: bool = False,
    stride: int = 32,
    scaleup: bool = True,
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize `img` (H, W, C) to fit `new_shape` (h, w) keeping its ratio; pad the rest with `color`.

    auto: pad only up to the next multiple of `stride` (a minimal rectangle) instead of the full shape.
    scaleup=False never enlarges (better mAP on small images at val time).
    Returns (img, (ratio_h, ratio_w), (pad_w, pad_h)); pads are the left and top padding in pixels, as
    `mnv3det.core.postprocess.scale_boxes` expects. Returns a new array; `img` is not changed.
    """
    shape = img.shape[:2]  # (h, w)
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scaleup:
        r = min(r, 1.0)
    new_unpad = (int(round(shape[1] * r)), int(round(shape[0] * r)))  # (w, h)
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    if (shape[1], shape[0]) != new_unpad:
        interp = cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR
        img = cv2.resize(img, new_unpad, interpolation=interp)
    # Rounding +-0.1 splits an odd padding so the larger half goes bottom/right, reproducibly.
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    out = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    ratio = (new_unpad[1] / shape[0], new_unpad[0] / shape[1])  # the exact scale applied per axis
    return out, ratio, (float(left), float(top))
