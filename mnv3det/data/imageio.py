"""The one image decoder of the data side: what `data check` accepts, the loader can read.

`read_image(path)` decodes to BGR uint8 (H, W, 3) with the orientation tag applied. OpenCV decodes JPEG, PNG,
WebP and BMP (fast; it applies their EXIF orientation), with Pillow as the fallback. TIFFs go to Pillow only:
OpenCV's TIFF reader refuses 32-bit samples and fails on TIFFs whose orientation tag transposes the image
(5..8), while Pillow's libtiff reader applies that orientation itself (and drops the tag), so `exif_transpose`
afterwards never turns the image twice.

`size_problem(width, height)` is the one rule for images that decode but cannot be processed: a side under
`MIN_SIDE` pixels, more pixels than `max_pixels()` (Pillow's decompression-bomb limit: a small file can claim
60000 x 60000), or a strip longer than `MAX_ASPECT` times its width (letterboxed, its short side would round to 0
pixels). The checks (`data check`, the records of every split) and `read_image` (detect, val, the loader, the
API) apply it, `read_image` from the header before any pixel is decoded.

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
MIN_SIDE = 2  # pixels; a 1-pixel row or column is no picture to detect in
# Longest side over shortest: past this a 32-pixel letterbox leaves the short side under 1 pixel (32 / 50 rounds up).
MAX_ASPECT = 50
# Pillow modes that map onto 8-bit colour without a guess about the value range ("F", "I": 32-bit samples).
_EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


class UnreadableImage(Exception):
    """An image that cannot be decoded; `reason` is short enough for a report table."""

    def __init__(self, path: str | Path, reason: str = "cannot be decoded") -> None:
        super().__init__(f"cannot decode {path} ({reason})")
        self.path = str(path)
        self.reason = reason


class UnprocessableImage(UnreadableImage):
    """An image whose size `size_problem` refuses (it may decode, but cannot be letterboxed or held in memory)."""


def max_pixels() -> int:
    """The most pixels an image may have: what Pillow opens without a DecompressionBombError (~179 MP)."""
    return 2 * int(Image.MAX_IMAGE_PIXELS or 89_478_485)


def size_problem(width: int, height: int) -> str | None:
    """Why an image of `width` x `height` cannot be processed (one short reason), or None when it can."""
    if min(width, height) < MIN_SIDE:
        return f"image is {width}x{height} pixels"
    if width * height > max_pixels():
        return (f"image is {width}x{height} pixels, more than the {max_pixels() / 1e6:.0f} MP limit (a decompression "
                "bomb?); shrink the image or remove it")
    if max(width, height) > MAX_ASPECT * min(width, height):
        return f"image is {width}x{height} pixels, a strip over {MAX_ASPECT} times longer than wide; crop it or remove it"
    return None


def bomb_reason(err: Exception) -> str:
    """The short reason for Pillow's DecompressionBombError ("Image size (N pixels) exceeds limit of M pixels")."""
    return f"{str(err).split(',')[0][:100]} (a decompression bomb?); shrink the image or remove it"


def check_array(image: np.ndarray, name: str | Path) -> np.ndarray:
    """`image` (H, W, ...) itself, or UnreadableImage when `size_problem` refuses its size."""
    reason = size_problem(int(image.shape[1]), int(image.shape[0])) if image.ndim >= 2 else "not an image array"
    if reason:
        raise UnprocessableImage(name, reason)
    return image


def _check_header(path: Path) -> None:
    """Apply `size_problem` to the size in the file's header, before anything is decoded (no pixels allocated)."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Image.DecompressionBombError as err:
        raise UnprocessableImage(path, bomb_reason(err)) from None
    except Exception:  # noqa: BLE001 - not for Pillow (or hostile): the decoders below say what is wrong
        return
    reason = size_problem(width, height)
    if reason:
        raise UnprocessableImage(path, reason)


def pil_to_bgr(im: Image.Image, name: str | Path = "the PIL image") -> np.ndarray:
    """BGR uint8 (H, W, 3) from a Pillow image, converted as `read_image` converts a file: orientation applied,
    16-bit samples scaled to 8 bits (>> 8, as OpenCV does), UnreadableImage for modes without an 8-bit meaning."""
    im = ImageOps.exif_transpose(im)  # the EXIF tag of a JPEG/PNG/WebP; a no-op without one
    if im.mode in ("I;16", "I;16B", "I;16L"):
        im = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8))
    elif im.mode not in _EIGHT_BIT_MODES:
        raise UnreadableImage(name, f"{im.mode} samples (e.g. 32-bit float); save it as 8-bit RGB")
    rgb = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _pillow_decode(path: Path) -> np.ndarray:
    """BGR uint8 via Pillow, orientation applied once; UnreadableImage for modes without an 8-bit meaning."""
    try:
        with Image.open(path) as im:
            im.load()  # libtiff applies a TIFF's orientation here and removes the tag
            return pil_to_bgr(im, path)
    except UnreadableImage:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow's plugins raise OSError, ValueError, SyntaxError, ...
        raise UnreadableImage(path, f"{type(err).__name__}: {err}"[:100]) from None


def read_image(path: str | Path) -> np.ndarray:
    """The decoded image as BGR uint8 (H, W, 3), orientation applied; raises UnreadableImage (also for an image
    whose header gives a size `size_problem` refuses: nothing is decoded then)."""
    path = Path(path)
    _check_header(path)
    if path.suffix.lower() not in FULL_DECODE_SUFFIXES:
        try:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        except cv2.error:  # OpenCV refused it (its own size limit, ...): Pillow below says why
            img = None
        if img is not None:
            return check_array(img, path)
    if not path.is_file():
        raise UnreadableImage(path, "no such file")
    return check_array(_pillow_decode(path), path)


def decoded_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image `read_image` returns (a full decode: use for FULL_DECODE_SUFFIXES)."""
    img = read_image(path)
    return int(img.shape[1]), int(img.shape[0])
