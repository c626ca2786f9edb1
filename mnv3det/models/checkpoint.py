"""A checkpoint's model: `build_checkpoint_model` rebuilds it from a `core.checkpoint.Checkpoint`, `load_model` from a
.pt file. Here, not in core: core sits below models (core/checkpoint.py reads and writes the file's dict layout
only)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mnv3det.core.checkpoint import WHAT_TO_DO, Checkpoint, check_finite, load_checkpoint, load_state
from mnv3det.errors import UserError
from mnv3det.models.model import build_model


def build_checkpoint_model(ckpt: Checkpoint, source: str) -> nn.Module:
    """The model a checkpoint describes, with its weights (`ckpt.model`, all finite) and class names; train mode."""
    try:
        model = build_model(ckpt.recipe, nc=ckpt.nc)
    except (UserError, KeyError, TypeError, ValueError, IndexError) as err:  # a damaged recipe dict
        raise UserError(f"{source}: the recipe stored in it does not build ({type(err).__name__}: {err}); "
                        f"{WHAT_TO_DO}") from None
    load_state(model, ckpt.model, source)
    check_finite(ckpt.model, source)
    model.names = list(ckpt.names)
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu", fuse: bool = False) -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model stored in a checkpoint, in eval mode, on `device`; returns (model, checkpoint)."""
    ckpt = load_checkpoint(path)
    model = build_checkpoint_model(ckpt, str(path)).eval()
    if fuse:
        model.fuse()
    return model.to(device), ckpt
