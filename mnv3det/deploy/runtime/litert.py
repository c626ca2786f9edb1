"""LiteRT (the TFLite format): a .tflite file run by ai-edge-litert's Interpreter on the CPU (XNNPACK).

Written by deploy/export/litert.py (float32) and litert_int8.py (INT8 body, float Detect decode). The file is what
an Android app loads with the LiteRT interpreter (README, "On a phone"):
- input  float32 (B, 3, H, W), RGB, 0..1, letterboxed to the exported square (NCHW, as in PyTorch: the converter
  keeps the PyTorch signature and transposes inside the graph);
- output float32 (B, N, 5 + nc) decoded as in PyTorch eval mode (cx, cy, w, h in input pixels, obj, class probs).
The export metadata (class names, strides, ...; runtime/metadata.py) is a flatbuffer metadata entry named
"mnv3det" whose buffer holds the JSON text; the interpreter ignores it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from mnv3det.core.threads import resolve_threads
from mnv3det.deploy.runtime.backends import ArrayBackend
from mnv3det.deploy.runtime.metadata import check_metadata, meta_imgsz
from mnv3det.errors import UserError

METADATA_NAME = b"mnv3det"  # the .tflite metadata entry holding the export metadata (JSON, utf-8)


def read_tflite_metadata(path: Path) -> dict[str, Any]:
    """The export metadata stored in `path` ({} when there is none or the file is no .tflite model)."""
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    try:
        model = schema.Model.GetRootAs(buf, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == METADATA_NAME:
                return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode())
    except Exception:  # a truncated or foreign file: the metadata check below names it
        return {}
    return {}


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null: the interpreter's C++ logger prints "INFO: Created TensorFlow Lite XNNPACK
    delegate for CPU." for every model it opens, which would interleave with detect's and val's output. Errors still
    reach the caller as Python exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Backend(ArrayBackend):
    """A .tflite file on the CPU; the `Backend` protocol of runtime/backends.py."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        path = Path(path)
        self.meta = check_metadata(read_tflite_metadata(path), path)
        if torch.device(device).type != "cpu":
            import warnings

            warnings.warn(f"{path.name} runs on the CPU (LiteRT interpreter)", stacklevel=2)
        try:
            with quiet_stderr():
                self.interpreter = Interpreter(model_path=str(path), num_threads=resolve_threads(threads))
                self.interpreter.allocate_tensors()
        except Exception as err:  # a damaged file
            raise UserError(f"could not load LiteRT model {path}: {type(err).__name__}: {str(err)[:200]}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.device = torch.device("cpu")
        self.names = list(self.meta["names"])
        self.stride = int(self.meta["stride"])
        self.imgsz = meta_imgsz(self.meta)  # the trained size (what val/detect report), else the exported size
        self.fixed_shape = tuple(int(d) for d in self.input["shape"])  # LiteRT files here are static: (B, 3, H, W)

    def run(self, array: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 -> (B, N, 5 + nc) float32 (a copy: the interpreter reuses its output buffer)."""
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(array, dtype=np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"]).copy()


runner = Backend.runner  # (run, input shape) for the timing worker


def runs_here() -> bool:
    """This runtime runs on every system mnv3det supports."""
    return True
