"""Draw detections on images: one colour per class, labels with readable text, and crops.

Detections are `Tensor/ndarray (n, 6)` = (x1, y1, x2, y2, score, class) in the image's own pixels,
as `predict` returns them. Images are BGR uint8 (H, W, 3) as OpenCV reads them; nothing is changed in place.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def class_color(cls: int, order: str = "bgr") -> tuple[int, int, int]:
    """The colour of class `cls` everywhere (detect images, val mosaics), as "bgr" (OpenCV) or "rgb".

    Hues are spread by the golden ratio so neighbouring classes differ clearly; computed rather than looked up
    so any number of classes gets distinct, saturated colours.
    """
    hue = (0.05 + cls * GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = (int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))
    if order not in ("bgr", "rgb"):
        raise ValueError(f"order must be 'bgr' or 'rgb', got {order!r}")
    return (b, g, r) if order == "bgr" else (r, g, b)


def text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on `background` (BGR), by relative luminance (ITU-R BT.601)."""
    b, g, r = background
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def box_label(cls: int, score: float, names: list[str], show_conf: bool = True) -> str:
    name = names[cls] if 0 <= cls < len(names) else str(cls)
    return f"{name} {score:.2f}" if show_conf else name


FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_FONT_SCALE = 0.3  # about 7 px high: the smallest label that still reads
LABEL_BOX_HEIGHT = 0.25  # a label is at most this share of its box's height ...
LABEL_BOX_WIDTH = 1.5  # ... and this many times its width, so labels in a dense scene leave the objects visible
BOX_LINE_DIVISOR = 12  # a box's line is at most 1/12 of its shorter side (thin lines on small boxes)


def image_line_width(height: int, width: int) -> int:
    """The line width for an image of this size: thicker on bigger images, at least 2 px."""
    return max(round((height + width) / 2 * 0.003), 2)


def box_style(label: str, box_w: float, box_h: float, line_width: int, fixed: bool) -> tuple[int, float, int]:
    """(line thickness, font scale, font thickness) for one box. `fixed` (the user's --line-width): that width and
    its font everywhere; otherwise both shrink with the box, so small, dense boxes keep thin lines and small labels
    (BCCD's ~46 cells per image) while big boxes on big images get `line_width` and a font to match."""
    font_scale = line_width / 3
    if not fixed:
        line_width = max(1, min(line_width, round(min(box_w, box_h) / BOX_LINE_DIVISOR)))
        (tw, th), baseline = cv2.getTextSize(label, FONT, 1.0, 1)  # size at scale 1: the text scales linearly
        fits = min(LABEL_BOX_HEIGHT * box_h / (th + baseline), LABEL_BOX_WIDTH * box_w / max(tw, 1))
        font_scale = max(MIN_FONT_SCALE, min(font_scale, fits))
    return line_width, font_scale, max(1, min(line_width - 1, round(font_scale * 2)))


def draw_detections(
    image: np.ndarray, detections, names: list[str], show_conf: bool = True, line_width: int | None = None,
    show_labels: bool = True,
) -> np.ndarray:
    """A copy of `image` with every detection drawn as a coloured box and (show_labels) a filled label.

    line_width None: from the image size, and each box's line and label shrink with the box (`box_style`);
    a number: that width and its label size for every box."""
    out = image.copy()
    h, w = out.shape[:2]
    lw = line_width or image_line_width(h, w)
    for x1, y1, x2, y2, score, cls in np.asarray(detections, dtype=np.float64).reshape(-1, 6):
        cls = int(cls)
        color = class_color(cls)
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        label = box_label(cls, float(score), names, show_conf)
        thickness, font_scale, font_thickness = box_style(label, x2 - x1, y2 - y1, lw, line_width is not None)
        cv2.rectangle(out, p1, p2, color, thickness=thickness, lineType=cv2.LINE_AA)
        if not show_labels:
            continue
        (tw, th), baseline = cv2.getTextSize(label, FONT, font_scale, font_thickness)
        above = p1[1] - th - baseline - 3 >= 0  # label above the box unless it would leave the image
        top = p1[1] - th - baseline - 3 if above else p1[1]
        bottom = top + th + baseline + 3
        left = min(p1[0], max(w - tw - 2, 0))
        cv2.rectangle(out, (left, top), (left + tw + 2, bottom), color, thickness=-1, lineType=cv2.LINE_AA)
        cv2.putText(out, label, (left + 1, bottom - baseline - 1), FONT, font_scale, text_color(color),
                    thickness=font_thickness, lineType=cv2.LINE_AA)
    return out


def crop_box(image: np.ndarray, xyxy, gain: float = 1.02, pad: int = 10) -> np.ndarray:
    """The part of `image` under box `xyxy`, grown by `gain` and `pad` pixels and clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in xyxy[:4])
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    bw, bh = (x2 - x1) * gain + pad, (y2 - y1) * gain + pad
    h, w = image.shape[:2]
    left, right = int(max(cx - bw / 2, 0)), int(min(cx + bw / 2, w))
    top, bottom = int(max(cy - bh / 2, 0)), int(min(cy + bh / 2, h))
    return image[top:bottom, left:right].copy()
