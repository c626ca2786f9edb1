"""The one prediction path: letterbox -> backend forward -> NMS -> boxes scaled back to the original image.

`detect` calls `predict` on the images it reads; `val` feeds its own letterboxed loader batches to the
same `Backend` call and then `postprocess` below, so both share every step after the pixels are ready.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from mnv3det.data import letterbox
from mnv3det.deploy.backends import Backend
from mnv3det.core.postprocess import non_max_suppression, scale_boxes
from mnv3det.errors import UserError

# (h0, w0) of the original image and ((ratio_h, ratio_w), (pad_w, pad_h)) of its letterbox, as the loader gives them.
ImageShape = tuple[tuple[int, int], tuple[tuple[float, float], tuple[float, float]]]


def check_imgsz(imgsz: int | tuple[int, ...] | list[int], stride: int, option: str = "--imgsz") -> tuple[int, int]:
    """(h, w) from `640` or `(h, w)`; each must be a positive multiple of `stride` (a clear error otherwise)."""
    sizes = [imgsz] if isinstance(imgsz, int) else list(imgsz)
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or any(int(s) <= 0 for s in sizes):
        raise UserError(f"{option} {imgsz}: give one size (640) or two (height width), positive")
    h, w = (int(s) for s in sizes)
    if h % stride or w % stride:
        raise UserError(
            f"{option} {h} {w}: sizes must be multiples of the model stride {stride} "
            f"(e.g. {max(round(h / stride), 1) * stride} {max(round(w / stride), 1) * stride})"
        )
    return h, w


def prepare_images(
    images: list[np.ndarray], imgsz: tuple[int, int], stride: int, auto: bool
) -> tuple[Tensor, list[ImageShape]]:
    """Letterbox BGR images into one uint8 batch (B, 3, H, W) RGB, plus each image's shape record.

    auto=True pads only to the next multiple of `stride` (a smaller input for non-square images; batch of 1 only,
    since the images of a batch must end up the same size).
    """
    if auto and len(images) > 1:
        raise ValueError("auto (minimum-padding) letterbox needs a batch of one image")
    batch, shapes = [], []
    for image in images:
        boxed, ratio, pad = letterbox(image, imgsz, auto=auto, stride=stride)
        batch.append(np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1)))  # HWC BGR -> CHW RGB
        shapes.append(((image.shape[0], image.shape[1]), (tuple(ratio), tuple(pad))))
    return torch.from_numpy(np.stack(batch)), shapes


def postprocess(
    pred: Tensor,
    input_hw: tuple[int, int],
    shapes: list[ImageShape],
    *,
    conf: float,
    iou: float,
    max_det: int = 300,
    classes: list[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
) -> list[Tensor]:
    """NMS on decoded predictions (B, N, 5 + nc) and boxes mapped back to each original image.

    Returns B tensors (n, 6) = (x1, y1, x2, y2, score, class) in original-image pixels (empty (0, 6) when none).
    """
    detections = non_max_suppression(
        pred, conf, iou, max_det=max_det, classes=classes, multi_label=multi_label, agnostic=agnostic
    )
    out = []
    for det, (orig_hw, ratio_pad) in zip(detections, shapes):
        det = det.clone()
        det[:, :4] = scale_boxes(det[:, :4], input_hw, orig_hw, ratio_pad)
        out.append(det)
    return out


@dataclass
class Prediction:
    """What `predict` returns for a batch of images."""

    detections: list[Tensor]  # per image: (n, 6) x1, y1, x2, y2, score, class in original pixels, on CPU
    input_shape: tuple[int, int, int, int]  # (B, 3, H, W) that went into the model
    speed_ms: dict[str, float] = field(default_factory=dict)  # per image: preprocess, inference, nms


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warmup(backend: Backend, imgsz: int | tuple[int, int] = 640) -> None:
    """One forward on zeros so one-time costs (allocations, kernel selection) stay out of the first timing."""
    shape = backend.fixed_shape or (1, 3, *check_imgsz(imgsz, backend.stride))
    backend(torch.zeros(shape, device=backend.device))


def predict(
    backend: Backend,
    images: list[np.ndarray],
    *,
    imgsz: int | tuple[int, int] = 640,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    classes: list[int] | None = None,
    agnostic: bool = False,
    square: bool = False,
) -> Prediction:
    """Detect objects in BGR images (H, W, 3) uint8 with `backend`.

    A static export (backend.fixed_shape) always gets its own input size; otherwise `imgsz` is used, and a single
    image is padded only to the next stride multiple (less work for non-square images) unless `square` asks for
    the full imgsz x imgsz input (what a static export sees).
    """
    if not images:
        raise ValueError("predict needs at least one image")
    if backend.fixed_shape is not None:
        hw = (backend.fixed_shape[2], backend.fixed_shape[3])
        auto = False
    else:
        hw = check_imgsz(imgsz, backend.stride)
        auto = len(images) == 1 and not square
    n = len(images)

    t0 = time.perf_counter()
    batch, shapes = prepare_images(images, hw, backend.stride, auto)
    x = batch.to(backend.device).float().div_(255)  # uint8 0..255 -> float 0..1
    _sync(backend.device)
    t1 = time.perf_counter()
    pred = backend(x)
    _sync(backend.device)
    t2 = time.perf_counter()
    detections = postprocess(
        pred, (x.shape[2], x.shape[3]), shapes, conf=conf, iou=iou, max_det=max_det, classes=classes, agnostic=agnostic
    )
    detections = [d.cpu() for d in detections]
    t3 = time.perf_counter()
    speed = {"preprocess": (t1 - t0) * 1e3 / n, "inference": (t2 - t1) * 1e3 / n, "nms": (t3 - t2) * 1e3 / n}
    return Prediction(detections, tuple(x.shape), speed)
