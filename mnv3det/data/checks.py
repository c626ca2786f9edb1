"""The per-sample checks every format goes through (shared by loading and `mnv3det data check`).

`read_image_header` opens only the header (size, EXIF orientation, JPEG end marker);
`finalize_sample` turns a parser's `RawSample` into an `ImageRecord`: non-finite coordinates, class range,
clipping, zero-size, tiny and duplicate boxes and the per-image box cap, each finding recorded as a `Problem`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnv3det.data.imageio import (FULL_DECODE_SUFFIXES, UnreadableImage, bomb_reason, decoded_size, max_pixels,
                                  size_problem)
from mnv3det.data.records import MAX_BOXES_PER_IMAGE, TINY_BOX_PX, ImageRecord, Problem, RawSample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # orientations that swap width and height


def read_image_header(path: Path) -> tuple[int, int, list[Problem]]:
    """(width, height, problems) of the image as the loader's `read_image` returns it (orientation applied).

    width = height = 0 when the image is unusable (missing, unreadable, truncated). Formats whose header does
    not prove the pixels decode (TIFF) are decoded in full by `read_image`, and their size is the decoded one.
    """
    name = str(path)
    if not path.is_file():
        return 0, 0, [Problem(name, None, "image_missing", "no such file")]
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
            fmt = im.format
    except Image.DecompressionBombError as err:
        # PIL refuses images over 2 x Image.MAX_IMAGE_PIXELS (~179 MP): a small file can claim 20000x20000.
        return 0, 0, [Problem(name, None, "image_too_large", bomb_reason(err))]
    except (UnidentifiedImageError, OSError, ValueError) as err:
        return 0, 0, [Problem(name, None, "image_unreadable", str(err)[:120])]
    except Exception as err:  # noqa: BLE001 - PIL's format plugins raise SyntaxError, struct.error, ... on hostile files
        return 0, 0, [Problem(name, None, "image_unreadable", f"{type(err).__name__}: {err}"[:120])]
    refused = size_problem(width, height)  # the one rule read_image applies too (tiny, bomb, strip)
    if refused:
        kind = "image_too_large" if width * height > max_pixels() else "image_unreadable"
        return 0, 0, [Problem(name, None, kind, refused)]
    if fmt == "JPEG":
        # A JPEG must end with the EOI marker FF D9; without it the file was cut short.
        with open(path, "rb") as f:
            f.seek(-2, 2)
            if f.read() != b"\xff\xd9":
                return 0, 0, [Problem(name, None, "image_truncated", "JPEG end marker missing")]
    problems: list[Problem] = []
    if orientation not in (None, 1):
        problems.append(Problem(name, None, "exif_rotated", f"EXIF orientation {orientation}"))
    if path.suffix.lower() in FULL_DECODE_SUFFIXES:
        try:  # Pillow reports a TIFF's size already turned: swapping it again would be wrong
            width, height = decoded_size(path)
        except UnreadableImage as err:
            return 0, 0, [Problem(name, None, "image_unreadable", err.reason)]
    elif orientation in _TRANSPOSED:
        width, height = height, width
    return width, height, problems


def finalize_sample(raw: RawSample, width: int, height: int, nc: int, image_id: int) -> tuple[ImageRecord, list[Problem]]:
    """Check `raw`'s boxes against an image of `width` x `height` and `nc` classes.

    Rows with NaN/inf coordinates, out-of-range classes, zero-size boxes (after clipping), exact duplicates and
    boxes past MAX_BOXES_PER_IMAGE are dropped; boxes reaching outside the image are clipped; tiny boxes
    (under TINY_BOX_PX) are kept and reported. Every change is returned as a Problem.
    """
    label = str(raw.label_file or raw.image)
    problems: list[Problem] = []
    if raw.declared_size is not None and raw.declared_size != (width, height):
        dw, dh = raw.declared_size
        problems.append(Problem(label, None, "size_mismatch", f"annotation says {dw}x{dh}, image is {width}x{height}"))
    boxes, classes, crowd, difficult = [], [], [], []
    seen: set[tuple[int, int, int, int, int]] = set()
    if len(raw.boxes) > MAX_BOXES_PER_IMAGE:
        problems.append(Problem(label, None, "too_many_boxes", f"{len(raw.boxes)} boxes; only the first {MAX_BOXES_PER_IMAGE} are used"))
    for b in raw.boxes[:MAX_BOXES_PER_IMAGE]:
        if not all(math.isfinite(v) for v in b.xyxy):
            problems.append(Problem(label, b.line, "bad_row", "NaN or infinite coordinate"))
            continue
        if not 0 <= b.cls < nc:
            problems.append(Problem(label, b.line, "class_out_of_range", f"class {b.cls} not in 0..{nc - 1}", str(b.cls)))
            continue
        x1, y1, x2, y2 = b.xyxy
        if b.normalised:
            x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
        # Tolerate sub-pixel overshoot (rounding in converters) without a report.
        tol = 0.5
        if min(x1, y1) < -tol or x2 > width + tol or y2 > height + tol:
            problems.append(Problem(label, b.line, "outside_image", f"box {x1:.1f},{y1:.1f},{x2:.1f},{y2:.1f} in {width}x{height}"))
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            problems.append(Problem(label, b.line, "zero_size", f"width {x2 - x1:.2f}, height {y2 - y1:.2f} pixels"))
            continue
        key = (b.cls, round(x1 * 10), round(y1 * 10), round(x2 * 10), round(y2 * 10))  # 0.1 px grid
        if key in seen:
            problems.append(Problem(label, b.line, "duplicate", f"class {b.cls} box repeated"))
            continue
        seen.add(key)
        if x2 - x1 < TINY_BOX_PX or y2 - y1 < TINY_BOX_PX:
            problems.append(Problem(label, b.line, "tiny_box", f"{x2 - x1:.1f} x {y2 - y1:.1f} pixels (under {TINY_BOX_PX:g})"))
        boxes.append((x1, y1, x2, y2))
        classes.append(b.cls)
        crowd.append(b.crowd)
        difficult.append(b.difficult)
    record = ImageRecord(
        path=raw.image,
        width=width,
        height=height,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        classes=np.asarray(classes, np.int64),
        crowd=np.asarray(crowd, bool),
        difficult=np.asarray(difficult, bool),
        image_id=image_id,
    )
    return record, problems
