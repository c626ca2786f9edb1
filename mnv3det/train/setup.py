"""The model a run trains: from its recipe (new run) or from last.pt (resume); threads per process."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Protocol

from torch import nn

from mnv3det.core.checkpoint import Checkpoint, check_finite, load_checkpoint, load_state
from mnv3det.core.threads import resolve_threads
from mnv3det.errors import UserError
from mnv3det.train.config import TrainConfig


class Log(Protocol):
    """Anything with rich's `print` (a Console, or a buffer that prints later)."""

    def print(self, *objects: object, **kwargs: object) -> None: ...


def default_threads(world_size: int) -> int:
    """Intra-op threads per process: the cores this process may use shared out over the processes (at least 1)."""
    return resolve_threads(None, world_size)


def freeze_rows(model: nn.Module, n: int) -> int:
    """Stop gradients in the first n rows of the graph; returns the number of frozen tensors."""
    layers = model.layers  # type: ignore[attr-defined]
    if n > len(layers) - 1:
        raise UserError(f"--freeze {n}: the model has {len(layers)} rows and the last (Detect) must train; use < {len(layers)}")
    frozen = 0
    for layer in list(layers)[:n]:
        for p in layer.parameters():
            p.requires_grad_(False)
            frozen += 1
    return frozen


PRETRAINED_WORDS = ("auto", "shipped", "none")


def resolve_pretrained(cfg: TrainConfig) -> TrainConfig:
    """The start a new run uses, as config.yaml records it: 'auto' becomes 'shipped' when the recipe ships
    pretrained weights and neither --weights nor --backbone-weights is given (the user's own weights win), else
    'none'. 'shipped' for a recipe without shipped weights, or beside --weights, is a UserError."""
    from mnv3det.models.shipped import shipped_recipes, shipped_weights_path

    own = cfg.weights or cfg.backbone_weights
    if cfg.pretrained == "auto":
        use = "shipped" if shipped_weights_path(cfg.recipe) is not None and not own else "none"
        return dataclasses.replace(cfg, pretrained=use)
    if cfg.pretrained != "none" and own:
        raise UserError(f"--pretrained {cfg.pretrained} and --{'weights' if cfg.weights else 'backbone-weights'} "
                        f"{own} are two starts; give one (or --pretrained none)")
    if cfg.pretrained == "shipped" and shipped_weights_path(cfg.recipe) is None:
        raise UserError(f"--pretrained shipped: no pretrained weights ship for recipe {cfg.recipe!r} (they ship for "
                        f"{', '.join(shipped_recipes()) or 'none'}); use --pretrained none or a file from "
                        "`mnv3det pretrain`")
    return cfg


def _load_start(model: nn.Module, cfg: TrainConfig, log: Log) -> None:
    """--weights (what fits), else --pretrained shipped / a file (strict: made for this recipe)."""
    from mnv3det.models.shipped import describe_provenance, shipped_weights_path
    from mnv3det.models.transfer import transfer_detector

    cfg = resolve_pretrained(cfg)  # fit() resolved it already (for config.yaml); direct callers may not have
    if cfg.weights:
        start = load_checkpoint(cfg.weights)
        check_finite(start.model, f"--weights {cfg.weights}")
        report = transfer_detector(model, start.model, start.nc, f"--weights {cfg.weights}", strict=False)
        log.print(f"weights: {report.summary()}")
        return
    if cfg.pretrained == "none":
        return
    path = shipped_weights_path(cfg.recipe) if cfg.pretrained == "shipped" else Path(cfg.pretrained)
    label = f"shipped weights {path}" if cfg.pretrained == "shipped" else f"--pretrained {path}"
    if path is None or not path.is_file():
        raise UserError(f"{label}: file not found; give the weights/pretrained.pt of a `mnv3det pretrain` run, or "
                        "--pretrained none to train from scratch")
    try:
        start = load_checkpoint(path)
    except UserError as err:
        raise UserError(f"{label} cannot be used ({err}); train from scratch with --pretrained none, or reinstall "
                        "mnv3det to restore the shipped file") from None
    check_finite(start.model, label)
    report = transfer_detector(model, start.model, start.nc, label, strict=True, recipe=start.recipe)
    log.print(f"start: {report.summary()}; made from {describe_provenance(start.provenance)}", highlight=False)


def build_training_model(cfg: TrainConfig, names: list[str], log: Log) -> nn.Module:
    """Model from the recipe with nc from the data; backbone weights, the start (--weights or the pretrained
    weights, see resolve_pretrained) and freezing applied."""
    from mnv3det.models import build_model, load_backbone_weights

    model = build_model(cfg.recipe, nc=len(names))
    model.names = list(names)
    if cfg.backbone_weights:
        report = load_backbone_weights(model, cfg.backbone_weights)
        log.print(f"backbone weights: {report.summary()}")
    _load_start(model, cfg, log)
    if cfg.freeze:
        n = freeze_rows(model, cfg.freeze)
        log.print(f"freeze: rows 0..{cfg.freeze - 1} frozen ({n} tensors)")
    return model


def model_from_checkpoint(ckpt: Checkpoint, cfg: TrainConfig, source: str) -> nn.Module:
    """The training model of a last.pt: its raw (non-EMA) weights; the EMA is restored with the state."""
    from mnv3det.models import build_model

    assert ckpt.resume is not None, "resume_checkpoint() only returns files with a training state"
    model = build_model(ckpt.recipe, nc=ckpt.nc)
    load_state(model, ckpt.resume.train_model, source, "training weights")
    model.names = list(ckpt.names)
    if cfg.freeze:
        freeze_rows(model, cfg.freeze)
    return model
