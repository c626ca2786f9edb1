"""Run folders: `runs/train/exp`, `runs/train/exp2`, ... shared by train, val and detect."""

from __future__ import annotations

import re
from pathlib import Path


def increment_path(base: Path, name: str, exist_ok: bool = False) -> Path:
    """The first free run folder `base/name`, `base/name2`, `base/name3`, ... (not created).

    base: the project folder (e.g. runs/val); name: the run name (e.g. exp).
    With exist_ok, `base/name` is returned even when it exists (reuse the folder).
    A name that already ends in digits (exp3) gets the next free number after the highest one in use
    (exp4, exp5...), never a glued name like exp32.
    """
    base = Path(base)
    first = base / name
    if exist_ok or not first.exists():
        return first
    match = re.fullmatch(r"(.*?)(\d*)", name)
    stem = match.group(1) if match and match.group(1) else name
    pattern = re.compile(rf"{re.escape(stem)}(\d*)")
    used = [1]  # the plain name counts as number 1
    if base.is_dir():
        for entry in base.iterdir():
            found = pattern.fullmatch(entry.name)
            if found and found.group(1):
                used.append(int(found.group(1)))
    n = max(used) + 1
    while (base / f"{stem}{n}").exists():  # guard against races with other processes
        n += 1
    return base / f"{stem}{n}"
