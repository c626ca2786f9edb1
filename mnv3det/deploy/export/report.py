"""What `mnv3det export` prints: one rich table per export, whatever the format (`print_result`); `--json` prints
`ExportResult.as_dict()` instead."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mnv3det.core.console import make_console
from mnv3det.deploy.export.pipeline import ExportResult
from mnv3det.deploy.export.wording import map_change_text, raw_diff_text


def _quantization_rows(q: dict) -> list[tuple[str, str]]:
    rows = [("INT8", f"{q['method']}; {q['calibration_images']} calibration images ({q['calibration_split']} split); "
                     f"decode float, Detect convs {q['head_convs']}")]
    if "map50_95_int8" in q:
        rows.append((
            "mAP50-95 (val)",
            f"{q['map50_95_float']:.4f} float32 -> {q['map50_95_int8']:.4f} INT8 "
            f"({map_change_text(q['map50_95_float'], q['map50_95_int8'])} on {q['val_images']} images; stored in the "
            "metadata)",
        ))
        rows.append(("mAP50 (val)", f"{q['map50_float']:.4f} float32 -> {q['map50_int8']:.4f} INT8"))
    else:
        rows.append(("mAP (val)", q.get("val", "not measured")))
    return rows


def result_table(result: ExportResult, runs: int | None = None) -> Table:
    """The table of one export: file, input, output, every check made, latency."""
    table = Table(title=f"export {result.format} ({result.runtime})", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("file", escape(str(result.path)))
    table.add_row("size", f"{result.size_mb:.2f} MB")
    shape = f"{result.batch}x3x{result.imgsz[0]}x{result.imgsz[1]}"
    shape += " (dynamic batch and size)" if result.dynamic else " (static)"
    table.add_row("input", shape + (", float16" if result.half else ""))
    if result.nms:
        n = result.nms
        table.add_row("output", f"detections (B, {n['max_det']}, 6) x1,y1,x2,y2,score,class in input pixels + count; "
                      f"NMS held: conf {n['conf']:g}, iou {n['iou']:g}, max_det {n['max_det']}")
    if result.simplified_with:
        table.add_row("simplified", result.simplified_with)
    if result.checker != "n/a":
        table.add_row("onnx.checker", result.checker)
    if result.max_abs_diff is not None:
        checked = ", ".join("x".join(map(str, s)) for s in result.checked_shapes)
        verdict = raw_diff_text(result.raw_passed, result.max_abs_diff, result.tolerance, result.max_rel_diff,
                                result.max_excess)
        table.add_row("raw output", f"{verdict} on {checked}")
    for key, value in result.checks.items():  # checked without running the file (Core ML off macOS)
        table.add_row(key, f"[green]ok[/]: {escape(value)}")
    a = result.agreement
    if result.unverified:
        table.add_row("detections", f"[yellow]unverified[/]: {escape(result.verify_source)}; the numbers (boxes, "
                      "scores, mAP) are checked against PyTorch only when exported on macOS")
    elif a is not None:
        lenient = result.int8 or result.half
        verdict = "[green]ok[/]" if a.passed else ("[yellow]differs[/]" if lenient else "[red]MISMATCH[/]")
        table.add_row("detections", f"{verdict}: {escape(f'{a.summary()} on {result.verify_source}')}")
    for key, value in _quantization_rows(result.quantization) if result.quantization else []:
        table.add_row(key, escape(str(value)))
    if result.latency_ms is not None:
        of = f", median of {runs}" if runs else ""
        table.add_row("latency", f"{result.latency_ms:.1f} ms per batch ({result.latency_engine}{of})")
    return table


def print_result(result: ExportResult, console: Console | None = None, runs: int | None = None) -> None:
    """The notes (defaults chosen for the user), then the table."""
    console = console or make_console()
    for note in result.notes:
        console.print(escape(note), highlight=False)
    console.print(result_table(result, runs))


def failure_line(result: ExportResult) -> str:
    """What the CLI prints (stderr) when a float export does not match PyTorch; the file is kept for inspection."""
    what = (f"differs from PyTorch by up to {result.max_abs_diff:.2e} (tolerance {result.tolerance:g})"
            if not result.raw_passed else f"differs from PyTorch: {result.agreement.summary()}")
    return (f"[bold red]verification failed:[/] {escape(str(result.path))} {what}; kept for inspection under that "
            "name; please report it with the checkpoint's recipe")
