"""Models: yaml graph builder, MobileNet seed modules, YOLOv5 parts, Detect, pretrained backbones.

    from mnv3det.models import build_model
    model = build_model("mnv3-small", nc=3)

The names below are imported on first use (PEP 562), so `mnv3det.models.recipes` (yaml only) can check a recipe
name before torch is imported: a usage error is answered in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detect": "mnv3det.models.detect",
    "DetectionModel": "mnv3det.models.model",
    "build_model": "mnv3det.models.model",
    "BackboneLoadReport": "mnv3det.models.pretrained",
    "load_backbone_weights": "mnv3det.models.pretrained",
    "available_recipes": "mnv3det.models.recipes",
    "recipe_for_backbone": "mnv3det.models.recipes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mnv3det.models' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
