"""Models: yaml graph builder, MobileNet seed modules, YOLOv5 parts, Detect, pretrained backbones.

    from mnv3det.models import build_model
    model = build_model("mnv3-small", nc=3)
"""

from mnv3det.models.detect import Detect
from mnv3det.models.model import DetectionModel, build_model
from mnv3det.models.pretrained import BackboneLoadReport, load_backbone_weights
from mnv3det.models.recipes import available_recipes, recipe_for_backbone

__all__ = [
    "BackboneLoadReport",
    "Detect",
    "DetectionModel",
    "available_recipes",
    "build_model",
    "load_backbone_weights",
    "recipe_for_backbone",
]
