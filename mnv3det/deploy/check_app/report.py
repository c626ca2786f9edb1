"""The rich tables `mnv3det check-app` prints: the app against the reference per image, and the explanations tried."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mnv3det.deploy.check_app.check import CheckAppResult
from mnv3det.deploy.check_app.matching import Tally

SHOWN_EXPLANATIONS = 5  # the best-fitting pipelines listed under the per-image table


def _num(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def _row(t: Tally) -> list[str]:
    return [str(t.app), str(t.ref), str(t.matched), str(t.missed), str(t.extra), _num(t.mean_iou, ".3f"),
            _num(t.mean_score_diff, ".4f")]


def images_table(result: CheckAppResult) -> Table:
    """Per image: boxes on each side, matched, missed (the reference's, not the app's), extra, mean IoU and score
    difference of the matched pairs; a total row."""
    table = Table(title=f"Your app against the reference ({result.reference.key})", title_justify="left")
    for column in ("image", "app", "reference", "matched", "missed", "extra", "mean IoU", "score diff"):
        table.add_column(column, justify="left" if column == "image" else "right")
    for image in result.images:
        table.add_row(escape(image.name), *_row(image.tally))
    table.add_row("all", *_row(result.reference.tally), style="bold")
    return table


def explanations_table(result: CheckAppResult) -> Table:
    """The pipelines whose boxes come closest to the app's, best first (disagreement in boxes, 0 = identical)."""
    table = Table(title="Closest pipelines", title_justify="left")
    for column in ("pipeline", "matched of app", "mean IoU", "score diff", "missed", "extra", "disagreement"):
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    for cand in result.candidates[:SHOWN_EXPLANATIONS]:
        t = cand.tally
        table.add_row(cand.key, f"{100 * t.of_app:.0f}%", _num(t.mean_iou, ".3f"), _num(t.mean_score_diff, ".4f"),
                      str(t.missed), str(t.extra), f"{t.disagreement:.2f}")
    return table


def print_check(result: CheckAppResult, console: Console) -> None:
    """Both tables, the notes, then the verdict line (green when the app agrees)."""
    console.print(images_table(result))
    console.print(explanations_table(result))
    for note in result.notes:
        console.print(f"[dim]{escape(note)}[/]", highlight=False)
    colour = "green" if result.agrees else "yellow"
    console.print(f"[bold {colour}]{escape(result.line)}[/]", highlight=False, soft_wrap=True)
