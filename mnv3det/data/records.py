"""The one in-memory form every dataset format ends in, and the problems found on the way.

`ImageRecord` is one image with its boxes (xyxy pixels of the original image, as cv2 loads it,
i.e. after EXIF rotation). `Problem` is one finding of the checks (a file, a line, a reason and
what was done about it); every skipped sample or dropped box leaves one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class ImageRecord:
    """One image and its ground truth.

    boxes: float32 (N, 4) xyxy pixels of the original image; classes: int64 (N,) contiguous 0..nc-1;
    crowd / difficult: bool (N,) flags (training ignores crowd boxes; evaluation treats both as ignored regions).
    image_id: the COCO image id for COCO json, else a running index within the split.
    """

    path: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    classes: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    crowd: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    difficult: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    image_id: int = 0

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])

    def to_json(self) -> dict[str, Any]:
        """A json-safe dict (for the on-disk cache)."""
        return {
            "path": str(self.path),
            "width": self.width,
            "height": self.height,
            "boxes": self.boxes.round(3).tolist(),
            "classes": self.classes.tolist(),
            "crowd": self.crowd.tolist(),
            "difficult": self.difficult.tolist(),
            "image_id": self.image_id,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ImageRecord":
        n = len(d["classes"])
        return cls(
            path=Path(d["path"]),
            width=int(d["width"]),
            height=int(d["height"]),
            boxes=np.asarray(d["boxes"], np.float32).reshape(n, 4),
            classes=np.asarray(d["classes"], np.int64).reshape(n),
            crowd=np.asarray(d["crowd"], bool).reshape(n),
            difficult=np.asarray(d["difficult"], bool).reshape(n),
            image_id=int(d["image_id"]),
        )


# Boxes kept per image: the first MAX_BOXES_PER_IMAGE rows of a label file (objects of an xml, annotations of a
# COCO image); the rest are reported once and not read. Dense scenes (shelves, crowds) hold hundreds of boxes;
# 2000 leaves room for them while bounding memory: a label file of a million rows made a 12-image epoch take
# 10 GB (loss targets, mosaic copies) and a 91 MB records cache.
MAX_BOXES_PER_IMAGE = 2000
# A box under this many pixels wide or high (in the original image) is reported as tiny: almost always an
# annotation slip (a click instead of a drag; BCCD BloodImage_00338 and 00343 hold 1x1 boxes). It is kept:
# YOLOv5-style augmentation drops boxes under 2 px after resizing anyway, and evaluation keeps the dataset's own
# ground truth so scores stay comparable with other tools.
TINY_BOX_PX = 2.0

# Problem kinds and what the checks do about each (shown by the doctor and the load summary).
PROBLEM_ACTIONS: dict[str, str] = {
    "image_missing": "label skipped",  # a label (or annotation) names an image that is not there
    "image_unreadable": "image skipped",  # not an image, or the decoder cannot read its header
    "image_truncated": "image skipped",  # JPEG without its end marker: a partial download
    "image_too_large": "image skipped",  # claims more pixels than PIL will open (a decompression bomb)
    "bad_file_name": "image skipped",  # a file name that is not valid UTF-8 (cannot be passed to cv2 or shown)
    "duplicate_image_id": "image skipped",  # COCO: two `images` entries share an id (boxes would go to either)
    "duplicate_image_file": "image skipped",  # one image file listed twice in a split (whose boxes hold is unknown)
    "label_unreadable": "image skipped",  # a label file that cannot be read or parsed at all
    "bad_row": "row skipped",  # wrong number of fields, non-numeric, NaN or infinite fields
    "pose_rows": "box used, keypoints ignored",  # YOLO rows read as box + keypoints without `kpt_shape` (once per split)
    "too_many_boxes": f"first {MAX_BOXES_PER_IMAGE} boxes kept",  # more rows than MAX_BOXES_PER_IMAGE
    "tiny_box": "kept (check it: probably an annotation slip)",  # under TINY_BOX_PX wide or high
    "class_out_of_range": "box dropped",  # class id outside 0..nc-1
    "unknown_class": "box dropped",  # a class name / category id not in the dataset's names
    "outside_image": "box clipped",  # coordinates beyond the image border
    "zero_size": "box dropped",  # zero or negative width/height (after clipping)
    "duplicate": "box dropped",  # the same class and box twice in one image
    "exif_rotated": "kept (boxes are read as relative to the rotated image)",
    "size_mismatch": "kept (the image's real size is used)",  # annotation size != image size
}


def printable(text: str | Path) -> str:
    """`text` safe to print and to write as UTF-8: bytes of a non-UTF-8 file name (held by Python as lone
    surrogates) become `\\xNN` escapes instead of raising UnicodeEncodeError later."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Problem:
    """One finding: `file` (and `line`, 1-based, where it applies) with a `kind` from PROBLEM_ACTIONS.

    value: for class problems, the offending class id or name (explains a names mismatch); else "".
    """

    file: str
    line: int | None
    kind: str
    detail: str = ""
    value: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "file", printable(self.file))  # never a crash when shown or cached
        object.__setattr__(self, "detail", printable(self.detail))

    @property
    def action(self) -> str:
        return PROBLEM_ACTIONS.get(self.kind, "")

    def to_json(self) -> list[Any]:
        return [self.file, self.line, self.kind, self.detail, self.value]

    @classmethod
    def from_json(cls, row: list[Any]) -> "Problem":
        value = str(row[4]) if len(row) > 4 else ""
        return cls(str(row[0]), None if row[1] is None else int(row[1]), str(row[2]), str(row[3]), value)


@dataclass
class RawBox:
    """A box as a format parser read it, before the common checks.

    xyxy: pixels, or fractions of the image size when `normalised` (YOLO txt needs the image size first).
    line: the 1-based line of the label file, or the annotation index / object index where no line exists.
    """

    cls: int
    xyxy: tuple[float, float, float, float]
    normalised: bool = False
    crowd: bool = False
    difficult: bool = False
    line: int | None = None
    pending: Any = None  # format-specific: a reading the whole split decides (YOLO: polygon or pose row)


@dataclass
class RawSample:
    """An image and its boxes as a parser read them; `label_file` names the file problems are reported against."""

    image: Path
    label_file: Path | None
    boxes: list[RawBox] = field(default_factory=list)
    image_id: int = 0
    declared_size: tuple[int, int] | None = None  # (width, height) the annotation states, if any
