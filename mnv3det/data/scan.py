"""Run a split through parse -> image header -> split-wide decisions -> checks, with an optional progress bar."""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mnv3det.data.cache import cache_path, files_key, load_cache, save_cache
from mnv3det.data.checks import finalize_sample, read_image_header
from mnv3det.data.records import ImageRecord, Problem, RawSample
from mnv3det.data.report import console


class SplitSource(Protocol):
    """What a format module provides for one split (see formats_yolo / formats_coco / formats_voc)."""

    format: str

    def key_files(self) -> list[Path]:
        """Files whose size and mtime key the cache (cheap: no parsing)."""
        ...

    def items(self) -> tuple[list[Any], list[Problem]]:
        """Work items (one per image) and problems found while listing them."""
        ...

    def parse(self, item: Any) -> tuple[RawSample | None, list[Problem]]: ...

    def settle(self, samples: list[RawSample]) -> list[Problem]:
        """Decide what needs the whole split (YOLO: polygon or pose rows), in place; problems found."""
        ...

    def label_hint(self, records: list[ImageRecord]) -> str:
        """Where the labels of `records` were looked for (said when a split has no usable box)."""
        ...

    def location(self) -> str:
        """The split's folders and files as absolute paths (for the user: which data is this?)."""
        ...


def _is_utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # bytes os.fsdecode could not decode, held as lone surrogates
        return False
    return True


@dataclass
class _Read:
    """One item after parsing and the image header: `raw` None when it is skipped (the reason in problems)."""

    raw: RawSample | None
    width: int = 0
    height: int = 0
    problems: list[Problem] = field(default_factory=list)


def _read_one(source: SplitSource, item: Any) -> _Read:
    raw, problems = source.parse(item)
    if raw is None:
        return _Read(None, problems=problems)
    if not _is_utf8(raw.image):
        # cv2 and the cache need a UTF-8 path; report the name (escaped) and skip instead of crashing later.
        return _Read(None, problems=problems + [Problem(str(raw.image), None, "bad_file_name", "the file name is not valid UTF-8; rename the file")])
    width, height, header_problems = read_image_header(raw.image)
    if width == 0:
        if raw.label_file is not None and raw.label_file.is_file() and header_problems[0].kind == "image_missing":
            # Report the label (the file the user has to fix) for an image that is not there.
            return _Read(None, problems=problems + [Problem(str(raw.label_file), None, "image_missing", f"image {raw.image} not found")])
        return _Read(None, problems=problems + header_problems)
    return _Read(raw, width, height, problems + header_problems)


def _skip_repeated_images(reads: list[_Read]) -> None:
    """An image file listed more than once in a split (two COCO `images` entries, a line twice in a txt list):
    every entry is skipped and reported, as which boxes belong to it cannot be told (and an evaluator would
    count the image twice)."""
    entries: dict[str, list[_Read]] = defaultdict(list)
    for r in reads:
        if r.raw is not None:
            entries[os.path.normpath(os.path.abspath(r.raw.image))].append(r)
    for image, same in entries.items():
        if len(same) < 2:
            continue
        ids = ", ".join(str(r.raw.image_id) for r in same if r.raw is not None)
        for k, r in enumerate(same, start=1):
            assert r.raw is not None
            r.problems.append(Problem(str(r.raw.label_file or image), None, "duplicate_image_file",
                                      f"{image} is listed {len(same)} times in this split (entry {k}; image ids {ids}); "
                                      "all skipped with their boxes: list it once"))
            r.raw = None


def scan_split(
    source: SplitSource,
    nc: int,
    *,
    description: str,
    use_cache: bool = True,
    progress: bool = False,
    workers: int | None = None,
) -> tuple[list[ImageRecord], list[Problem]]:
    """All usable records of a split and every problem found, in the split's own order.

    Steps: list the items; parse each and read its image header (threads); let the split decide what needs all
    of it (`source.settle`: YOLO polygon or pose rows); skip images listed twice; check the boxes of each.
    description: a stable text naming the split (format, files, names); it picks the cache file.
    use_cache=False re-reads everything (the doctor) and refreshes the cache.
    """
    key = files_key(source.key_files(), f"{description}|nc={nc}")
    path = cache_path(description)
    if use_cache:
        cached = load_cache(path, key)
        if cached is not None:
            return cached
    items, problems = source.items()
    workers = workers or min(8, (os.cpu_count() or 1) * 2)  # header reads are I/O bound: threads suffice
    reads: list[_Read] = []
    with ThreadPoolExecutor(workers) as pool:
        it = pool.map(lambda item: _read_one(source, item), items)
        if progress and items:
            with Progress(
                TextColumn("[bold]checking[/] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            ) as bar:
                task = bar.add_task(description.split("|")[0], total=len(items))
                for res in it:
                    reads.append(res)
                    bar.advance(task)
        else:
            reads = list(it)
    problems.extend(source.settle([r.raw for r in reads if r.raw is not None]))
    _skip_repeated_images(reads)
    records = []
    for r in reads:
        if r.raw is not None:
            record, box_problems = finalize_sample(r.raw, r.width, r.height, nc, r.raw.image_id)
            records.append(record)
            r.problems.extend(box_problems)
        problems.extend(r.problems)
    save_cache(path, key, records, problems)
    return records, problems
