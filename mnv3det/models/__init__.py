"""Models: yaml graph builder, MobileNet seed modules, YOLOv5 parts, Detect, pretrained backbones.

    from mnv3det.models import build_model
    model = build_model("mnv3-small", nc=3)

The names below are imported on first use (PEP 562), so `mnv3det.models.recipes` (yaml only) can check a recipe
name before torch is imported: a usage error is answered in a fraction of a second.
"""

from __future__ import annotations

from mnv3det.core.lazy import lazy_exports

_EXPORTS = {
    "AFDetect": "mnv3det.models.af_head",
    "Detect": "mnv3det.models.detect",
    "DetectionModel": "mnv3det.models.model",
    "build_model": "mnv3det.models.model",
    "BackboneLoadReport": "mnv3det.models.pretrained",
    "load_backbone_weights": "mnv3det.models.pretrained",
    "available_recipes": "mnv3det.models.recipes",
    "recipe_for_backbone": "mnv3det.models.recipes",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports("mnv3det.models", _EXPORTS)
