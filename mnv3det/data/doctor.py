"""The dataset doctor behind `mnv3det data check`: every image header and label, re-read and summarised."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from mnv3det.data.leakage import leakage_warning
from mnv3det.data.records import ImageRecord, Problem
from mnv3det.data.report import cell, problem_counts_table, problem_rows_table, safe, source_lines
from mnv3det.data.spec import DataSpec

SKIPPED_IMAGE_KINDS = (
    "image_unreadable", "image_truncated", "image_too_large", "bad_file_name", "duplicate_image_id", "duplicate_image_file",
    "label_unreadable",
)


@dataclass
class SplitReport:
    """What one split holds and what is wrong with it."""

    split: str
    records: list[ImageRecord]
    problems: list[Problem]
    names: list[str]
    mismatch: str | None = None  # why the split cannot be used as it is (names do not fit, no usable box): DataSpec.mismatch
    leakage: str | None = None  # its images that are training images too (data/leakage.py); not for train itself
    boxes_per_class: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        counts = Counter(int(c) for r in self.records for c in r.classes)
        self.boxes_per_class = [counts.get(i, 0) for i in range(len(self.names))]

    @property
    def usable(self) -> int:
        return len(self.records)

    @property
    def skipped(self) -> int:
        return sum(p.kind in SKIPPED_IMAGE_KINDS for p in self.problems)

    @property
    def labelled(self) -> int:
        return sum(r.num_boxes > 0 for r in self.records)

    @property
    def background(self) -> int:
        return self.usable - self.labelled

    def to_json(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "images": self.usable + self.skipped,
            "usable": self.usable,
            "labelled": self.labelled,
            "background": self.background,
            "boxes": int(sum(self.boxes_per_class)),
            "crowd": int(sum(r.crowd.sum() for r in self.records)),
            "boxes_per_class": dict(zip(self.names, self.boxes_per_class)),
            "names_mismatch": self.mismatch,
            "leakage": self.leakage,
            "problems": [{"file": p.file, "line": p.line, "kind": p.kind, "detail": p.detail, "action": p.action} for p in self.problems],
        }


def check_data(spec: DataSpec, splits: list[str] | None = None, *, progress: bool = True) -> list[SplitReport]:
    """Re-read every image header and label of `splits` (default: all) and refresh the records cache."""
    reports = []
    for split in splits or list(spec.splits):
        records, problems = spec.check(split, use_cache=False, progress=progress)
        reports.append(SplitReport(split, records, problems, spec.names, spec.mismatch(split, records, problems)))
    train = next((r for r in reports if r.split == "train"), None)
    for rep in reports:
        if train is not None and rep is not train:
            rep.leakage = leakage_warning(rep.split, train.records, rep.records)
    return reports


def print_reports(spec: DataSpec, reports: list[SplitReport], out: Console, limit: int | None = 50) -> None:
    """Where each split is read from, overview table (one column per split), boxes per class, then each split's
    problems."""
    for line in source_lines(spec, [r.split for r in reports]):
        out.print(line, highlight=False, soft_wrap=True)
    overview = Table(title=f"{safe(spec.source)} ({spec.format}, {spec.nc} classes)", title_justify="left")
    overview.add_column("")
    for rep in reports:
        overview.add_column(cell(rep.split), justify="right")
    rows = [
        ("images", lambda r: r.usable + r.skipped),
        ("usable", lambda r: r.usable),
        ("labelled", lambda r: r.labelled),
        ("background", lambda r: r.background),
        ("boxes", lambda r: sum(r.boxes_per_class)),
        ("crowd boxes", lambda r: int(sum(x.crowd.sum() for x in r.records))),
        ("difficult boxes", lambda r: int(sum(x.difficult.sum() for x in r.records))),
        ("problems", lambda r: len(r.problems)),
    ]
    for label, fn in rows:
        overview.add_row(label, *(str(fn(r)) for r in reports))
    out.print(overview)
    per_class = Table(title="boxes per class", title_justify="left")
    per_class.add_column("id", justify="right")
    per_class.add_column("name")
    for rep in reports:
        per_class.add_column(cell(rep.split), justify="right")
    for i, name in enumerate(spec.names):
        per_class.add_row(str(spec.category_ids[i]), cell(name), *(str(r.boxes_per_class[i]) for r in reports))
    out.print(per_class)
    for rep in reports:
        if rep.problems:
            out.print(problem_counts_table(rep.problems, f"problems in '{safe(rep.split)}'"))
            out.print(problem_rows_table(rep.problems, f"problems in '{safe(rep.split)}'", limit=limit, root=spec.root))
        else:
            out.print(f"[green]'{safe(rep.split)}': no problems found[/]")
    for rep in reports:
        if rep.leakage:
            out.print(f"[yellow]warning:[/] {safe(rep.leakage, 2000)}", highlight=False)
    for rep in reports:
        if rep.mismatch:
            out.print(f"[bold red]error:[/] {safe(rep.mismatch, 2000)}", highlight=False)
