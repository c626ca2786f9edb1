"""`DetectionModel` (a yaml graph ending in Detect) and `build_model`, the entry point for every other module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mnv3det.errors import UserError
from mnv3det.models.af_head import AFDetect
from mnv3det.models.detect import Detect
from mnv3det.models.graph import build_layers, parse_rows, run_rows, trace
from mnv3det.models.layers import fuse_conv_bn
from mnv3det.models.recipes import load_recipe


class DetectionModel(nn.Module):
    """A detector built from a recipe dict.

    layers: nn.ModuleList in yaml row order (each with .i, .f, .type); detect = layers[-1].
    Train mode: model(x (B, 3, H, W)) -> list of nl raw maps (B, na, H_l, W_l, 5 + nc).
    Eval mode:  model(x) -> (B, N, 5 + nc) decoded: cx, cy, w, h in input pixels, obj, class probs.
    recipe: the resolved recipe dict (nc and pixel anchors filled in); build_model(model.recipe) rebuilds it.
    """

    def __init__(self, recipe: dict[str, Any], label: str = "<recipe dict>") -> None:
        super().__init__()
        rows = parse_rows(recipe, label)
        nc, anchors = _check_header(recipe, label, anchor_free=rows[-1].module == "AFDetect")
        self.layers = build_layers(
            rows,
            nc,
            anchors,
            float(recipe.get("depth_multiple", 1.0)),
            float(recipe.get("width_multiple", 1.0)),
            label,
        )
        _, strides = trace(self.layers, label)  # also checks the wiring, row by row
        self.detect.set_strides(strides)
        self.nc = nc
        self.recipe = {**recipe, "nc": nc, "anchors": anchors} if anchors else {**recipe, "nc": nc}
        names = recipe.get("names")
        self.names: list[str] = [str(n) for n in names] if isinstance(names, list) and len(names) == nc else [
            str(i) for i in range(nc)
        ]

    @property
    def detect(self) -> Detect | AFDetect:
        """The head (the last row): YOLOv5's `Detect` or the anchor-free `AFDetect` (`anchor_free` True)."""
        return self.layers[-1]  # type: ignore[return-value]

    @property
    def anchor_free(self) -> bool:
        return bool(getattr(self.detect, "anchor_free", False))

    @property
    def stride(self) -> Tensor:
        """Strides of the Detect levels, e.g. tensor([8., 16., 32.])."""
        return self.detect.stride

    def forward(self, x: Tensor) -> list[Tensor] | Tensor:
        return run_rows(self.layers, x)[-1]

    def fuse(self) -> "DetectionModel":
        """Fold every BatchNorm into its conv, in place (for inference; outputs equal within float error)."""
        fuse_conv_bn(self)
        return self

    def set_anchors(self, pixel_anchors: Tensor) -> None:
        """Replace the anchors (nl, na, 2) given in pixels; updates detect.anchors and recipe['anchors']."""
        self.detect.set_pixel_anchors(pixel_anchors)
        flat = pixel_anchors.detach().cpu().reshape(self.detect.nl, -1)
        self.recipe["anchors"] = [[round(float(v), 3) for v in level] for level in flat]


def _check_header(recipe: dict[str, Any], label: str, anchor_free: bool = False) -> tuple[int, list[list[float]]]:
    """(nc, pixel anchors); an anchor-free recipe has no anchors ([] returned, and a recipe that lists some is told
    they are unused)."""
    nc = recipe.get("nc")
    if not isinstance(nc, int) or isinstance(nc, bool) or nc < 1:
        raise UserError(f"recipe {label}: nc must be a positive integer (number of classes), got {nc!r}")
    anchors = recipe.get("anchors")
    if anchor_free:
        if anchors is not None:
            raise UserError(f"recipe {label}: its head is AFDetect (anchor-free), which uses no anchors; "
                            "remove the 'anchors' key")
        return nc, []
    ok = (
        isinstance(anchors, list)
        and anchors
        and all(isinstance(a, list) and a and len(a) % 2 == 0 and len(a) == len(anchors[0]) for a in anchors)
        and all(isinstance(v, (int, float)) and v > 0 for a in anchors for v in a)
    )
    if not ok:
        raise UserError(
            f"recipe {label}: anchors must be a list with one list per Detect level of the same even length "
            f"(w, h pairs in pixels), e.g. [[10,13, 16,30, 33,23], ...]; got {anchors!r}"
        )
    return nc, [[float(v) for v in a] for a in anchors]


def build_model(recipe: str | Path | dict[str, Any], nc: int | None = None) -> DetectionModel:
    """Build a detector from a recipe name (`mnv3-small`, `mnv3-large`, `mnv2`, `yolov5n`, `yolov5s`),
    a yaml path or a recipe dict; `nc` overrides the recipe's number of classes.

    Deterministic given torch.manual_seed; the model is returned in train mode with freshly
    initialised BatchNorm statistics.
    """
    data, label = load_recipe(recipe)
    if nc is not None:
        if not isinstance(nc, int) or nc < 1:
            raise UserError(f"nc must be a positive integer (number of classes), got {nc!r}")
        if data.get("nc") != nc:
            data["nc"] = nc
            data.pop("names", None)  # names of the recipe's own classes no longer apply
    return DetectionModel(data, label)
