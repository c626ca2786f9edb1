"""mnv3det: YOLOv5 detectors with MobileNetV3 backbones.

Python API (docs/python-api.md; imported on first use, so `import mnv3det` stays light):
    mnv3det.load(weights) -> Detector; Detector.predict(images) -> Detections   (mnv3det.api)
    mnv3det.val(weights, data, **options) -> EvalResult                        (mnv3det.api)
    mnv3det.export(weights, format="onnx", **options) -> ExportResult          (mnv3det.api)
    mnv3det.benchmark(weights, formats=..., **options) -> BenchReport          (mnv3det.api)
    mnv3det.check_app(weights, images, predictions) -> CheckAppResult  (mnv3det.deploy.check_app.check)
    mnv3det.train(data=..., epochs=..., ...) -> TrainResult                      (mnv3det.train.api.train)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {name: "mnv3det.api" for name in ("load", "val", "export", "benchmark", "Detector", "Detections")}
_API["check_app"] = "mnv3det.deploy.check_app.check"  # its own module holds the one signature and docstring


def __getattr__(name: str) -> Any:
    if name == "train":  # the training package is callable: mnv3det.train(...) trains (see its docstring)
        return importlib.import_module("mnv3det.train")
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'mnv3det' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, "train"])
