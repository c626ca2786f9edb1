"""Validation images that are also training images: best.pt would then be picked, and the run scored, on
training data. `shared_images` finds them by path (the val entry names the train folder, or one file is listed in
both) and by content (a copy under another name); `leakage_warning` is the one line `data check` and `train` print.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path

from mnv3det.data.records import ImageRecord


def _digest(path: Path) -> str | None:
    h = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def shared_images(train: list[ImageRecord], other: list[ImageRecord]) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """(images of `other` that are train files themselves, (image, train copy) pairs with the same bytes).

    Only files whose size matches a train file's are read (hashed), so a clean split costs one stat per image."""
    train_paths = {os.path.realpath(r.path) for r in train}
    same_file = [r.path for r in other if os.path.realpath(r.path) in train_paths]
    rest = [r.path for r in other if os.path.realpath(r.path) not in train_paths]
    by_size: dict[int, list[Path]] = defaultdict(list)
    for r in train:
        size = _size(r.path)
        if size is not None:
            by_size[size].append(r.path)
    copies: list[tuple[Path, Path]] = []
    digests: dict[int, dict[str, Path]] = {}
    for path in rest:
        size = _size(path)
        if size not in by_size:
            continue
        if size not in digests:  # hash the train files of this size once
            digests[size] = {d: p for p in by_size[size] if (d := _digest(p)) is not None}
        twin = digests[size].get(_digest(path) or "")
        if twin is not None:
            copies.append((path, twin))
    return same_file, copies


def leakage_warning(split: str, train: list[ImageRecord], other: list[ImageRecord]) -> str | None:
    """One line when `split`'s images (`other`) include training images, else None."""
    if not train or not other:
        return None
    same_file, copies = shared_images(train, other)
    n = len(same_file) + len(copies)
    if not n:
        return None
    parts = []
    if same_file:
        parts.append(f"{len(same_file)} are train files (e.g. {same_file[0]})")
    if copies:
        parts.append(f"{len(copies)} have the same bytes as a train image (e.g. {copies[0][0]} = {copies[0][1]})")
    return (f"{n} of the {len(other)} '{split}' images are also training images: {'; '.join(parts)}. Scores on "
            f"'{split}' then measure memory, and best.pt is picked on training data: keep '{split}' images out of train")
