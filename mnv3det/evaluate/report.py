"""How an EvalResult is shown: a rich per-class table, the COCO numbers, and a plain-text summary to paste."""

from __future__ import annotations

import math
from typing import Sequence

from rich.console import Console
from rich.table import Table

from mnv3det.data.report import cell  # a class name is user text: no markup, bounded
from mnv3det.core.console import make_console
from mnv3det.evaluate.evaluator import EvalResult

MAX_CLASS_ROWS = 100  # COCO's 80 classes fit; beyond that the table is cut with a note


def _fmt(v: float, digits: int = 3) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.{digits}f}"


def eval_table(result: EvalResult, names: Sequence[str] | None = None) -> Table:
    """Per-class table with an `all` row: images, instances, P, R, AP50, AP50-95."""
    src = "pycocotools" if result.source == "pycocotools" else "fast mAP"
    table = Table(title=f"Validation ({src})", title_justify="left")
    for col in ("class", "images", "instances", "P", "R", "mAP50", "mAP50-95"):
        table.add_column(col, justify="left" if col == "class" else "right")
    table.add_row("all", str(result.images), str(result.instances), _fmt(result.precision), _fmt(result.recall),
                  _fmt(result.map50), _fmt(result.map), style="bold")
    shown = [(i, c) for i, c in enumerate(result.per_class) if c.instances > 0]  # classes absent from the split are left out
    for i, c in shown[:MAX_CLASS_ROWS]:
        name = names[i] if names is not None else c.name
        table.add_row(cell(name), str(c.images), str(c.instances), _fmt(c.precision), _fmt(c.recall),
                      _fmt(c.ap50), _fmt(c.ap))
    if len(shown) > MAX_CLASS_ROWS:
        table.caption = f"{len(shown) - MAX_CLASS_ROWS} more classes not shown (see --save-json / as_dict())"
    return table


def coco_table(result: EvalResult) -> Table:
    """COCOeval's twelve-line summary as one small table (AP and AR by IoU, size and detections)."""
    table = Table(title="COCO metrics", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("AP  @[.50:.95]", result.map), ("AP  @.50", result.map50), ("AP  @.75", result.map75),
        ("AP  small", result.ap_small), ("AP  medium", result.ap_medium), ("AP  large", result.ap_large),
        ("AR  max 1", result.ar1), ("AR  max 10", result.ar10), ("AR  max 100", result.ar100),
    ]
    for label, value in rows:
        table.add_row(label, _fmt(value))
    return table


def print_eval(result: EvalResult, names: Sequence[str] | None = None, console: Console | None = None) -> None:
    """Print the per-class table, the COCO metrics (when computed) and the speed line."""
    console = console or make_console()
    console.print(eval_table(result, names))
    if result.source == "pycocotools":
        console.print(coco_table(result))
    s = result.speed_ms
    console.print(
        f"Speed: {s['preprocess']:.1f} ms preprocess, {s['inference']:.1f} ms inference, "
        f"{s['nms']:.1f} ms NMS per image"
    )


def summary_text(result: EvalResult, title: str = "") -> str:
    """A plain-text block a user can paste into a report (fixed-width, no colour)."""
    lines = [f"mnv3det val{': ' + title if title else ''}"]
    lines.append(
        f"images {result.images}  instances {result.instances}  detections {result.detections}  "
        f"metrics: {result.source}"
    )
    lines.append(
        f"P {_fmt(result.precision)}  R {_fmt(result.recall)}  mAP50 {_fmt(result.map50)}  "
        f"mAP50-95 {_fmt(result.map)}  mAP75 {_fmt(result.map75)}  fitness {_fmt(result.fitness)}"
    )
    if result.source == "pycocotools":
        lines.append(
            f"AP small {_fmt(result.ap_small)}  medium {_fmt(result.ap_medium)}  large {_fmt(result.ap_large)}  "
            f"AR1 {_fmt(result.ar1)}  AR10 {_fmt(result.ar10)}  AR100 {_fmt(result.ar100)}"
        )
    s = result.speed_ms
    lines.append(
        f"speed per image: {s['preprocess']:.1f} ms preprocess, {s['inference']:.1f} ms inference, {s['nms']:.1f} ms NMS"
    )
    return "\n".join(lines)
