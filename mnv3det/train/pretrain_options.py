"""What `mnv3det pretrain` is asked for: `PretrainOptions` and the --time parser (no torch: the CLI imports this
to build its help, and `mnv3det --help` must stay fast)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnv3det.errors import UserError

DEFAULT_SAMPLES = 30_000


@dataclass
class PretrainOptions:
    """What `mnv3det pretrain` was asked for (None = not given: the default, or the resumed run's value)."""

    recipe: str | None = None
    imgsz: int | None = None
    samples: int | None = None  # budget in generated scenes ...
    time: str | float | None = None  # ... or in wall time ("90m", "2h", seconds); one of the two
    batch: int | None = None
    epoch_samples: int = 1024  # scenes per epoch: a checkpoint (and a resume point) every this many
    val_images: int = 200
    seed: int | None = None
    single_class: bool = False
    families: list[str] | None = None
    objects: tuple[int, int] | None = None  # (min, max) per scene
    hyp: str | None = None
    workers: int | None = None
    threads: int | None = None
    device: str | None = None
    project: str = "runs/pretrain"
    name: str | None = None
    exist_ok: bool | None = None
    resume: bool | str | Path = False
    extra: dict[str, Any] = field(default_factory=dict)  # other TrainConfig fields (lr0, ...)


def parse_duration(value: str | float) -> float:
    """Seconds from 5400, "5400", "90m", "1.5h", "2h30m"; a UserError naming --time otherwise."""
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?", text)
        if not text or parts is None or not any(parts.groups()):
            raise UserError(f"--time {value!r}: give a duration such as 5400, 90m, 1.5h or 2h30m")
        h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = h * 3600 + m * 60 + s
    if not math.isfinite(seconds) or seconds < 60:
        raise UserError(f"--time {value!r}: a pretraining budget must be at least one minute")
    return seconds


__all__ = ["DEFAULT_SAMPLES", "PretrainOptions", "parse_duration"]
