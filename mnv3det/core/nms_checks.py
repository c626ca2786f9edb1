"""The one check of NMS values (conf, iou, max_det, classes), for the CLI (`--conf 2`) and the API (`conf=2`).

    check_nms_values(conf=0.25, iou=0.45, max_det=300)                    # the caller's wording (errors.option)
    check_nms_values(conf=2, iou=0.45, max_det=300, style="api")          # UserError "conf=2: ..."

`detect` (DetectConfig.validate), `val` (EvalConfig.validate) and `Detector.predict` call it, so a value one
refuses, all refuse, each in the words of the caller. Light (no torch): the configs import it for --help.
"""

from __future__ import annotations

import numbers
from typing import Literal, Sequence

from mnv3det.errors import UserError, option

Style = Literal["cli", "api"]


def option_name(field: str, style: Style = "cli") -> str:
    """How the caller spells a field: `--max-det` on the command line, `max_det=` in Python."""
    return f"--{field.replace('_', '-')}" if style == "cli" else f"{field}="


def _shown(field: str, value: object, style: Style | None) -> str:
    if style is None:  # as the caller writes options: `--conf 2` under the CLI, `conf=2` in Python
        return option(field, value)
    return f"{option_name(field, style)} {value}" if style == "cli" else f"{field}={value!r}"


def check_nms_values(
    *,
    conf: float,
    iou: float,
    max_det: int,
    classes: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    style: Style | None = None,
) -> None:
    """Raise one UserError naming the option when a value cannot work: conf/iou outside 0..1 (or NaN),
    max_det under 1 or not an integer, a class index outside the model's 0..nc-1 (`names` given).
    style None: the wording of the caller (`mnv3det.errors.option`: the CLI's command wrapper sets it)."""
    for field, value in (("conf", conf), ("iou", iou)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
            raise UserError(f"{_shown(field, value, style)}: must be a number between 0 and 1")
    if isinstance(max_det, bool) or not isinstance(max_det, numbers.Integral) or max_det < 1:
        raise UserError(f"{_shown('max_det', max_det, style)}: must be an integer, 1 or more")
    if classes is not None and names is not None:
        bad = [c for c in classes if not 0 <= int(c) < len(names)]
        if bad:
            shown = ", ".join(names[:10]) + ("..." if len(names) > 10 else "")
            raise UserError(f"{_shown('classes', bad, style)}: not among this model's classes "
                            f"0..{len(names) - 1} ({shown})")


__all__ = ["check_nms_values", "option_name"]
