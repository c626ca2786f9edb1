"""The reference pipeline and the usual app mistakes, as one small table of step settings.

A `Steps` is one way from an image to boxes; its defaults are the reference (`predictor.predict`'s letterbox ->
RGB -> /255 -> forward -> NMS -> scale back), and each `Mistake` changes one step the way apps in C++, Java or Swift
commonly get it wrong. `run_steps` runs any of them from the predictor's own pieces (letterbox_images,
nms_per_image, scale_boxes), so the reference is the very path `detect` takes; a forward pass is shared by every
Steps that feeds the model the same input (`Steps.input_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
from torch import Tensor

from mnv3det.core.imgsz import ImgSize
from mnv3det.core.postprocess import scale_boxes
from mnv3det.deploy.runtime.backends import Backend
from mnv3det.deploy.runtime.predictor import ImageShape, NmsSettings, letterbox_images, nms_per_image

PAD_SHIFTS = (-3.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0)  # letterbox offsets an app may be off by (input px)
NMS_IOUS = (0.3, 0.5, 0.6, 0.7)  # NMS IoU thresholds apps commonly use instead of the reference's


@dataclass(frozen=True)
class Steps:
    """One pipeline from a BGR image to boxes in image pixels; the defaults are the reference's steps."""

    stretch: bool = False  # resize to the input size ignoring the aspect ratio (no letterbox)
    square: bool = True  # letterbox to the full input (what a static export takes); False: pad only to the stride
    bgr: bool = False  # channels left in OpenCV's BGR order
    unit: float = 255.0  # pixel values are divided by this (1.0: 0-255 input)
    sigmoid_twice: bool = False  # sigmoid applied again to the score columns (obj and classes, or classes)
    iou: float | None = None  # NMS IoU threshold; None: the reference's
    pad_shift: float = 0.0  # input pixels added to the letterbox offset (on padded sides) when mapping boxes back
    back: str = "image"  # "image": scaled, unpadded, clipped; "unpadded": scaled only; "input": input pixels

    @property
    def input_key(self) -> tuple:
        """Steps with equal keys feed the model the same tensor, so they share one forward pass."""
        return (self.stretch, self.square, self.bgr, self.unit)


@dataclass(frozen=True)
class Mistake:
    """An app mistake: its steps, what to tell the user, and how to name the evidence."""

    key: str  # short id, e.g. "stretch" (json, tests)
    steps: Steps
    says: str  # "your app likely resizes by stretching instead of letterboxing"
    evidence: str  # "with a stretch resize" (finishes "..., the reference matches 97% of your boxes")


def references(static: bool) -> list[Mistake]:
    """The reference pipelines an app may follow without a mistake: detect's (pads a dynamic model's input only to
    the stride) and a static export's full square input (the same one for a static model)."""
    square = Mistake("reference-square", Steps(square=True), "agrees (with a full square input, as a static "
                     "export takes)", "with a square input")
    if static:
        return [replace(square, key="reference", says="agrees")]
    return [Mistake("reference", Steps(square=False), "agrees", "as detect runs it"), square]


def mistakes(iou: float) -> list[Mistake]:
    """The usual app mistakes, simplest first (a tie names the earlier one); `iou` is the reference's NMS IoU."""
    return [
        Mistake("stretch", Steps(stretch=True), "your app likely resizes by stretching instead of letterboxing",
                "with a stretch resize"),
        Mistake("bgr", Steps(bgr=True), "your app likely feeds BGR (OpenCV's order) instead of RGB", "with BGR input"),
        Mistake("no-1/255", Steps(unit=1.0), "your app likely feeds 0-255 pixel values instead of 0-1 (no 1/255)",
                "with 0-255 input"),
        Mistake("input-space", Steps(back="input"), "your app likely leaves boxes in network-input pixels instead "
                "of scaling them back to the image", "with boxes left in input pixels"),
        Mistake("padding-kept", Steps(back="unpadded"), "your app likely scales boxes back without removing the "
                "letterbox padding", "with the padding left in"),
        *[Mistake(f"pad{s:+g}", Steps(pad_shift=s), f"your app's letterbox offset is likely off by {s:+g} px (check "
                  "how it rounds and splits an odd padding, and that it maps boxes back with the offset it padded "
                  "with)", f"with the offset off by {s:+g} px") for s in PAD_SHIFTS],
        Mistake("sigmoid-twice", Steps(sigmoid_twice=True), "your app likely applies sigmoid to scores the model "
                "already outputs as probabilities", "with sigmoid applied twice"),
        *[Mistake(f"nms-iou-{v:g}", Steps(iou=v), f"your app likely runs NMS at IoU {v:g} instead of {iou:g}",
                  f"with NMS IoU {v:g}") for v in NMS_IOUS if abs(v - iou) > 1e-9],
    ]


def network_input(image: np.ndarray, size: ImgSize, backend: Backend, steps: Steps) -> tuple[Tensor, ImageShape]:
    """BGR uint8 (H, W, 3) -> float input (1, 3, h, w) as `steps` prepares it, and the image's shape record."""
    if steps.stretch:
        h, w = size.hw
        h0, w0 = image.shape[:2]
        resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        batch = torch.from_numpy(np.ascontiguousarray(resized[..., ::-1].transpose(2, 0, 1)))[None]  # RGB CHW
        shape: ImageShape = ((h0, w0), ((h / h0, w / w0), (0.0, 0.0)))
    else:
        auto = backend.fixed_shape is None and not steps.square  # as `predict` pads one image
        batch, shapes = letterbox_images([image], size, backend.stride, auto)
        shape = shapes[0]
    if steps.bgr:
        batch = batch.flip(1)  # RGB -> BGR
    return batch.to(backend.device).float().div_(steps.unit), shape


def detections(pred: Tensor, input_hw: tuple[int, int], shape: ImageShape, steps: Steps, nms: NmsSettings,
               nc: int | None) -> np.ndarray:
    """Decoded predictions (1, N, 5 + nc or 4 + nc) -> (n, 6) x1, y1, x2, y2, score, class as `steps` finishes."""
    if steps.sigmoid_twice:
        pred = pred.clone()
        pred[..., 4:] = pred[..., 4:].sigmoid()  # obj and class columns, or the class scores (anchor-free)
    settings = replace(nms, iou=steps.iou) if steps.iou is not None else nms
    det = nms_per_image(pred, settings, nc)[0].cpu().double()  # (n, 6) in input pixels
    if steps.back == "input":
        return det.numpy()
    orig_hw, (ratio, (pad_w, pad_h)) = shape
    if steps.back == "unpadded":  # x / ratio, unclipped, as an app that forgot the padding likely forgets clipping
        det[:, [0, 2]] /= ratio[1]
        det[:, [1, 3]] /= ratio[0]
        return det.numpy()
    # a shift moves the offset on the sides that have padding
    pad = (pad_w + steps.pad_shift if pad_w > 0 else pad_w, pad_h + steps.pad_shift if pad_h > 0 else pad_h)
    det[:, :4] = scale_boxes(det[:, :4], input_hw, orig_hw, (ratio, pad))
    return det.numpy()


class ImageRunner:
    """Runs many Steps on one image, one forward pass per distinct input."""

    def __init__(self, backend: Backend, image: np.ndarray, size: ImgSize, nms: NmsSettings):
        self.backend, self.image, self.size, self.nms = backend, image, size, nms
        self.nc = len(backend.names) or None
        self._forwards: dict[tuple, tuple[Tensor, tuple[int, int], ImageShape]] = {}

    def __call__(self, steps: Steps) -> np.ndarray:
        """(n, 6) x1, y1, x2, y2, score, class for this image, as `steps` computes them."""
        if steps.input_key not in self._forwards:
            x, shape = network_input(self.image, self.size, self.backend, steps)
            self._forwards[steps.input_key] = (self.backend(x), (int(x.shape[2]), int(x.shape[3])), shape)
        pred, input_hw, shape = self._forwards[steps.input_key]
        return detections(pred, input_hw, shape, steps, self.nms, self.nc)
