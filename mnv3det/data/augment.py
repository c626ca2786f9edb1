"""Training augmentation: named presets of YOLOv5-style hyperparameters and the per-image steps.

Geometric steps (random affine, flips) move boxes with the pixels; photometric steps (HSV gains,
albumentations' blur / gray / CLAHE / contrast / JPEG) change pixels only. All randomness comes from
the `np.random.Generator` passed in, so a seed gives the same samples.
Boxes here are float32 (N, 4) xyxy pixels of the image they travel with.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import albumentations as A
import cv2
import numpy as np

from mnv3det.errors import UserError

# YOLOv5's hyp.scratch-low.yaml augmentation values are the reference ("yolov5").
PRESETS: dict[str, dict[str, float]] = {
    "yolov5": {
        "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4, "degrees": 0.0, "translate": 0.1, "scale": 0.5,
        "shear": 0.0, "perspective": 0.0, "flipud": 0.0, "fliplr": 0.5, "mosaic": 1.0, "mixup": 0.0,
        "albumentations": 1.0,
    },
    # Small datasets / short runs: gentler scale jitter and no mosaic.
    "light": {
        "hsv_h": 0.015, "hsv_s": 0.5, "hsv_v": 0.3, "degrees": 0.0, "translate": 0.1, "scale": 0.25,
        "shear": 0.0, "perspective": 0.0, "flipud": 0.0, "fliplr": 0.5, "mosaic": 0.0, "mixup": 0.0,
        "albumentations": 1.0,
    },
    "none": {
        "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "degrees": 0.0, "translate": 0.0, "scale": 0.0,
        "shear": 0.0, "perspective": 0.0, "flipud": 0.0, "fliplr": 0.0, "mosaic": 0.0, "mixup": 0.0,
        "albumentations": 0.0,
    },
}  # fmt: skip


def resolve_hyp(hyp: str | dict[str, Any] | None) -> dict[str, float]:
    """A full augmentation dict: a preset name, or a dict over the 'yolov5' preset (`preset:` picks another base).

    Keys that are not augmentation keys (lr0, box, ... from a training hyp file) are ignored.
    """
    if hyp is None:
        return dict(PRESETS["yolov5"])
    if isinstance(hyp, str):
        if hyp not in PRESETS:
            raise UserError(f"augmentation preset {hyp!r} is unknown; choose one of {', '.join(PRESETS)}")
        return dict(PRESETS[hyp])
    base = resolve_hyp(str(hyp.get("preset", "yolov5")))
    for key in base:
        if key in hyp and hyp[key] is not None:
            try:
                base[key] = float(hyp[key])
            except (TypeError, ValueError):
                raise UserError(f"augmentation setting {key}={hyp[key]!r} is not a number") from None
    return base


def augment_hsv(img: np.ndarray, rng: np.random.Generator, hgain: float, sgain: float, vgain: float) -> np.ndarray:
    """Random multiplicative gains on hue, saturation and value (BGR uint8 in, new array out).

    Written with lookup tables because YOLOv5's reference gains are multiplicative per channel,
    while albumentations' HueSaturationValue shifts additively.
    """
    if not (hgain or sgain or vgain):
        return img
    gains = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_hue = ((x * gains[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def box_candidates(before: np.ndarray, after: np.ndarray, wh_thr: float = 2, ar_thr: float = 20, area_thr: float = 0.1) -> np.ndarray:
    """bool (N,): boxes still worth training on after a warp (before/after are (N, 4) xyxy, before scaled).

    Keeps boxes at least `wh_thr` px wide and high, with at least `area_thr` of their area left and
    an aspect ratio under `ar_thr`.
    """
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    ar = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + 1e-16) > area_thr) & (ar < ar_thr)


def random_affine(
    img: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    rng: np.random.Generator,
    hyp: dict[str, float],
    out_shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random rotation / scale / shear / translation (and perspective) with its boxes.

    img: (H, W, 3); out_shape: (h, w) of the result. The input's centre lands at the output's centre
    (plus the random translation), so a 2s x 2s mosaic canvas warped to (s, s) yields its middle.
    Boxes are warped at their 4 corners and re-boxed; boxes mostly cut away are dropped.
    """
    height, width = out_shape
    c = np.eye(3)  # move the image centre to the origin
    c[0, 2], c[1, 2] = -img.shape[1] / 2, -img.shape[0] / 2
    p = np.eye(3)
    p[2, 0], p[2, 1] = rng.uniform(-1, 1, 2) * hyp["perspective"]
    a = rng.uniform(-hyp["degrees"], hyp["degrees"])
    s = rng.uniform(1 - hyp["scale"], 1 + hyp["scale"])
    r = np.eye(3)
    r[:2] = cv2.getRotationMatrix2D(angle=a, center=(0, 0), scale=s)
    sh = np.eye(3)
    sh[0, 1], sh[1, 0] = np.tan(np.radians(rng.uniform(-hyp["shear"], hyp["shear"], 2)))
    t = np.eye(3)
    t[0, 2] = rng.uniform(0.5 - hyp["translate"], 0.5 + hyp["translate"]) * width
    t[1, 2] = rng.uniform(0.5 - hyp["translate"], 0.5 + hyp["translate"]) * height
    m = t @ sh @ r @ p @ c  # order matters: centre, perspective, rotate+scale, shear, translate
    if hyp["perspective"]:
        img = cv2.warpPerspective(img, m, dsize=(width, height), borderValue=(114, 114, 114))
    else:
        img = cv2.warpAffine(img, m[:2], dsize=(width, height), borderValue=(114, 114, 114))
    n = len(boxes)
    if n == 0:
        return img, boxes.reshape(0, 4), classes
    corners = np.ones((n * 4, 3))
    corners[:, :2] = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(n * 4, 2)  # x1y1, x2y1, x2y2, x1y2 (a polygon)
    corners = corners @ m.T
    xy = corners[:, :2] / corners[:, 2:3] if hyp["perspective"] else corners[:, :2]
    quads = xy.reshape(n, 4, 2)
    if hyp["degrees"] or hyp["shear"] or hyp["perspective"]:
        new = _clipped_quad_boxes(quads, width, height)
    else:  # axis-aligned: boxing and clipping the corners is exact
        new = np.concatenate((quads.min(1), quads.max(1)), 1)
        new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
        new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
    keep = box_candidates(boxes * s, new, area_thr=0.1 if math.isclose(hyp["perspective"], 0) else 0.01)
    return img, new[keep].astype(np.float32), classes[keep]


def _clipped_quad_boxes(quads: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) xyxy boxes of the parts of (N, 4, 2) warped box outlines that stay inside the output.

    Boxing the warped corners and then clipping (YOLOv5's way) keeps corners that left the frame, so a
    rotated box cut by the border reaches past its visible pixels; intersecting the outline with the frame
    first gives the box of what is actually visible.
    """
    frame = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    out = np.zeros((len(quads), 4), np.float32)
    for k, quad in enumerate(quads.astype(np.float32)):
        area, inter = cv2.intersectConvexConvex(quad, frame)
        if inter is not None and area > 0:
            pts = inter.reshape(-1, 2)
            out[k] = (*pts.min(0), *pts.max(0))
    return out


def build_albumentations(p: float) -> A.Compose | None:
    """Photometric and blur steps, each with probability 0.01 * p as in YOLOv5 (boxes pass through unchanged)."""
    if p <= 0:
        return None
    steps = [
        A.Blur(blur_limit=(3, 7), p=0.01 * p),
        A.MedianBlur(blur_limit=(3, 7), p=0.01 * p),
        A.ToGray(p=0.01 * p),
        A.CLAHE(p=0.01 * p),
        A.ImageCompression(quality_range=(75, 100), p=0.01 * p),
    ]
    with warnings.catch_warnings():
        # All steps are pixel-level; albumentations warns that the bbox processor has nothing to move.
        warnings.filterwarnings("ignore", message="Got processor for bboxes")
        return A.Compose(steps, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["class_labels"]))


def apply_albumentations(
    compose: A.Compose | None, img: np.ndarray, boxes: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run `compose` on one image and its boxes; boxes are clipped to the image first (albumentations checks them)."""
    if compose is None:
        return img, boxes, classes
    h, w = img.shape[:2]
    b = boxes.copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    out = compose(image=img, bboxes=b, class_labels=classes)
    new_boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
    return out["image"], new_boxes, np.asarray(out["class_labels"], np.int64).reshape(-1)


def flip_lr(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = img.shape[1]
    out = boxes.copy()
    out[:, [0, 2]] = w - boxes[:, [2, 0]]
    return np.ascontiguousarray(img[:, ::-1]), out


def flip_ud(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = img.shape[0]
    out = boxes.copy()
    out[:, [1, 3]] = h - boxes[:, [3, 1]]
    return np.ascontiguousarray(img[::-1]), out


def mixup(
    a: tuple[np.ndarray, np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray, np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blend two same-size samples (img, boxes, classes) with a Beta(32, 32) weight; boxes of both kept."""
    r = rng.beta(32.0, 32.0)
    img = (a[0].astype(np.float32) * r + b[0].astype(np.float32) * (1 - r)).astype(np.uint8)
    return img, np.concatenate((a[1], b[1])), np.concatenate((a[2], b[2]))
