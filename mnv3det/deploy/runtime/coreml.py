"""Core ML: an .mlpackage (ML Program) written by deploy/export/coreml.py, run by Core ML on macOS/iOS only.

coremltools can convert and read a model anywhere, but only macOS has the Core ML framework that predicts with it:
off macOS `Backend` is a one-line error and `runs_here()` is False, so the export checks what it can without running
(ops, shapes, a round trip through the spec) and says that its numbers are unverified. On macOS the Backend feeds
the image input (RGB, scaled to 0..1 inside the model) and returns the decoded (1, N, 5 + nc) output.
The export metadata (runtime/metadata.py) is the model's user-defined metadata entry "mnv3det" (JSON).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from mnv3det.deploy.runtime.backends import ArrayBackend
from mnv3det.deploy.runtime.metadata import check_metadata, meta_imgsz
from mnv3det.errors import UserError

METADATA_KEY = "mnv3det"


def runs_here() -> bool:
    """Whether this machine can run Core ML models (macOS only)."""
    return sys.platform == "darwin"


@contextlib.contextmanager
def quiet_coremltools() -> Iterator[None]:
    """coremltools' import and conversion notices off (untested torch/scikit-learn versions, the missing native
    predictor off macOS, int64 -> int32 casts): they would mix into export's table and --json."""
    from mnv3det.deploy.runtime.litert import quiet_stderr

    log = logging.getLogger("coremltools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), quiet_stderr():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def load_spec_model(path: Path) -> Any:
    """The saved model without loading it for prediction (works on any system)."""
    with quiet_coremltools():
        import coremltools as ct

        return ct.models.MLModel(str(path), skip_model_load=True)


def read_metadata(path: Path) -> dict[str, Any]:
    try:
        return json.loads(load_spec_model(path).user_defined_metadata.get(METADATA_KEY, "{}"))
    except Exception:  # not an mlpackage we can read: the metadata check names the file
        return {}


class Backend(ArrayBackend):
    """An .mlpackage run by Core ML (macOS); the `Backend` protocol of runtime/backends.py."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", threads: int | None = None):
        path = Path(path)
        if not runs_here():
            raise UserError(f"{path} is a Core ML model: it runs on macOS and iOS only (Core ML); on this machine "
                            "use the .pt or another export (--format onnx, litert, openvino)")
        self.meta = check_metadata(read_metadata(path), path)
        with quiet_coremltools():
            import coremltools as ct

            self.model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
        self.device = torch.device("cpu")
        self.names = list(self.meta["names"])
        self.stride = int(self.meta["stride"])
        self.imgsz = meta_imgsz(self.meta)
        h, w = self.meta["imgsz"]
        self.fixed_shape = (1, 3, int(h), int(w))

    def run(self, array: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 in 0..1 -> (B, N, 5 + nc): the image input takes 8-bit RGB, one image a call."""
        from PIL import Image

        outs = []
        for image in array:
            rgb = (np.clip(image.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
            outs.append(np.asarray(self.model.predict({"images": Image.fromarray(rgb)})["output"], np.float32)[0])
        return np.stack(outs)


runner = Backend.runner  # (run, input shape) for the timing worker (macOS)
