"""Procedural detection scenes for pretraining (no natural image, nothing downloaded).

    shapes.py    shape families drawn from formulas (the classes)
    textures.py  backgrounds and object fills (dead leaves, noise, gradients, stripes)
    scene.py     SceneConfig, SceneGenerator: (seed, index) -> image + exact visible boxes
    dataset.py   the training stream over a generator, and a fixed validation set written as YOLO files
"""

from mnv3det.data.synth.scene import GENERATOR_VERSION, Scene, SceneConfig, SceneGenerator
from mnv3det.data.synth.shapes import FAMILIES

__all__ = ["FAMILIES", "GENERATOR_VERSION", "Scene", "SceneConfig", "SceneGenerator"]
