"""The yaml graph builder: rows -> modules, with a registry (never `eval`) and clear wiring errors.

Recipe format (YOLOv5's, plus optional row names):

    nc: 80                      number of classes
    depth_multiple: 0.33        scales the repeat count of YOLOv5 parts (C3)
    width_multiple: 0.25        scales the channels of YOLOv5 parts (Conv, C3, SPPF, Bottleneck)
    anchors: [[10,13, 16,30, 33,23], ...]   pixels, one list per Detect level
    backbone: [[from, number, module, args, (name)], ...]
    head:     [[from, number, module, args, (name)], ...]

`from` is -1 (the previous row), an absolute row index, a negative offset, a row *name*, or a list of
these. A row may carry a fifth item, a name such as `P3`, so one head can serve backbones whose taps
sit at different rows. MobileNet seed rows are never scaled by the multipliers: they keep
torchvision's exact widths so ImageNet weights load.

In args, the strings `nc`, `anchors` and `None` stand for the recipe's nc, its anchors and None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from mnv3det.errors import UserError, error_line
from mnv3det.models import layers as L
from mnv3det.models.af_head import AFDetect
from mnv3det.models.detect import Detect
from mnv3det.models.light_head import CSPDS, DSConv

# Families decide how a row's channels and repeats are computed.
YOLO_PARTS = ("Conv", "Bottleneck", "C3", "SPPF", "DSConv", "CSPDS")
REPEATED_PARTS = ("C3", "CSPDS")  # their repeat count is an argument (scaled by depth_multiple)
SEED_BLOCKS = ("conv_bn_hswish", "MobileNet_Block", "DWSConv", "conv_bn_relu6", "InvertedResidual")
SAME_CHANNELS = ("h_sigmoid", "h_swish", "SELayer", "nn.Upsample")
HEADS = ("Detect", "AFDetect")  # the last row: YOLOv5's anchor head or the anchor-free head

REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "h_sigmoid": L.h_sigmoid,
    "h_swish": L.h_swish,
    "SELayer": L.SELayer,
    "conv_bn_hswish": L.conv_bn_hswish,
    "MobileNet_Block": L.MobileNet_Block,
    "DWSConv": L.DWSConv,
    "conv_bn_relu6": L.conv_bn_relu6,
    "InvertedResidual": L.InvertedResidual,
    "Conv": L.Conv,
    "Bottleneck": L.Bottleneck,
    "C3": L.C3,
    "SPPF": L.SPPF,
    "DSConv": DSConv,
    "CSPDS": CSPDS,
    "Concat": L.Concat,
    "nn.Upsample": nn.Upsample,
    "Detect": Detect,
    "AFDetect": AFDetect,
}

# Size of the dummy input that measures shapes and strides (YOLOv5 uses the same).
TRACE_SIZE = 256


@dataclass(frozen=True)
class Row:
    """One parsed yaml row. `source` holds absolute row indices (-1 = the input image, row 0 only)."""

    index: int
    source: int | list[int]
    number: int
    module: str
    args: list[Any]
    name: str | None

    @property
    def inputs(self) -> list[int]:
        return self.source if isinstance(self.source, list) else [self.source]

    def describe(self) -> str:
        return f"row {self.index} ({self.module} {self.args}{', ' + self.name if self.name else ''})"


def yolo_width(channels: float, width_multiple: float) -> int:
    """YOLOv5's channel rounding: ceil(channels * width_multiple / 8) * 8."""
    return math.ceil(channels * width_multiple / 8) * 8


def parse_rows(recipe: dict[str, Any], label: str) -> list[Row]:
    """Check the recipe's rows and resolve `from` (ints, offsets, names) to absolute indices."""
    for key in ("backbone", "head"):
        if not isinstance(recipe.get(key), list):
            raise UserError(f"recipe {label}: missing or malformed '{key}' (a list of [from, number, module, args] rows)")
    raw_rows = recipe["backbone"] + recipe["head"]
    names: dict[str, int] = {}
    rows: list[Row] = []
    for i, raw in enumerate(raw_rows):
        if not isinstance(raw, list) or len(raw) not in (4, 5):
            raise UserError(
                f"recipe {label}: row {i} is {raw!r}; each row must be [from, number, module, args] "
                "with an optional fifth item, the row's name"
            )
        source, number, module, args = raw[:4]
        name = raw[4] if len(raw) == 5 else None
        if module not in REGISTRY:
            raise UserError(
                f"recipe {label}: row {i} uses unknown module {module!r}; known modules: {', '.join(REGISTRY)}"
            )
        if not isinstance(number, int) or number < 1:
            raise UserError(f"recipe {label}: row {i} ({module}) has number {number!r}; it must be an integer >= 1")
        if not isinstance(args, list):
            raise UserError(f"recipe {label}: row {i} ({module}) args must be a list, got {args!r}")
        sources = source if isinstance(source, list) else [source]
        resolved = [_resolve_source(s, i, names, module, label) for s in sources]
        if name is not None:  # registered after resolving, so a row cannot read itself
            if not isinstance(name, str) or name in names:
                raise UserError(f"recipe {label}: row {i} name {name!r} must be a string used by one row only")
            names[name] = i
        if module == "Concat" or module in HEADS:
            src: int | list[int] = resolved
        elif len(resolved) != 1:
            raise UserError(f"recipe {label}: row {i} ({module}) reads {source!r}; {module} takes exactly one input")
        else:
            src = resolved[0]
        rows.append(Row(i, src, number, module, args, name))
    detects = [r.index for r in rows if r.module in HEADS]
    if detects != [len(rows) - 1]:
        raise UserError(f"recipe {label}: the last row, and only the last row, must be {' or '.join(HEADS)} (the "
                        f"head; found one at rows {detects})")
    return rows


def _resolve_source(source: Any, i: int, names: dict[str, int], module: str, label: str) -> int:
    if isinstance(source, str):
        if source not in names:
            raise UserError(
                f"recipe {label}: row {i} ({module}) reads {source!r}, which no earlier row is named; "
                f"named rows so far: {', '.join(names) or 'none'}"
            )
        return names[source]
    if not isinstance(source, int) or isinstance(source, bool):
        raise UserError(f"recipe {label}: row {i} ({module}) has from {source!r}; use an int, a row name or a list")
    if i == 0:
        if source != -1:
            raise UserError(f"recipe {label}: row 0 ({module}) reads from {source}; the first row must read -1, the image")
        return -1  # the input image
    absolute = i + source if source < 0 else source
    if not 0 <= absolute < i:
        raise UserError(
            f"recipe {label}: row {i} ({module}) reads from {source}, which is out of range: row {i} may only "
            f"read rows 0..{i - 1} (or -1..-{i} relative). Fix the 'from' index."
        )
    return absolute


def _substitute(args: list[Any], symbols: dict[str, Any]) -> list[Any]:
    """Replace the symbolic strings nc / anchors / None (what YOLOv5 eval()s) by their values."""
    return [symbols[a] if isinstance(a, str) and a in symbols else a for a in args]


def build_layers(
    rows: list[Row], nc: int, anchors: list[list[float]], depth_multiple: float, width_multiple: float, label: str
) -> nn.ModuleList:
    """Instantiate every row; each module gets `.i`, `.f` (absolute source) and `.type` (module name)."""
    symbols = {"nc": nc, "anchors": anchors, "None": None}
    channels: list[int] = []  # output channels per row
    modules = nn.ModuleList()
    for row in rows:
        args = _substitute(row.args, symbols)
        c_in = [3 if j == -1 else channels[j] for j in row.inputs]
        cls = REGISTRY[row.module]
        number = row.number
        try:
            if row.module in YOLO_PARTS:
                number = max(round(number * depth_multiple), 1) if number > 1 else number
                c_out = yolo_width(args[0], width_multiple) if args else c_in[0]
                args = [c_in[0], c_out, *args[1:]]
                if row.module in REPEATED_PARTS:
                    args.insert(2, number)
                    number = 1
                if number != 1:
                    raise UserError(f"recipe {label}: {row.describe()} has number {row.number}; only {'/'.join(REPEATED_PARTS)} repeat")
                module = cls(*args)
            elif row.module in SEED_BLOCKS:
                if number != 1:
                    raise UserError(
                        f"recipe {label}: {row.describe()} has number {row.number}; write one row per "
                        "MobileNet block (as torchvision's table) so pretrained weights map row to row"
                    )
                c_out = int(args[0])
                module = cls(c_in[0], *args)
            elif row.module == "Concat":
                c_out = sum(c_in)
                module = cls(*args)
            elif row.module == "Detect":
                if not args or args[0] != nc:
                    raise UserError(f"recipe {label}: {row.describe()} must take [nc, anchors] so its classes follow nc")
                c_out = 0
                module = cls(*args, c_in)
            elif row.module == "AFDetect":
                if not args or args[0] != nc:
                    raise UserError(f"recipe {label}: {row.describe()} must take [nc, bins, convs, kernel, act] so its "
                                    "classes follow nc")
                c_out = 0
                module = cls(*args, ch=c_in)
            elif row.module == "SELayer":
                c_out = c_in[0]
                module = cls(c_in[0], *args)
            else:  # activations, nn.Upsample
                c_out = c_in[0]
                module = cls(*args)
        except (TypeError, ValueError, IndexError) as err:
            raise UserError(
                f"recipe {label}: {row.describe()} could not be built from args {row.args}: {err}. "
                f"Check the args against {row.module}'s documented yaml args."
            ) from None
        module.i, module.f, module.type = row.index, row.source, row.module
        modules.append(module)
        channels.append(c_out)
    return modules


def run_rows(modules: nn.ModuleList, x: Tensor) -> list[Any]:
    """Forward through every row; returns each row's output (the last is Detect's)."""
    outputs: list[Any] = []
    for m in modules:
        outputs.append(m(gather_inputs(m.f, x, outputs)))
    return outputs


def gather_inputs(source: int | list[int], x: Tensor, outputs: list[Any]) -> Any:
    """A row's input: the image (-1), one earlier row's output, or a list of them."""
    if isinstance(source, list):
        return [x if j == -1 else outputs[j] for j in source]
    return x if source == -1 else outputs[source]


def _rows_by_stride(outputs: list[Any], size: int) -> str:
    """'/2: 0, /4: 1, /8: 2-3, ...' for the rows traced so far (runs of consecutive rows collapsed)."""
    groups: dict[int, list[int]] = {}
    for j, t in enumerate(outputs):
        groups.setdefault(size // t.shape[-1], []).append(j)
    parts = []
    for stride, rows in sorted(groups.items()):
        runs, start = [], rows[0]
        for a, b in zip(rows, rows[1:] + [None]):
            if b != a + 1:
                runs.append(str(start) if start == a else f"{start}-{a}")
                start = b
        parts.append(f"/{stride}: rows {', '.join(runs)}")
    return "; ".join(parts)


def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else "?"


@torch.no_grad()
def trace(modules: nn.ModuleList, label: str, size: int = TRACE_SIZE) -> tuple[list[Any], Tensor]:
    """One dummy forward (eval mode, so BatchNorm statistics stay untouched) that measures shapes.

    Returns (output shape per row, Detect strides). A wrongly wired graph raises a UserError that
    names the row, its module, the rows it reads and their shapes.
    """
    was_training = modules.training
    modules.eval()
    try:
        x = torch.zeros(1, 3, size, size)
        outputs: list[Any] = []
        shapes: list[Any] = []  # a tuple per row; Detect's entry is a list of its raw map shapes
        for m in modules:
            inp = gather_inputs(m.f, x, outputs)
            srcs = m.f if isinstance(m.f, list) else [m.f]
            ins = inp if isinstance(inp, list) else [inp]
            reads = ", ".join(
                f"row {j} {_shape(t)} (/{size // t.shape[-1] if t.shape[-1] else '?'})" if j >= 0 else f"input {_shape(t)}"
                for j, t in zip(srcs, ins)
            )
            where = f"recipe {label}: row {m.i} ({m.type}) reads {reads}"
            if m.type == "Concat" and len({tuple(t.shape[2:]) for t in ins}) > 1:
                raise UserError(
                    f"{where}; Concat needs inputs of the same height and width (the same stride). "
                    f"Rows by stride so far: {_rows_by_stride(outputs, size)}. Point its 'from' at rows of equal "
                    "stride, e.g. name the backbone taps P3/P4/P5 and read those names."
                )
            if m.type in HEADS:
                raw = m.raw(ins)
                strides = torch.tensor([size / r.shape[2] for r in raw])
                if not bool((strides[1:] > strides[:-1]).all()):
                    raise UserError(
                        f"{where}; Detect strides {strides.tolist()} are not increasing. List its inputs from the "
                        "finest level to the coarsest (P3/8, P4/16, P5/32), matching the anchors' order."
                    )
                shapes.append([tuple(r.shape) for r in raw])  # type: ignore[arg-type]
                return shapes, strides
            try:
                out = m(inp)
            except RuntimeError as err:
                raise UserError(f"{where} and fails: {error_line(err)}. Check this row's 'from' and args.") from None
            outputs.append(out)
            shapes.append(tuple(out.shape))
        raise UserError(f"recipe {label}: no Detect row")  # parse_rows already guarantees one
    finally:
        modules.train(was_training)
