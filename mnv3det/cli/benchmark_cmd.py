"""`mnv3det benchmark --weights best.pt --data DATA`: every deployment format scored and timed, against yolov5n.

Options map onto `mnv3det.deploy.benchmark.BenchOptions` (defaults live there); the work is `run_benchmark`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from mnv3det.core.console import make_console
from mnv3det.core.streams import stdout_to_stderr
from mnv3det.cli.app import command
from mnv3det.deploy.benchmark import BenchOptions, BenchReport, run_benchmark

DEFAULTS = BenchOptions(weights=Path("best.pt"))


@command("benchmark")
def benchmark_command(
    weights: Path = typer.Option(..., "--weights", "-w", help="The .pt checkpoint to benchmark."),
    data: Optional[str] = typer.Option(None, "--data", help="Data to score on (val split) and calibrate INT8 on "
                                       "(train split); default: the demo set."),
    formats: Optional[str] = typer.Option(None, "--formats", help="Comma-separated formats (default: every "
                                          "available one: pytorch, torchscript, onnx, onnx-int8, openvino, "
                                          "openvino-int8, ncnn)."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Square size (default: the trained size)."),
    threads: int = typer.Option(DEFAULTS.threads, "--threads", min=1, help="Runtime threads for the latency."),
    runs: int = typer.Option(DEFAULTS.runs, "--runs", help="Timed calls per format and round."),
    rounds: int = typer.Option(DEFAULTS.rounds, "--rounds", help="Rounds taken in turn over all formats."),
    calib_images: int = typer.Option(DEFAULTS.calib_images, "--calib-images", help="INT8 calibration images."),
    nms: bool = typer.Option(DEFAULTS.nms, "--nms", help="Also time each format's end-to-end file (export --nms) "
                             "beside the raw one: rows onnx+nms, openvino+nms, ..."),
    max_images: Optional[int] = typer.Option(
        None, "--max-images", help="Score on the first N val images only: a quick answer before the full one "
        "(the table says it is a subset; default: all)."
    ),
    reference: bool = typer.Option(True, "--reference/--no-reference", help="Time yolov5n too (the ratio column)."),
    project: Path = typer.Option(DEFAULTS.project, "--project", help="Where run folders go."),
    name: str = typer.Option(DEFAULTS.name, "--name", help="Run folder name (exp, exp2, ...)."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Reuse the run folder if it exists."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON only."),
) -> None:
    """Export to every available format; print format, size, mAP50-95/mAP50 on val, latency and ratio to yolov5n."""
    opts = BenchOptions(
        weights=weights, data=data, formats=[f.strip().lower() for f in formats.split(",") if f.strip()] if formats
        else None, imgsz=imgsz, threads=threads, runs=runs, rounds=rounds, calib_images=calib_images,
        nms=nms, max_images=max_images, reference=reference, project=project, name=name, exist_ok=exist_ok,
    )
    status = make_console(stderr=True)
    # --json: stdout holds the JSON document only; converters' progress bars and notes (nncf's) go to stderr
    with stdout_to_stderr(json_out):
        report, run_dir = run_benchmark(opts, say=lambda text: status.print(f"[dim]{escape(text)}[/]", highlight=False))
    if json_out:
        print(json.dumps(report.as_dict()))
        return
    console = make_console()
    console.print(benchmark_table(report))
    console.print(f"Results saved to [bold]{escape(str(run_dir))}[/] (benchmark.csv, benchmark.json)")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def benchmark_table(report: BenchReport) -> Table:
    h, w = report.imgsz
    best = f"yolov5n {report.reference_best}" if report.reference_best else "yolov5n (not timed)"
    table = Table(
        title=f"{escape(report.weights)} at {h}x{w}, batch 1, {report.threads} threads; {report.scored_on()}; "
        f"median of {report.rounds} rounds x {report.runs} runs, each runtime in its own process; ratio to {best}",
        title_justify="left",
    )
    for column in ("model", "format", "size MB", "mAP50-95", "mAP50", "latency ms", "x yolov5n", "note"):
        table.add_column(column, justify="right" if column not in ("model", "format", "note") else "left")
    for row in report.rows:
        table.add_row(
            row.model, row.format, _fmt(row.size_mb, ".2f"), _fmt(row.map50_95, ".4f"), _fmt(row.map50, ".4f"),
            _fmt(row.latency_ms, ".2f"), _fmt(row.ratio, ".2f"), escape(row.note),
        )
    return table
