"""The image size, in one type: parsed once, checked once against the model's stride, one error wording.

    ImgSize.parse(640) == ImgSize.parse("640") == ImgSize(640, 640)
    ImgSize.parse("480,640") == ImgSize.parse((480, 640)) == ImgSize(480, 640)     # (height, width)
    check_imgsz("650", stride=32)  ->  UserError: --imgsz 650: not a multiple of 32, the model's stride;
                                       nearest valid: 640 or 672

Every command goes through here: train (TrainConfig.imgsz), val, detect, export and profile. The stride is the
model's own (its largest, `int(model.stride.max())`, or `Backend.stride`), never a hard-coded 32.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Union

from mnv3det.errors import UserError

_SEPARATORS = re.compile(r"[,\sx]+")

DEFAULT_IMGSZ = 640  # when neither the user nor the model gives a size

# Every detector here reaches P5/32 at least, so a size that is no multiple of 32 cannot work with any of them.
# TrainConfig checks against it before a model exists; the trainer then checks the built model's own stride.
P5_STRIDE = 32

# The largest side accepted: a 8192 x 8192 input is 0.8 GB of float32 pixels before the first layer's activations
# (tens of GB); past it the letterbox or the forward would fail on allocation with a raw OpenCV/torch error.
MAX_SIDE = 8192


@dataclass(frozen=True)
class ImgSize:
    """A network input size in pixels, (height, width); a square size prints as one number."""

    h: int
    w: int

    @classmethod
    def parse(cls, value: Any, option: str = "--imgsz") -> "ImgSize":
        """640, "640", "480,640" / "480 640" / "480x640", (480, 640), [640] or an ImgSize; positive integers only."""
        if isinstance(value, ImgSize):
            return value
        if isinstance(value, str):
            parts = [p for p in _SEPARATORS.split(value.strip()) if p]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts = [value]
        elif isinstance(value, (tuple, list)):
            parts = list(value)
        else:
            parts = []
        sizes = [_positive_int(p) for p in parts]
        if not 1 <= len(sizes) <= 2 or None in sizes:
            raise UserError(
                f"{option} {_show(value)}: give a positive size such as 640, or height,width such as 480,640"
            )
        if max(sizes) > MAX_SIDE:
            raise UserError(f"{option} {_show(value)}: at most {MAX_SIDE} pixels a side (larger inputs do not fit in "
                            "memory); try 640, or 1280 for small objects")
        return cls(sizes[0], sizes[-1])

    @property
    def square(self) -> bool:
        return self.h == self.w

    @property
    def hw(self) -> tuple[int, int]:
        return self.h, self.w

    @property
    def long(self) -> int:
        """The longer side: what the val/train loaders scale an image's longest side to."""
        return max(self.h, self.w)

    def check(self, stride: int, option: str = "--imgsz") -> "ImgSize":
        """Itself when both sides are multiples of `stride`; else the one error, naming the nearest valid sizes."""
        if self.h % stride == 0 and self.w % stride == 0:
            return self
        below = ImgSize(_round_to(self.h, stride, math.floor), _round_to(self.w, stride, math.floor))
        above = ImgSize(_round_to(self.h, stride, math.ceil), _round_to(self.w, stride, math.ceil))
        nearest = str(above) if below == above else f"{below} or {above}"
        raise UserError(f"{option} {self}: not a multiple of {stride}, the model's stride; nearest valid: {nearest}")

    def side(self, option: str = "--imgsz", why: str = "this command letterboxes to squares") -> int:
        """The size as one number; a non-square size is an error here (`why` says why)."""
        if not self.square:
            raise UserError(f"{option} {self}: give one size such as {self.long} ({why})")
        return self.h

    def __str__(self) -> str:
        return str(self.h) if self.square else f"{self.h},{self.w}"


ImgSizeLike = Union[ImgSize, int, str, tuple, list]


def parse_imgsz(value: ImgSizeLike, option: str = "--imgsz") -> ImgSize:
    """`ImgSize.parse` as a function."""
    return ImgSize.parse(value, option)


def check_imgsz(value: ImgSizeLike, stride: int, option: str = "--imgsz") -> ImgSize:
    """Parse `value` and check it against the model's `stride` (see the module docstring)."""
    return ImgSize.parse(value, option).check(int(stride), option)


def choose_imgsz(asked: ImgSizeLike | None, trained: ImgSizeLike | None, stride: int,
                 option: str = "--imgsz") -> ImgSize:
    """The one rule every command follows: the size asked for, else the size the model was trained at, else 640;
    checked against the model's `stride`."""
    return check_imgsz(asked if asked is not None else (trained or DEFAULT_IMGSZ), stride, option)


def _positive_int(part: Any) -> int | None:
    if isinstance(part, bool):
        return None
    if isinstance(part, str) and re.fullmatch(r"\d+", part.strip()):
        part = int(part)
    if isinstance(part, float) and part.is_integer():
        part = int(part)
    return part if isinstance(part, int) and part > 0 else None


def _round_to(size: int, stride: int, rounding) -> int:
    return max(int(rounding(size / stride)), 1) * stride


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value).strip() if isinstance(value, str) else repr(value) if not isinstance(value, int) else str(value)


__all__ = ["DEFAULT_IMGSZ", "MAX_SIDE", "ImgSize", "ImgSizeLike", "choose_imgsz", "parse_imgsz", "check_imgsz"]
