"""Short summaries of problems found while loading a split (the doctor prints the full list), and the two
helpers every data-side message uses for text that came from the user (class names, paths, label rows):
`cell` for a table cell, `safe` inside a markup line. Both cut it to CELL_CHARS and never read it as markup,
so `person [crowd]` prints as written and `[/]` cannot crash rich."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mnv3det.core.console import make_console
from mnv3det.data.records import PROBLEM_ACTIONS, Problem, printable

console = make_console(stderr=True)
CELL_CHARS = 200  # what one user string may print: a path or a name fits; a 10 MB "class name" does not


def clip(text: object, limit: int = CELL_CHARS) -> str:
    """`text` as a printable str of at most `limit` characters (the cut marked with an ellipsis)."""
    out = printable(str(text))
    return out if len(out) <= limit else out[: limit - 1] + "…"


def cell(text: object, limit: int = CELL_CHARS) -> Text:
    """User text for a table cell: clipped, taken literally (no markup)."""
    return Text(clip(text, limit))


def safe(text: object, limit: int = CELL_CHARS) -> str:
    """User text to put inside a markup string (`f"[yellow]data:[/] {safe(path)}"`): clipped and escaped."""
    return escape(clip(text, limit))


def problem_counts_table(problems: list[Problem], title: str) -> Table:
    """One row per problem kind: count and what was done."""
    table = Table(title=title, title_justify="left")
    table.add_column("problem")
    table.add_column("count", justify="right")
    table.add_column("action")
    for kind, n in sorted(Counter(p.kind for p in problems).items(), key=lambda kv: -kv[1]):
        table.add_row(kind, str(n), PROBLEM_ACTIONS.get(kind, ""))
    return table


def short_path(path: str, root: Path | None) -> str:
    """`path` relative to `root` when it lies under it (tables stay readable), else as is."""
    if root is None:
        return path
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def problem_rows_table(problems: list[Problem], title: str, limit: int | None = None, root: Path | None = None) -> Table:
    """One row per problem: file (relative to `root`), line, reason, action (the first `limit` rows when given)."""
    table = Table(title=title, title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("line", justify="right")
    table.add_column("problem")
    table.add_column("detail", overflow="fold")
    table.add_column("action")
    shown = problems if limit is None else problems[:limit]
    for p in shown:
        table.add_row(cell(short_path(p.file, root)), "" if p.line is None else str(p.line), p.kind, cell(p.detail), p.action)
    if root is not None:
        table.caption = f"files relative to {safe(root)}"
    if limit is not None and len(problems) > limit:
        table.caption = (table.caption or "") + f"; {len(problems) - limit} more not shown (`mnv3det data check --limit 0` lists all)"
    return table


def print_load_summary(
    problems: list[Problem], split: str, n_records: int, root: Path | None = None, out: Console | None = None,
    brief: bool = False, source: Path | None = None,
) -> None:
    """What loading `split` skipped, dropped or changed: counts per kind, then the first rows.

    brief: the same problems were shown before (data/cache.first_report): one line with the counts only."""
    if not problems:
        return
    out = out or console
    if brief:
        counts = ", ".join(f"{n} {kind}" for kind, n in Counter(p.kind for p in problems).most_common())
        where = f"`mnv3det data check {source}`" if source is not None else "`mnv3det data check`"
        out.print(f"[yellow]data:[/] split '{safe(split)}': {n_records} images usable, {len(problems)} problem(s) as "
                  f"before ({counts}); {escape(where)} lists them", highlight=False, soft_wrap=True)
        return
    out.print(f"[yellow]data:[/] split '{safe(split)}': {n_records} images usable, {len(problems)} problem(s) found")
    out.print(problem_counts_table(problems, f"problems in '{safe(split)}'"))
    out.print(problem_rows_table(problems, f"first problems in '{safe(split)}'", limit=10, root=root))


def source_lines(spec: Any, splits: list[str]) -> list[str]:
    """Markup lines saying which data is used: the notes on how the data yaml was read, then one line per split
    with its absolute folders (`spec` is a DataSpec; data check, train and val print these)."""
    lines = [f"[yellow]note:[/] {safe(note, 2000)}" for note in spec.notes]
    return lines + [f"data: '{safe(split)}' = {safe(spec.location(split), 2000)}" for split in splits]
