"""A split with images but no usable box: training on it learns nothing and scoring it means nothing, yet every
step would run and end "done". `no_boxes` says so in one line: where the labels were looked for, what label-like
files lie nearby (an `Images/` folder beside `Labels/` is not the `images` -> `labels` pair YOLO looks for), and
what became of the rows that were read (pixel coordinates are clipped to nothing).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from mnv3det.data.records import ImageRecord, Problem

DROP_KINDS = ("bad_row", "zero_size", "class_out_of_range", "unknown_class", "duplicate", "label_unreadable")
LABEL_SUFFIXES = (".txt", ".xml", ".json")
_PEEK_ENTRIES = 20_000  # what the look around may list: a hint, not a walk of the disk


def _label_files(folder: Path) -> Counter[str]:
    """Label-like files (by suffix) in `folder` and its subfolders, counting at most _PEEK_ENTRIES entries."""
    found: Counter[str] = Counter()
    seen = 0
    for current, dirs, files in os.walk(folder):
        seen += len(dirs) + len(files)
        for name in files:
            suffix = os.path.splitext(name)[1].lower()
            if suffix in LABEL_SUFFIXES:
                found[suffix] += 1
        if seen > _PEEK_ENTRIES:
            break
    return found


def nearby_labels(image_dir: Path, expected: Path) -> list[str]:
    """Folders beside `image_dir` or beside its parent that hold label-like files, e.g. `/d/Labels (12 .txt)`;
    not those holding `image_dir` or `expected` (the folder the labels were looked for in)."""
    out: list[str] = []
    for base in (image_dir.parent, image_dir.parent.parent):
        try:
            folders = sorted(p for p in base.iterdir() if p.is_dir())
        except OSError:
            continue
        for folder in folders:
            if image_dir.is_relative_to(folder) or expected.is_relative_to(folder):
                continue
            counts = _label_files(folder)
            if counts:
                out.append(f"{folder} ({', '.join(f'{n} {s}' for s, n in counts.most_common())})")
    return out[:4]


def has_boxes(records: list[ImageRecord]) -> bool:
    """Does any record hold a box training uses (crowd boxes are ignored regions)? An empty list counts as yes:
    "no image at all" is its own error."""
    return not records or any(bool((~r.crowd).any()) for r in records)


def no_boxes(split: str, records: list[ImageRecord], problems: list[Problem], where: str) -> str:
    """The one line for a split whose usable images (`records`) hold no box (`has_boxes` is False).

    where: the format's own account of where labels were looked for (`SplitSource.label_hint`)."""
    dropped = Counter(p.kind for p in problems if p.kind in DROP_KINDS)
    rows = (f"{sum(dropped.values())} label rows were read and all dropped ("
            + ", ".join(f"{k} {n}" for k, n in dropped.most_common()) + ")") if dropped else "no label rows were read"
    if any(p.kind == "outside_image" for p in problems):
        rows += "; rows reach outside the image: pixel coordinates? YOLO rows are fractions of the image size (0..1)"
    return (f"split '{split}': {len(records)} images but no usable box: {rows}; {where}. A split without boxes trains "
            "and scores nothing: fix the labels or where the data yaml points")
