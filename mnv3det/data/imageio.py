"""The one image decoder of the data side: what `data check` accepts, the loader can read.

`read_image(path)` decodes to BGR uint8 (H, W, 3) with the orientation tag applied. OpenCV decodes JPEG, PNG,
WebP and BMP (fast; it applies their EXIF orientation), with Pillow as the fallback. TIFFs go to Pillow only:
OpenCV's TIFF reader refuses 32-bit samples and fails on TIFFs whose orientation tag transposes the image
(5..8), while Pillow's libtiff reader applies that orientation itself (and drops the tag), so `exif_transpose`
afterwards never turns the image twice.

`FULL_DECODE_SUFFIXES`: formats whose header does not prove the pixels can be decoded (TIFF: compression,
sample format and orientation live in tags). The checks decode those with `read_image` and take the size from
the decoded array, so the size a record holds is the size the loader produces.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

FULL_DECODE_SUFFIXES = (".tif", ".tiff")
# Pillow modes that map onto 8-bit colour without a guess about the value range ("F", "I": 32-bit samples).
_EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


class UnreadableImage(Exception):
    """An image that cannot be decoded; `reason` is short enough for a report table."""

    def __init__(self, path: str | Path, reason: str = "cannot be decoded") -> None:
        super().__init__(f"cannot decode {path} ({reason})")
        self.path = str(path)
        self.reason = reason


def _pillow_decode(path: Path) -> np.ndarray:
    """BGR uint8 via Pillow, orientation applied once; UnreadableImage for modes without an 8-bit meaning."""
    try:
        with Image.open(path) as im:
            im.load()  # libtiff applies a TIFF's orientation here and removes the tag
            im = ImageOps.exif_transpose(im)  # JPEG/PNG/WebP: the EXIF tag is still there; a no-op otherwise
            if im.mode in ("I;16", "I;16B", "I;16L"):
                im = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8))
            elif im.mode not in _EIGHT_BIT_MODES:
                raise UnreadableImage(path, f"{im.mode} samples (e.g. 32-bit float); save it as 8-bit RGB")
            rgb = np.asarray(im.convert("RGB"))
    except UnreadableImage:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow's plugins raise OSError, ValueError, SyntaxError, ...
        raise UnreadableImage(path, f"{type(err).__name__}: {err}"[:100]) from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def read_image(path: str | Path) -> np.ndarray:
    """The decoded image as BGR uint8 (H, W, 3), orientation applied; raises UnreadableImage."""
    path = Path(path)
    if path.suffix.lower() not in FULL_DECODE_SUFFIXES:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is not None:
            return img
    if not path.is_file():
        raise UnreadableImage(path, "no such file")
    return _pillow_decode(path)


def decoded_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image `read_image` returns (a full decode: use for FULL_DECODE_SUFFIXES)."""
    img = read_image(path)
    return int(img.shape[1]), int(img.shape[0])
