"""Loading torchvision ImageNet backbones (MobileNetV3 Small/Large, MobileNetV2) into a recipe's backbone rows.

The seed modules mirror torchvision's layout, so the mapping is row to row:
`features.{i}.<rest>` (torchvision) -> `layers.{i}.<rest>` (ours) for every leading MobileNet row i.
torchvision's last feature (the 1x1 conv to 576/960/1280 channels) and the classifier are not used.
`imagenet` takes torchvision's DEFAULT weights of the architecture through its weights API
(`MobileNet_V3_Small_Weights.DEFAULT`, ...): the file in torch's hub cache (`torch.hub.get_dir()/checkpoints`,
named as in the weights' URL), downloaded there first when it is missing and the machine is online. Offline, one
line names the file and the folder to put it in. Either way the file then loads as a local file does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mnv3det.errors import UserError, option
from mnv3det.models.backbone_source import IMAGENET, check_backbone_source, is_imagenet

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


def _imagenet_weights(architecture: str) -> Any:
    """torchvision's DEFAULT ImageNet weights entry (a WeightsEnum member) of `architecture`."""
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(architecture).DEFAULT
    except ValueError:
        raise UserError(f"torchvision has no ImageNet weights for {architecture}; pass a state_dict file") from None


def imagenet_cache_file(architecture: str) -> Path:
    """Where torchvision keeps the DEFAULT ImageNet weights of `architecture`: torch's hub cache, the file named as
    in the weights' URL (e.g. ~/.cache/torch/hub/checkpoints/mobilenet_v3_small-047dcff4.pth; $TORCH_HOME moves it)."""
    url = _imagenet_weights(architecture).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def download_imagenet(weights: Any) -> None:
    """Fetch `weights` into torch's hub cache with torchvision's own API (hash checked; progress on stderr)."""
    weights.get_state_dict(progress=True, check_hash=True)


def _imagenet_file(architecture: str) -> Path:
    """The cached ImageNet file of `architecture`, downloaded first when missing; offline, one line naming the file
    and the folder to put it in."""
    path = imagenet_cache_file(architecture)
    if path.is_file():
        return path
    weights = _imagenet_weights(architecture)
    try:
        download_imagenet(weights)
    except Exception as err:  # offline (URLError), a proxy, a full disk, a hash mismatch: all fixed the same way
        from mnv3det.errors import error_line

        raise UserError(
            f"{option('backbone_weights', IMAGENET)}: could not download {architecture}'s ImageNet weights "
            f"({error_line(err, limit=120)}); put {path.name} (from {weights.url}) in {path.parent} and run again"
        ) from None
    if not path.is_file():  # torch.hub names the file from the URL; anything else is a bug worth a clear line
        raise UserError(f"{option('backbone_weights', IMAGENET)}: the download did not leave {path}; put the file "
                        "there and run again")
    return path


def _read_state_dict(source: str | Path, architecture: str) -> tuple[dict[str, Tensor], str]:
    if is_imagenet(source):
        path = _imagenet_file(architecture)
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
    (torchvision's DEFAULT weights from torch's hub cache, downloaded there when missing and online). Every tensor
    of the backbone rows must be found with the same shape, otherwise nothing is loaded and a UserError says what
    does not fit.
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
