"""Parsing of option values shared by several commands, and the mapping of options onto typed configs.

Commands declare their options with a default of None ("not given") and build their config from the ones given,
so each default lives once, in the config dataclass; `default_help` shows it in `--help`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypeVar

from mnv3det.errors import UserError

C = TypeVar("C")

THREADS_HELP = "CPU threads (default: the cores this process may use). On a busy machine try 1."


def parse_ints(text: str, option: str, max_count: int | None = None) -> list[int]:
    """'640' -> [640]; '480,640', '480 640' or '480x640' -> [480, 640]; a clear error for anything else."""
    parts = [p for p in re.split(r"[,\sx]+", text.strip()) if p]
    if not parts or not all(re.fullmatch(r"-?\d+", p) for p in parts) or (max_count and len(parts) > max_count):
        count = f"up to {max_count} " if max_count else ""
        raise UserError(f"{option} {text!r}: expected {count}integers separated by commas, e.g. {option} 640 or 480,640")
    return [int(p) for p in parts]


def default_help(config: type, name: str, text: str) -> str:
    """`text` plus the field's default from the config class, e.g. 'NMS IoU threshold (default 0.6).'."""
    default = {f.name: f.default for f in dataclasses.fields(config)}[name]
    if default is None or default is dataclasses.MISSING:
        return text
    shown = ("on" if default else "off") if isinstance(default, bool) else str(default)
    return f"{text.rstrip('.')} (default {shown})."


def build_config(config: type[C], **options: Any) -> C:
    """`config(**given)` with the options left out (None) taking the config's defaults."""
    return config(**{k: v for k, v in options.items() if v is not None})
