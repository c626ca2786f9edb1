"""Checkpoints that describe themselves (nanoGPT-style): everything needed to rebuild, resume or run.

Layout of a checkpoint dict (every value is a tensor, number, string, list, tuple, dict or None, so
`torch.load(weights_only=True)` can read it and a checkpoint cannot run code on load):

    format        "mnv3det/1"
    recipe        the model graph as a plain dict (the yaml after nc/anchors were resolved)
    nc, names     number of classes, class names (list[str])
    model         state_dict of the weights to use (the EMA weights during training), float32
    epoch         last finished epoch (0-based); -1 for a checkpoint that holds weights only
    best_fitness  float or None
    optimizer, scaler, ema_updates, rng   training state for --resume (None in stripped files)
    config        the run's final config as a plain dict
    data          extra info about the data (e.g. category ids for mapping back to COCO)

Writes are atomic: a temporary file in the same folder, fsync, then os.replace, so a run killed
mid-save never leaves a truncated last.pt behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from mnv3det.errors import UserError

FORMAT = "mnv3det/1"


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Path:
    """Atomically write `ckpt` to `path` (creating parent folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"format": FORMAT, **ckpt}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (weights_only=True); clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the path of a .pt file written by `mnv3det train`")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle errors, truncated files, foreign formats
        # torch's own message advises weights_only=False, which would run code from the file: not shown.
        raise UserError(
            f"could not read checkpoint {path} ({type(err).__name__}): it is truncated, not a PyTorch file, or holds "
            "objects other than tensors and plain values (e.g. an Ultralytics .pt). Use a .pt written by `mnv3det train`."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(
            f"{path} is not an mnv3det checkpoint (no 'format: {FORMAT}' entry). "
            "Ultralytics/YOLOv5 .pt files cannot be read safely; train with mnv3det or load backbone weights "
            "with --backbone-weights."
        )
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu", fuse: bool = False):
    """Rebuild the model stored in a checkpoint, in eval mode, on `device`.

    Returns (model, ckpt) where ckpt is the checkpoint dict (names, nc, config, ...).
    """
    from mnv3det.models import build_model  # local import: models import nothing from train, evaluate or deploy

    ckpt = load_checkpoint(path)
    model = build_model(ckpt["recipe"], nc=ckpt["nc"])
    model.load_state_dict(ckpt["model"])
    model.names = list(ckpt.get("names") or [str(i) for i in range(ckpt["nc"])])
    model.eval()
    if fuse:
        model.fuse()
    return model.to(device), ckpt


def strip_for_inference(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A copy without optimizer/scaler/rng state (for best.pt shipped to users)."""
    return {**ckpt, "optimizer": None, "scaler": None, "rng": None}
