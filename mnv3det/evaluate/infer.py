"""Evaluation, step 1 of 3 (infer -> score -> write): run a backend over a split's loader and keep each image's boxes.

The loader letterboxes (rectangular batches for a dynamic model, the export's own square for a static one);
every batch then goes through `mnv3det.deploy.runtime.predictor.run_batch`, the prediction path `detect` uses too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mnv3det.deploy.runtime.backends import Backend
from mnv3det.deploy.runtime.predictor import NmsSettings, run_batch
from mnv3det.errors import UserError


@dataclass
class Inference:
    """What one pass over a split gave: per image its record and boxes, timings, and a few batches to draw."""

    records: list[Any] = field(default_factory=list)  # in evaluation order, each image once
    detections: list[np.ndarray] = field(default_factory=list)  # float64 (n, 6) xyxy, score, class; original px
    seconds: np.ndarray = field(default_factory=lambda: np.zeros(3))  # preprocess, inference, nms, summed
    images_run: int = 0  # images that went through the model (a substituted image counts, but is scored once)
    batches: list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]] = field(default_factory=list)
    # ^ (uint8 images, loader targets, detections in input pixels) of the first batches, for the mosaics

    @property
    def speed_ms(self) -> dict[str, float]:
        """Mean milliseconds per image: preprocess, inference, nms."""
        return {k: 1000 * float(v) / max(self.images_run, 1)
                for k, v in zip(("preprocess", "inference", "nms"), self.seconds)}


def make_eval_loader(
    records: Sequence[Any],
    *,
    imgsz: int,
    batch_size: int,
    stride: int,
    workers: int = 2,
    fixed_shape: tuple[int, int, int, int] | None = None,
) -> Any:
    """The validation loader `evaluate` runs on: rect batches, or for a static export (fixed_shape) square
    batches of its own size and a multiple of its batch. Build it once to reuse it across epochs."""
    from mnv3det.data import create_dataloader

    rect = fixed_shape is None
    if fixed_shape is not None:
        b, _, h, w = fixed_shape
        if h != w:
            raise UserError(
                f"this model was exported for {h}x{w} inputs; evaluation letterboxes to squares, "
                "so export it square (--imgsz N) or without --static"
            )
        imgsz, batch_size = h, b * max(1, batch_size // b)
    return create_dataloader(
        list(records), imgsz=imgsz, batch_size=batch_size, augment=False, rect=rect,
        stride=stride, workers=workers, shuffle=False,
    )


def infer(
    backend: Backend, loader: Any, records: Sequence[Any], nms: NmsSettings, *, progress: bool = True, keep_batches: int = 0,
    between_batches: Callable[[], object] | None = None, on_targets: Callable[[torch.Tensor], object] | None = None,
) -> Inference:
    """Run every batch of `loader` through the prediction path; boxes are matched to `records` by path.

    between_batches: called after every batch on this thread (the CPU thread governor's `poll`).
    on_targets: called with each batch's loader targets (M, 6) right after the model ran on it (the trainer's
    validation loss).

    An image the loader could not decode comes back as a substitute with the same path; it is scored once.
    """
    by_path = {str(r.path): r for r in records}  # the loader may re-order (rect): find ground truth by path
    seen: set[int] = set()
    out = Inference()
    with _progress_bar(progress, len(loader)) as advance:
        for index, (images, targets, paths, shapes) in enumerate(loader):
            prediction = run_batch(backend, images, shapes, nms)
            if on_targets is not None:
                on_targets(targets)
            out.seconds += [prediction.speed_ms[k] * len(paths) / 1000 for k in ("preprocess", "inference", "nms")]
            out.images_run += len(paths)
            for det, path in zip(prediction.detections, paths):
                record = by_path[str(path)]
                if record.image_id in seen:  # the loader substituted an undecodable image: score each image once
                    continue
                seen.add(record.image_id)
                out.records.append(record)
                out.detections.append(det.numpy())
            if index < keep_batches:
                out.batches.append((images, targets, prediction.input_detections))
            if between_batches is not None:
                between_batches()
            advance()
    return out


class _progress_bar:
    """A rich progress bar over batches (or nothing); `with ... as advance: advance()` per batch."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self._progress = enabled, total, None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("[bold]val"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  transient=True)
        self._progress.start()
        task = self._progress.add_task("val", total=self.total)
        return lambda: self._progress.advance(task)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
