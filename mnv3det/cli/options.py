"""Parsing of option values shared by several commands."""

from __future__ import annotations

import re

from mnv3det.errors import UserError


def parse_ints(text: str, option: str, max_count: int | None = None) -> list[int]:
    """'640' -> [640]; '480,640', '480 640' or '480x640' -> [480, 640]; a clear error for anything else."""
    parts = [p for p in re.split(r"[,\sx]+", text.strip()) if p]
    if not parts or not all(re.fullmatch(r"-?\d+", p) for p in parts) or (max_count and len(parts) > max_count):
        count = f"up to {max_count} " if max_count else ""
        raise UserError(f"{option} {text!r}: expected {count}integers separated by commas, e.g. {option} 640 or 480,640")
    return [int(p) for p in parts]


def parse_imgsz(text: str, option: str = "--imgsz") -> int | tuple[int, int]:
    """'640' -> 640 (square); '480,640' -> (480, 640) as (height, width)."""
    sizes = parse_ints(text, option, max_count=2)
    return sizes[0] if len(sizes) == 1 else (sizes[0], sizes[1])

THREADS_HELP = "CPU threads (default: the cores this process may use). On a busy machine try 1."
