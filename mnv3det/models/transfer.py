"""Start a detector from another detector's weights: `transfer_detector(model, ckpt, source, strict=...)`.

Every tensor whose name and shape fit is copied. The Detect output convs are the one place where a class
count change alters shapes: each is (na * (5 + nc), C, 1, 1), laid out per anchor as [x, y, w, h, obj,
class 0 .. class nc-1]. Their box and objectness rows do not depend on the classes, so they are copied, and
only the class rows keep the fresh initialisation (YOLOv5's class prior bias). A pretrained start thus keeps
a head that already knows where objects are; only "which class" is learned from scratch. The anchor-free head
(`AFDetect`) keeps its classes in convs of their own (`cls_pred`): those alone keep the fresh initialisation.

strict=True (shipped or --pretrained weights): the source must have been made for this recipe. A recipe row
that differs, or any tensor other than the class rows that does not fit, is a UserError listing the rows, so
a start is never half-loaded in silence. strict=False (--weights): what fits is loaded and the rest reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mnv3det.errors import UserError


@dataclass
class TransferReport:
    """What `transfer_detector` did."""

    source: str
    loaded: int  # tensors copied whole
    total: int  # tensors in the model
    class_rows: list[str] = field(default_factory=list)  # Detect convs: box/obj rows copied, class rows fresh
    skipped: list[str] = field(default_factory=list)  # tensors left at their initialisation
    classes: tuple[int, int] = (0, 0)  # (source nc, model nc)
    anchor_free: bool = False  # AFDetect: class_rows are its class convs, left whole at their initialisation

    def summary(self) -> str:
        text = f"{self.loaded}/{self.total} tensors loaded from {self.source}"
        if self.class_rows and self.anchor_free:
            text += (f"; {len(self.class_rows)} class-conv tensors (cls_pred) re-initialised "
                     f"({self.classes[0]} -> {self.classes[1]} classes)")
        elif self.class_rows:
            text += (f"; {len(self.class_rows)} Detect tensors loaded for box and objectness, their class rows "
                     f"re-initialised ({self.classes[0]} -> {self.classes[1]} classes)")
        if self.skipped:
            shown = ", ".join(self.skipped[:6]) + (" ..." if len(self.skipped) > 6 else "")
            text += f"; {len(self.skipped)} left at their initialisation (they do not fit): {shown}"
        return text


def _head_prefix(model: nn.Module) -> str:
    return f"layers.{len(model.layers) - 1}."  # type: ignore[attr-defined]


def _detect_prefix(model: nn.Module) -> str:
    return _head_prefix(model) + "m."


def _class_free_rows(theirs: Tensor, own: Tensor, na: int, nc_theirs: int, nc_own: int) -> Tensor | None:
    """`own` with the box/objectness rows of every anchor taken from `theirs`, or None when the shapes are not
    the same Detect conv for another class count."""
    if theirs.shape[0] != na * (5 + nc_theirs) or own.shape[0] != na * (5 + nc_own) or theirs.shape[1:] != own.shape[1:]:
        return None
    out = own.clone().view(na, 5 + nc_own, *own.shape[1:])
    out[:, :5] = theirs.view(na, 5 + nc_theirs, *theirs.shape[1:])[:, :5].to(own.dtype)
    return out.view_as(own)


def recipe_row_differences(theirs: dict[str, Any], own: dict[str, Any]) -> list[str]:
    """Rows (backbone then head, numbered as the graph numbers them) where two recipes build different layers.

    nc and the anchor values do not count: a start may differ in both."""
    in_file = list(theirs.get("backbone", [])) + list(theirs.get("head", []))
    here = list(own.get("backbone", [])) + list(own.get("head", []))
    out = [f"row {i}: {list(h)} here, {list(f)} in the file" for i, (h, f) in enumerate(zip(here, in_file))
           if list(h) != list(f)]
    if len(here) != len(in_file):
        out.append(f"{len(here)} rows here, {len(in_file)} in the file")
    for key in ("depth_multiple", "width_multiple"):
        if theirs.get(key) != own.get(key):
            out.append(f"{key} {own.get(key)} here, {theirs.get(key)} in the file")
    return out


@torch.no_grad()
def transfer_detector(model: nn.Module, state: dict[str, Tensor], nc_theirs: int, source: str, *,
                      strict: bool, recipe: dict[str, Any] | None = None) -> TransferReport:
    """Copy a detector's weights (`state`, made for `nc_theirs` classes) into `model`; see the module docstring.

    recipe: the source's recipe dict; with strict=True its rows must build the same layers as the model's."""
    own = model.state_dict()
    if strict and recipe is not None:
        differences = recipe_row_differences(recipe, model.recipe)  # type: ignore[attr-defined]
        if differences:
            raise UserError(f"{source} was made for another graph than this recipe's ({'; '.join(differences[:4])}"
                            f"{' ...' if len(differences) > 4 else ''}); re-make it for this recipe with "
                            "`mnv3det pretrain`, or train from scratch with --pretrained none")
    detect = model.layers[-1]  # type: ignore[attr-defined]
    prefix = _detect_prefix(model)
    new: dict[str, Tensor] = {}
    class_rows: list[str] = []
    skipped: list[str] = []
    for key, tensor in own.items():
        theirs = state.get(key)
        if theirs is not None and theirs.shape == tensor.shape:
            new[key] = theirs.to(tensor.dtype)
            continue
        if theirs is not None and getattr(detect, "anchor_free", False) and key.startswith(_head_prefix(model) + "cls_pred."):
            new[key] = tensor  # the class prior initialisation; the branch and box convs above were copied whole
            class_rows.append(key)
            continue
        if theirs is not None and key.startswith(prefix):
            rows = _class_free_rows(theirs, tensor, detect.na, nc_theirs, detect.nc)
            if rows is not None:
                new[key] = rows
                class_rows.append(key)
                continue
        skipped.append(key)
    if strict and skipped:
        raise UserError(f"{source} does not fit this recipe: {len(skipped)} tensors are missing or of another shape "
                        f"(e.g. {', '.join(skipped[:3])}); re-make it for this recipe with `mnv3det pretrain`, or "
                        "train from scratch with --pretrained none")
    if not new:
        raise UserError(f"{source}: no tensor fits this model; is it the same architecture?")
    model.load_state_dict(new, strict=False)
    return TransferReport(source, len(new) - len(class_rows), len(own), class_rows, skipped, (nc_theirs, detect.nc),
                          anchor_free=bool(getattr(detect, "anchor_free", False)))


__all__ = ["TransferReport", "recipe_row_differences", "transfer_detector"]
