"""onnxruntime, as the format records see it (deploy/formats.py): `Backend` and `runner` for .onnx files, float or INT8.

The Backend itself is backends.OnnxBackend (`load_backend` opens .onnx files with it directly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mnv3det.deploy.runtime.backends import OnnxBackend
from mnv3det.deploy.runtime.backends import onnx_runner as runner  # noqa: F401 (the timing worker's call)


def Backend(path: str | Path, device: Any = "cpu", threads: int | None = None) -> OnnxBackend:  # noqa: N802
    """The .onnx Backend every ONNX file uses (INT8 needs nothing else)."""
    return OnnxBackend(path, torch.device(device), threads)


def runs_here() -> bool:
    """This runtime runs on every system mnv3det supports."""
    return True
