"""The Python API: what the CLI commands do, for people who call mnv3det from code.

    import mnv3det

    detector = mnv3det.load("runs/train/exp/weights/best.pt")      # or best.onnx, best.torchscript
    result = detector.predict("bus.jpg")                            # a path, a BGR array, a PIL image, or a list
    for box, score, name in zip(result.boxes, result.scores, result.labels):
        print(name, round(float(score), 2), box)                    # box: x1, y1, x2, y2 in image pixels

    metrics = mnv3det.val("best.pt", data="data.yaml")              # EvalResult: .map, .map50, .per_class, ...

Arrays are taken as OpenCV gives them (H, W, 3) uint8 BGR; a PIL image is converted from RGB. Every call goes
through the same prediction path as `mnv3det detect` and `mnv3det val`, so the numbers agree with the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from mnv3det.core.console import make_console
from mnv3det.core.imgsz import ImgSize, ImgSizeLike
from mnv3det.evaluate.config import ValConfig

ImageInput = Union[str, Path, np.ndarray, Any]  # a path, a BGR uint8 array (H, W, 3) or a PIL image


@dataclass
class Detections:
    """The boxes found in one image (numpy arrays, original-image pixels)."""

    boxes: np.ndarray  # float32 (n, 4) x1, y1, x2, y2
    scores: np.ndarray  # float32 (n,) obj x class probability
    classes: np.ndarray  # int64 (n,) class indices
    names: list[str]  # the model's class names (index -> name)
    image_shape: tuple[int, int]  # (height, width) of the image
    speed_ms: dict[str, float]  # preprocess, inference, nms for this image

    @property
    def labels(self) -> list[str]:
        """The class name of each box."""
        return [self.names[int(c)] for c in self.classes]

    def __len__(self) -> int:
        return len(self.boxes)


class Detector:
    """A loaded model (.pt checkpoint or export) that finds objects in images; see `load`."""

    def __init__(self, backend: Any, imgsz: ImgSize, conf: float = 0.25, iou: float = 0.45):
        self.backend = backend
        self.imgsz = imgsz  # the size images are letterboxed to (the trained size unless asked otherwise)
        self.conf, self.iou = conf, iou

    @property
    def names(self) -> list[str]:
        return list(self.backend.names)

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int = 300,
        classes: Sequence[int] | None = None,
    ) -> Detections | list[Detections]:
        """Detections for one image, or a list of them for a list of images (each run on its own, as `detect` does)."""
        from mnv3det.deploy.predictor import NmsSettings, predict

        single = not isinstance(images, (list, tuple))
        nms = NmsSettings(conf=self.conf if conf is None else conf, iou=self.iou if iou is None else iou,
                          max_det=max_det, classes=tuple(classes) if classes is not None else None)
        out = []
        for image in [images] if single else images:
            array = _as_bgr(image)
            prediction = predict(self.backend, [array], imgsz=self.imgsz, nms=nms)
            det = prediction.detections[0].numpy()
            out.append(Detections(
                boxes=det[:, :4].astype(np.float32), scores=det[:, 4].astype(np.float32),
                classes=det[:, 5].astype(np.int64), names=self.names, image_shape=array.shape[:2],
                speed_ms=prediction.speed_ms,
            ))
        return out[0] if single else out

    __call__ = predict

    def __repr__(self) -> str:
        return f"Detector({len(self.names)} classes, imgsz {self.imgsz}, {type(self.backend).__name__})"


def load(
    weights: str | Path,
    *,
    device: str | None = None,
    imgsz: ImgSizeLike | None = None,
    conf: float = 0.25,
    iou: float = 0.45,
    threads: int | None = None,
) -> Detector:
    """Open a .pt checkpoint or an exported file as a Detector.

    imgsz: None = the size the model was trained at (a static export: its own size). device: None = a GPU when
    there is one. threads: CPU threads, None = the cores this process may use (1 for a .pt/.torchscript on CPU:
    one image per forward is fastest on one thread, see `mnv3det.core.threads`).
    """
    from mnv3det.core.device import select_device
    from mnv3det.deploy.backends import load_backend
    from mnv3det.deploy.predictor import resolve_imgsz, warmup

    backend = load_backend(weights, select_device(device), threads, one_image=True)
    size, _ = resolve_imgsz(backend, imgsz, weights)
    warmup(backend, size)
    return Detector(backend, size, conf=conf, iou=iou)


def val(weights: str | Path | ValConfig, data: str | None = None, *, verbose: bool = False, **options: Any):
    """Evaluate `weights` on a split of `data` as `mnv3det val` does (None = the data a .pt was trained on when it
    still exists, else the built-in demo set).

    options: any field of `mnv3det.evaluate.config.ValConfig` (imgsz, batch, conf, iou, split, plots, save_json,
    project, name, ...); or pass a ValConfig as `weights`. Writes the run folder like the CLI; returns the
    `EvalResult` (`.map`, `.map50`, `.per_class`, ..., and `.save_dir`). verbose: print the tables.
    """
    from mnv3det.evaluate.runner import run_val

    config = weights if isinstance(weights, ValConfig) else ValConfig(weights=Path(weights), data=data, **options)
    result, _ = run_val(config, make_console() if verbose else make_console(quiet=True))
    return result


def _as_bgr(image: ImageInput) -> np.ndarray:
    """A BGR uint8 (H, W, 3) array from a path, an array (taken as BGR) or a PIL image (RGB)."""
    from mnv3det.errors import UserError

    if isinstance(image, (str, Path)):
        from mnv3det.deploy.sources import UnreadableImage, read_image

        try:
            return read_image(Path(image))
        except UnreadableImage as err:
            raise UserError(f"{image}: {err}") from None
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise UserError(f"expected an image array (H, W, 3) uint8, got {array.dtype} {tuple(array.shape)}")
    return np.ascontiguousarray(array[..., :3])


__all__ = ["load", "val", "Detector", "Detections"]
