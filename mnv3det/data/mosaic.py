"""Mosaic-4: four images around a random centre on a 2s x 2s canvas (later warped down to s x s)."""

from __future__ import annotations

import numpy as np

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]  # (img HxWx3, boxes (N,4) xyxy px of img, classes (N,))


def mosaic4(samples: list[Sample], s: int, rng: np.random.Generator) -> Sample:
    """Tile 4 samples (each already resized so its longest side is about s) into a (2s, 2s) canvas.

    The centre (xc, yc) is drawn from [s/2, 3s/2]; sample k fills the top-left, top-right, bottom-left
    and bottom-right quadrant around it, cut where it does not fit. Boxes are shifted with their
    pixels and clipped to the canvas (the affine warp that follows drops what is mostly cut away).
    """
    assert len(samples) == 4
    yc, xc = (int(v) for v in rng.uniform(s / 2, 3 * s / 2, 2))
    canvas = np.full((2 * s, 2 * s, samples[0][0].shape[2]), 114, np.uint8)
    all_boxes, all_classes = [], []
    for k, (img, boxes, classes) in enumerate(samples):
        h, w = img.shape[:2]
        # (x1a, y1a, x2a, y2a): where on the canvas; (x1b, ...): which part of the image.
        if k == 0:  # top left
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
        elif k == 1:  # top right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
            x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
        elif k == 2:  # bottom left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * s, yc + h)
            x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
        else:  # bottom right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h)
            x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
        shifted = boxes.copy()
        shifted[:, [0, 2]] += x1a - x1b
        shifted[:, [1, 3]] += y1a - y1b
        all_boxes.append(shifted)
        all_classes.append(classes)
    boxes = np.concatenate(all_boxes).reshape(-1, 4)
    boxes = boxes.clip(0, 2 * s).astype(np.float32)  # the cut parts of each image lie outside the canvas
    classes = np.concatenate(all_classes).astype(np.int64)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return canvas, boxes[keep], classes[keep]
