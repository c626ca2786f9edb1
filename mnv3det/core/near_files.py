"""A mistyped model path gets the names beside it that look like it: `bset.pt` -> "did you mean best.pt?".

Used by every error for a missing `--weights` (checkpoints and exports), so the hint reads the same everywhere.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from mnv3det.errors import UserError, option

MODEL_SUFFIXES = (".pt", ".onnx", ".torchscript")
MODEL_FOLDERS = ("_openvino_model", "_ncnn_model")


def near_models(path: str | Path, limit: int = 2, cutoff: float = 0.6) -> list[Path]:
    """Model files and exported folders in `path`'s folder whose names are closest to its name (difflib)."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        return []
    names = [p.name for p in folder.iterdir() if p.suffix in MODEL_SUFFIXES or p.name.endswith(MODEL_FOLDERS)]
    return [folder / name for name in difflib.get_close_matches(path.name, names, n=limit, cutoff=cutoff)]


def did_you_mean(path: str | Path) -> str:
    """' (did you mean runs/exp/weights/best.pt?)', or '' when nothing beside `path` looks like it."""
    near = near_models(path)
    return f" (did you mean {' or '.join(str(p) for p in near)}?)" if near else ""


def missing_model(path: str | Path) -> UserError:
    """The one error for a `--weights` (a checkpoint or an export) that is not there (val, detect, the API)."""
    exported = ", ".join(s for s in MODEL_SUFFIXES if s != ".pt")
    return UserError(
        f"{option('weights', str(path))} does not exist{did_you_mean(path)}; pass a .pt checkpoint, an exported file "
        f"({exported}) or an exported *_openvino_model / *_ncnn_model folder"
    )


def missing_checkpoint(path: str | Path) -> UserError:
    """The one error for a .pt checkpoint that is not there (export, benchmark, train --weights)."""
    return UserError(f"checkpoint {path} does not exist{did_you_mean(path)}; pass the path of a .pt file written "
                     "by `mnv3det train`")
