"""Loading torchvision ImageNet backbones (MobileNetV3 Small/Large, MobileNetV2) into a recipe's backbone rows.

The seed modules mirror torchvision's layout, so the mapping is row to row:
`features.{i}.<rest>` (torchvision) -> `layers.{i}.<rest>` (ours) for every leading MobileNet row i.
torchvision's last feature (the 1x1 conv to 576/960/1280 channels) and the classifier are not used.
Nothing is ever downloaded: `imagenet` only works when torchvision's weights are already in the local
torch hub cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mnv3det.errors import UserError
from mnv3det.models.backbone_source import check_backbone_source, is_imagenet

# The rows a torchvision backbone fills, recognised by the stem module and the number of blocks.
_ARCHITECTURES = {
    ("conv_bn_hswish", 11): "mobilenet_v3_small",
    ("conv_bn_hswish", 15): "mobilenet_v3_large",
    ("conv_bn_relu6", 17): "mobilenet_v2",
}
_BACKBONE_TYPES = ("conv_bn_hswish", "MobileNet_Block", "conv_bn_relu6", "InvertedResidual")


@dataclass
class BackboneLoadReport:
    """What `load_backbone_weights` did."""

    source: str
    architecture: str  # e.g. "mobilenet_v3_small"
    rows: int  # backbone rows filled (0..rows-1)
    mapped: int  # tensors copied (weights, biases, BN statistics)
    unused: list[str] = field(default_factory=list)  # source keys not needed (last conv, classifier)

    def summary(self) -> str:
        return (
            f"loaded {self.architecture} weights from {self.source}: {self.mapped} tensors into rows "
            f"0..{self.rows - 1}; {len(self.unused)} source tensors unused (final conv/classifier)"
        )


def backbone_rows(model: nn.Module) -> tuple[int, str]:
    """(number of leading MobileNet rows, torchvision architecture name) of a built DetectionModel."""
    layers = model.layers  # type: ignore[attr-defined]
    count = 0
    while count < len(layers) and layers[count].type in _BACKBONE_TYPES:
        count += 1
    if count == 0:
        raise UserError(
            "this recipe has no MobileNet backbone rows (e.g. yolov5n/yolov5s), so --backbone-weights does not "
            "apply; use it with mnv3-small, mnv3-large or mnv2"
        )
    return count, _ARCHITECTURES.get((layers[0].type, count - 1), "custom MobileNet backbone")


def _source_architecture(features: dict[str, Tensor]) -> str:
    indices = {int(k.split(".")[1]) for k in features if k.split(".")[1].isdigit()}
    stem = features.get("features.0.0.weight")
    key = (int(stem.shape[0]) if stem is not None else -1, len(indices))
    return {(16, 13): "mobilenet_v3_small", (16, 17): "mobilenet_v3_large", (32, 19): "mobilenet_v2"}.get(
        key, "an unknown network"
    )


def _imagenet_cache_file(architecture: str) -> tuple[Path, str]:
    """(where torchvision would cache the DEFAULT ImageNet weights of `architecture`, their URL); no download."""
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(architecture).DEFAULT
    except ValueError:
        raise UserError(f"torchvision has no ImageNet weights for {architecture}; pass a state_dict file") from None
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1], weights.url


def _read_state_dict(source: str | Path, architecture: str) -> tuple[dict[str, Tensor], str]:
    if str(source).lower() == "imagenet":
        path, url = _imagenet_cache_file(architecture)
        if not path.is_file():
            raise UserError(
                f"--backbone-weights imagenet: {architecture} ImageNet weights are not in the local cache ({path}). "
                f"mnv3det never downloads; fetch {url} on a machine with network, then pass its path."
            )
    else:
        check_backbone_source(source)
        path = Path(source)
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files
        raise UserError(f"--backbone-weights {path}: could not read it as a PyTorch state_dict ({type(err).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"--backbone-weights {path}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, Tensor)}
    return state, str(path)


@torch.no_grad()
def load_backbone_weights(model: nn.Module, source: str | Path) -> BackboneLoadReport:
    """Copy a torchvision MobileNetV3/V2 ImageNet state_dict into the model's backbone rows.

    `source` is a state_dict file (as `torch.save(tv_model.state_dict(), path)` writes) or `imagenet`
    (torchvision's cached DEFAULT weights, never downloaded). Every tensor of the backbone rows must be
    found with the same shape, otherwise nothing is loaded and a UserError says what does not fit.
    """
    rows, architecture = backbone_rows(model)
    state, label = _read_state_dict(source, architecture)
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise UserError(
            f"--backbone-weights {label}: no 'features.*' tensors; expected the state_dict of a torchvision "
            "mobilenet_v3_small / mobilenet_v3_large / mobilenet_v2"
        )
    theirs = _source_architecture(features)
    own = model.state_dict()
    mapped: dict[str, Tensor] = {}
    for key, tensor in own.items():
        parts = key.split(".")
        if parts[0] != "layers" or int(parts[1]) >= rows:
            continue
        src = "features." + ".".join(parts[1:])
        if src not in features or features[src].shape != tensor.shape:
            found = tuple(features[src].shape) if src in features else "missing"
            raise UserError(
                f"--backbone-weights {label} does not fit this recipe's backbone ({architecture}, rows 0..{rows - 1}): "
                f"{key} needs {tuple(tensor.shape)} from {src}, which is {found}. The file looks like {theirs}; "
                f"pick the recipe that matches it (mnv3-small, mnv3-large or mnv2)."
            )
        mapped[key] = features[src]
    model.load_state_dict(mapped, strict=False)
    used = {"features." + ".".join(k.split(".")[1:]) for k in mapped}
    unused = sorted(k for k in state if k not in used)
    return BackboneLoadReport(label, architecture, rows, len(mapped), unused)
