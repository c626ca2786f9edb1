"""Run a split through parse -> image header -> checks, in parallel, with an optional progress bar."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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

    def location(self) -> str:
        """The split's folders and files as absolute paths (for the user: which data is this?)."""
        ...


def _is_utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # bytes os.fsdecode could not decode, held as lone surrogates
        return False
    return True


def _check_one(source: SplitSource, item: Any, nc: int) -> tuple[ImageRecord | None, list[Problem]]:
    raw, problems = source.parse(item)
    if raw is None:
        return None, problems
    if not _is_utf8(raw.image):
        # cv2 and the cache need a UTF-8 path; report the name (escaped) and skip instead of crashing later.
        return None, problems + [Problem(str(raw.image), None, "bad_file_name", "the file name is not valid UTF-8; rename the file")]
    width, height, header_problems = read_image_header(raw.image)
    if width == 0:
        if raw.label_file is not None and raw.label_file.is_file() and header_problems[0].kind == "image_missing":
            # Report the label (the file the user has to fix) for an image that is not there.
            return None, problems + [Problem(str(raw.label_file), None, "image_missing", f"image {raw.image} not found")]
        return None, problems + header_problems
    record, box_problems = finalize_sample(raw, width, height, nc, raw.image_id)
    return record, problems + header_problems + box_problems


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
    results: list[tuple[ImageRecord | None, list[Problem]]] = []
    with ThreadPoolExecutor(workers) as pool:
        it = pool.map(lambda item: _check_one(source, item, nc), items)
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
                    results.append(res)
                    bar.advance(task)
        else:
            results = list(it)
    records = [r for r, _ in results if r is not None]
    for _, p in results:
        problems.extend(p)
    save_cache(path, key, records, problems)
    return records, problems
