"""The one prediction path: letterbox -> backend forward -> NMS -> boxes scaled back to the original image.

    letterbox_images(images, size, stride, auto)  BGR images -> uint8 batch (B, 3, H, W) RGB + shape records
    run_batch(backend, batch, shapes, nms)        uint8 batch -> /255 -> forward -> NMS -> scale back (timed)
    predict(backend, images, ...)                 both, for `detect` and the Python API

`val` letterboxes in its data loader (rectangular batches, the same `letterbox`) and hands each batch to
`run_batch`; `export` verifies a file by running both models through `run_batch`. So a fix to any step after
the pixels are ready reaches every command.

Padding: a dynamic model (a .pt, or an export made without --static) gets a single image padded only to the next
stride multiple; a static export always gets its own fixed input, a square for the usual exports. `resolve_imgsz`
is the one rule for which size a command runs at.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from mnv3det.core.device import synchronize
from mnv3det.core.imgsz import DEFAULT_IMGSZ, ImgSize, ImgSizeLike, check_imgsz, choose_imgsz
from mnv3det.core.postprocess import non_max_suppression, scale_boxes
from mnv3det.data.letterbox import letterbox
from mnv3det.deploy.runtime.backends import Backend


# (h0, w0) of the original image and ((ratio_h, ratio_w), (pad_w, pad_h)) of its letterbox, as the loader gives them.
ImageShape = tuple[tuple[int, int], tuple[tuple[float, float], tuple[float, float]]]


@dataclass(frozen=True)
class NmsSettings:
    """What NMS keeps (see `mnv3det.core.postprocess.non_max_suppression`)."""

    conf: float = 0.25  # score threshold (obj x class prob; anchor-free head: the class score)
    iou: float = 0.45  # boxes of one class overlapping more than this are merged
    max_det: int = 300  # most boxes kept per image
    classes: tuple[int, ...] | None = None  # keep only these class indices
    agnostic: bool = False  # one NMS over all classes
    multi_label: bool = False  # a box may carry several classes (val's mAP protocol leaves it off)


@dataclass
class Prediction:
    """What `run_batch` and `predict` return for a batch of images."""

    detections: list[Tensor]  # per image: float64 (n, 6) x1, y1, x2, y2, score, class in original pixels, CPU
    input_shape: tuple[int, int, int, int]  # (B, 3, H, W) that went into the model
    speed_ms: dict[str, float] = field(default_factory=dict)  # per image: preprocess, inference, nms
    input_detections: list[Tensor] = field(default_factory=list)  # the same boxes in network-input pixels


def resolve_imgsz(backend: Backend, requested: ImgSizeLike | None, weights: object = "the model") -> tuple[ImgSize, str]:
    """The size to run `backend` at, and one line saying why when it was not simply the size asked for.

    A static export runs at its own size; otherwise `requested`, else the size the model was trained at, else 640.
    """
    if backend.fixed_shape is not None:
        fixed = ImgSize(int(backend.fixed_shape[2]), int(backend.fixed_shape[3]))
        asked = check_imgsz(requested, backend.stride) if requested is not None else fixed
        note = (f"{weights} is a static export: every image is letterboxed to {fixed.h}x{fixed.w} "
                f"(a .pt pads each image only to the stride, so boxes can differ slightly; {_static_remedy(backend)})")
        if asked != fixed:
            note += f"; --imgsz {asked} is ignored"
        return fixed, note
    size = choose_imgsz(requested, backend.imgsz, backend.stride)
    if requested is None and backend.imgsz is not None:
        return size, f"imgsz {size}: the size {weights} was trained at (set --imgsz to change it)"
    return size, ""


def _static_remedy(backend: Backend) -> str:
    """What gets the .pt's boxes instead: onnx/torchscript can be exported dynamic; the edge formats (OpenVINO,
    ncnn, INT8) are static by design, so only the .pt or a dynamic ONNX export matches it."""
    fmt = getattr(backend, "meta", {}).get("format")  # edge exports record their --format; onnx/torchscript do not
    if fmt in (None, "onnx", "torchscript"):
        return "export without --static to match it"
    return f"{fmt} exports are always static; the .pt or a dynamic --format onnx export matches it"


def letterbox_images(
    images: list[np.ndarray], size: ImgSizeLike, stride: int, auto: bool
) -> tuple[Tensor, list[ImageShape]]:
    """Letterbox BGR images into one uint8 batch (B, 3, H, W) RGB, plus each image's shape record.

    auto=True pads only to the next multiple of `stride` (a smaller input for non-square images; batch of 1 only,
    since the images of a batch must end up the same size).
    """
    if auto and len(images) > 1:
        raise ValueError("auto (minimum-padding) letterbox needs a batch of one image")
    hw = ImgSize.parse(size).hw
    batch, shapes = [], []
    for image in images:
        boxed, ratio, pad = letterbox(image, hw, auto=auto, stride=stride)
        batch.append(np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1)))  # HWC BGR -> CHW RGB
        shapes.append(((image.shape[0], image.shape[1]), (tuple(ratio), tuple(pad))))
    return torch.from_numpy(np.stack(batch)), shapes


def nms_per_image(pred: Tensor, nms: NmsSettings, nc: int | None = None) -> list[Tensor]:
    """NMS on decoded predictions (B, N, 5 + nc) or anchor-free (B, N, 4 + nc): B tensors (n, 6) in network-input
    pixels. `nc` (the backend's len(names)) tells the two layouts apart (core.postprocess.has_objectness)."""
    classes = list(nms.classes) if nms.classes else None
    return non_max_suppression(pred, nms.conf, nms.iou, max_det=nms.max_det, classes=classes,
                               multi_label=nms.multi_label, agnostic=nms.agnostic, nc=nc)


def scale_back(detections: list[Tensor], input_hw: tuple[int, int], shapes: list[ImageShape]) -> list[Tensor]:
    """New (n, 6) tensors with boxes moved from the letterboxed input to each original image (clipped)."""
    out = []
    for det, (orig_hw, ratio_pad) in zip(detections, shapes):
        det = det.clone()
        det[:, :4] = scale_boxes(det[:, :4], input_hw, orig_hw, ratio_pad)
        out.append(det)
    return out


def detections_in_input(backend: Backend, pred: Tensor, nms: NmsSettings) -> list[Tensor]:
    """B tensors (n, 6) in network-input pixels from a backend's output: NMS on raw predictions, or, for an
    end-to-end file (`backend.nms`: it ran NMS itself), its rows without the zero padding, filtered by the stricter
    of its own and the asked conf, the asked classes and max_det (what it did not keep cannot come back)."""
    if not getattr(backend, "nms", None):
        return nms_per_image(pred, nms, len(backend.names) or None)
    out = []
    for rows in pred:  # (max_det, 6) sorted by score, zero rows after the image's count
        rows = rows[rows[:, 4] > nms.conf] if nms.conf > 0 else rows[rows[:, 4] > 0]
        if nms.classes:
            rows = rows[(rows[:, 5:6] == torch.tensor(nms.classes, device=rows.device)).any(1)]
        out.append(rows[: nms.max_det])
    return out


def held_nms_note(backend: Backend, nms: NmsSettings, weights: object = "the model") -> str:
    """One line when `backend` ends in NMS of its own whose settings differ from `nms` (they hold), else ""."""
    held = getattr(backend, "nms", None)
    if not held or (held["conf"], held["iou"]) == (nms.conf, nms.iou):
        return ""
    return (f"{weights} ends in NMS (conf {held['conf']:g}, iou {held['iou']:g}, max_det {held['max_det']}): a lower "
            f"--conf or another --iou cannot apply (asked: conf {nms.conf:g}, iou {nms.iou:g}); export without --nms "
            "for val's mAP protocol")


def postprocess(
    pred: Tensor, input_hw: tuple[int, int], shapes: list[ImageShape], nms: NmsSettings, nc: int | None = None
) -> list[Tensor]:
    """NMS, then boxes mapped back: B tensors (x1, y1, x2, y2, score, class) in original pixels (empty (0, 6))."""
    return scale_back(nms_per_image(pred, nms, nc), input_hw, shapes)


def run_batch(backend: Backend, batch: Tensor, shapes: list[ImageShape], nms: NmsSettings) -> Prediction:
    """uint8 batch (B, 3, H, W) RGB, letterboxed -> 0..1 float -> forward -> NMS -> boxes in original pixels.

    Timed per image: preprocess (the copy and scaling), inference (the backend call), nms (NMS and scale-back).
    """
    n = batch.shape[0]
    t0 = time.perf_counter()
    x = batch.to(backend.device, non_blocking=True).float().div_(255)  # uint8 0..255 -> float 0..1
    synchronize(x.device)
    t1 = time.perf_counter()
    pred = backend(x)
    synchronize(x.device)
    t2 = time.perf_counter()
    in_input = [d.cpu() for d in detections_in_input(backend, pred, nms)]
    # Scaled in float64: val rounds boxes to 1e-3 px, finer than float32 resolves at a few hundred pixels.
    detections = scale_back([d.double() for d in in_input], (int(x.shape[2]), int(x.shape[3])), shapes)
    t3 = time.perf_counter()
    speed = {"preprocess": (t1 - t0) * 1e3 / n, "inference": (t2 - t1) * 1e3 / n, "nms": (t3 - t2) * 1e3 / n}
    return Prediction(detections, tuple(x.shape), speed, in_input)


def warmup(backend: Backend, size: ImgSizeLike = DEFAULT_IMGSZ) -> None:
    """One forward on zeros so one-time costs (allocations, kernel selection) stay out of the first timing."""
    shape = backend.fixed_shape or (1, 3, *check_imgsz(size, backend.stride).hw)
    backend(torch.zeros(shape, device=backend.device))


def predict(
    backend: Backend,
    images: list[np.ndarray],
    *,
    imgsz: ImgSizeLike | None = None,
    nms: NmsSettings | None = None,
    square: bool = False,
    **nms_fields,
) -> Prediction:
    """Detect objects in BGR images (H, W, 3) uint8 with `backend`: `letterbox_images` then `run_batch`.
    An end-to-end file (`export --nms`) skips NMS here (it ran its own) and is scaled back the same way.

    imgsz: None = `resolve_imgsz`'s default (the trained size). A single image is padded only to the next stride
    multiple unless `square` asks for the full square input a static export sees. NMS settings come as `nms` or
    as its fields (`conf=0.25, iou=0.45, ...`).
    """
    if not images:
        raise ValueError("predict needs at least one image")
    size, _ = resolve_imgsz(backend, imgsz)
    auto = backend.fixed_shape is None and len(images) == 1 and not square
    nms = nms or NmsSettings(**{k: tuple(v) if k == "classes" and v is not None else v for k, v in nms_fields.items()})
    t0 = time.perf_counter()
    batch, shapes = letterbox_images(images, size, backend.stride, auto)
    letterbox_ms = (time.perf_counter() - t0) * 1e3 / len(images)
    prediction = run_batch(backend, batch, shapes, nms)
    prediction.speed_ms["preprocess"] += letterbox_ms
    return prediction
