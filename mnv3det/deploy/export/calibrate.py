"""INT8 calibration images: a few hundred images of the user's training split, preprocessed as the model sees them.

Static post-training quantization measures each activation's range on these images, so they must look like what
the deployed model gets: the same letterbox to the export's (square) input, RGB, 0..1, NCHW float32.
Images are read lazily (300 images at 640 px would take 1.5 GB as float32), in a fixed random order (seed),
and an unreadable file is reported once and skipped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mnv3det.errors import UserError

CHUNK_BYTES = 512 * 2**20  # activations a calibrator may hold at once (formats/onnx_int8.py feeds it in chunks)


@dataclass
class CalibrationSet:
    """Image files and the input shape they are letterboxed to; iterate for (1, 3, H, W) float32 arrays."""

    paths: list[Path]
    shape: tuple[int, int, int, int]  # (1, 3, H, W) of the static export
    stride: int
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    spec: Any = None  # the DataSpec the images came from

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        from mnv3det.deploy.runtime.predictor import letterbox_images
        from mnv3det.deploy.runtime.sources import UnreadableImage, read_image

        bad = {p for p, _ in self.skipped}
        for path in self.paths:
            if path in bad:
                continue
            try:
                image = read_image(path)
            except UnreadableImage as err:  # reported once by the caller, through `skipped`
                self.skipped.append((path, str(err)))
                bad.add(path)
                continue
            batch, _ = letterbox_images([image], self.shape[2:], self.stride, auto=False)
            yield batch.numpy().astype(np.float32) / 255.0


def pick(paths: Sequence[Path], count: int, seed: int = 0) -> list[Path]:
    """`count` of `paths` in a fixed random order (all of them, shuffled, when there are fewer)."""
    order = list(paths)
    random.Random(seed).shuffle(order)
    return order[:count]


def calibration_set(
    data: str | Path | None,
    shape: tuple[int, int, int, int],
    stride: int,
    count: int,
    split: str = "train",
    seed: int = 0,
) -> CalibrationSet:
    """Up to `count` images (ExportConfig.calib_images) of `split` of `data` (None: the demo set) for calibrating an
    export of `shape`."""
    from mnv3det.data import load_data

    if count < 1:
        raise UserError(f"--calib-images {count}: must be 1 or more (a few hundred is usual)")
    spec = load_data(data)
    if split not in spec.splits:
        raise UserError(f"--data {spec.source} has no '{split}' split to calibrate INT8 on; add one")
    records = spec.records(split)
    return CalibrationSet(pick([r.path for r in records], count, seed), shape, stride, spec=spec)
