"""The names and paths a new training run needs, checked before torch, OpenCV or the data are loaded: an unknown
recipe, a missing data path or a missing weights file is one line in a fraction of a second (issue 31), not one
after several seconds of imports. Each check is the one the heavy code path makes later, with the same words."""

from __future__ import annotations

from pathlib import Path

from mnv3det.core.near_files import missing_checkpoint
from mnv3det.data.locate import check_data_path
from mnv3det.models.backbone_source import check_backbone_source
from mnv3det.models.recipes import load_recipe
from mnv3det.train.config import TrainConfig


def check_start(cfg: TrainConfig) -> None:
    """Raise the UserError a run would end with at start-up, for every file or name `cfg` refers to."""
    load_recipe(cfg.recipe)  # a name under recipes/ or a yaml path (read and parsed: yaml only)
    check_data_path(cfg.data)
    if cfg.weights and not Path(cfg.weights).is_file():
        raise missing_checkpoint(cfg.weights)
    if cfg.backbone_weights:
        check_backbone_source(cfg.backbone_weights)
