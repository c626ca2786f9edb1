"""mnv3det: YOLOv5 detectors with MobileNetV3 backbones.

Python API (imported on first use, so `import mnv3det` stays light):
    mnv3det.train(data=..., epochs=..., ...) -> TrainResult   (mnv3det.train.api.train)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "train":  # the training package is callable: mnv3det.train(...) trains (see its docstring)
        return importlib.import_module("mnv3det.train")
    raise AttributeError(f"module 'mnv3det' has no attribute {name!r}")
