"""What `--backbone-weights` may name, checked without torch: a state_dict file, or `imagenet` (torchvision's own
weights, through its weights API; models/pretrained.py fetches them). The command line asks this before it imports
torch, so a mistyped file name is answered at once; `load_backbone_weights` asks the same."""

from __future__ import annotations

from pathlib import Path

from mnv3det.errors import UserError, option

IMAGENET = "imagenet"


def is_imagenet(source: str | Path) -> bool:
    """True when `source` asks for torchvision's ImageNet weights rather than a file."""
    return str(source).lower() == IMAGENET


def check_backbone_source(source: str | Path) -> None:
    """A UserError when `source` is neither `imagenet` nor an existing file."""
    if not is_imagenet(source) and not Path(source).is_file():
        raise UserError(f"{option('backbone_weights', str(source))}: file not found; pass a torchvision state_dict "
                        f"(.pth) file, or {IMAGENET} for torchvision's ImageNet weights")
