"""What `mnv3det export --format <a static format>` (edge.py) prints: one rich table per export."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mnv3det.core.console import make_console
from mnv3det.deploy.export.edge import RAW_TOLERANCE, EdgeExportResult
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


def edge_table(result: EdgeExportResult) -> Table:
    table = Table(title=f"export {result.format} ({result.runtime})", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("file", escape(str(result.path)))
    table.add_row("size", f"{result.size_mb:.2f} MB")
    table.add_row("input", f"{result.batch}x3x{result.imgsz[0]}x{result.imgsz[1]} (static)")
    if result.max_abs_diff is not None:
        passed = (result.max_excess or 0) <= 0
        table.add_row("raw output", raw_diff_text(passed, result.max_abs_diff, RAW_TOLERANCE, excess=result.max_excess))
    for key, value in result.checks.items():  # checked without running the file (Core ML off macOS)
        table.add_row(key, f"[green]ok[/]: {escape(value)}")
    a = result.agreement
    if result.unverified:
        table.add_row("detections", f"[yellow]unverified[/]: {escape(result.verify_source)}; the numbers (boxes, "
                      "scores, mAP) are checked against PyTorch only when exported on macOS")
    else:
        verdict = "[green]ok[/]" if a.passed else ("[yellow]differs[/]" if result.int8 else "[red]MISMATCH[/]")
        table.add_row("detections", f"{verdict}: {escape(f'{a.summary()} on {result.verify_source}')}")
    for key, value in _quantization_rows(result.quantization or {}) if result.quantization else []:
        table.add_row(key, escape(str(value)))
    if result.latency_ms is not None:
        table.add_row("latency", f"{result.latency_ms:.1f} ms per batch ({result.latency_engine}, this process)")
    return table


def print_edge_result(result: EdgeExportResult, console: Console | None = None) -> None:
    (console or make_console()).print(edge_table(result))
