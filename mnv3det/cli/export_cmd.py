"""`mnv3det export --weights best.pt --format onnx`: write an exported file and verify it against PyTorch.

Options map onto `mnv3det.deploy.config.ExportConfig` (the defaults live there); the work is
`mnv3det.deploy.export.pipeline.export_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from mnv3det.core.console import make_console
from mnv3det.core.streams import stdout_to_stderr
from mnv3det.cli.app import command
from mnv3det.cli.options import THREADS_HELP, build_config, default_help
from mnv3det.deploy.config import ExportConfig


def _help(name: str, text: str) -> str:
    return default_help(ExportConfig, name, text)


@command("export")
def export_command(
    weights: Path = typer.Option(..., "--weights", "-w", help="The .pt checkpoint to export."),
    format: Optional[str] = typer.Option(
        None, "--format", "-f",
        help=_help("format", "onnx, torchscript, or a static format: openvino, openvino-int8, ncnn, onnx-int8, "
                   "litert (alias tflite), litert-int8, coreml, coreml-int8."),
    ),
    imgsz: Optional[str] = typer.Option(
        None, "--imgsz", help="Input size: 640, or height,width, multiples of the stride (default: the training size)."
    ),
    batch: Optional[int] = typer.Option(None, "--batch", help=_help("batch", "Batch size of the exported input.")),
    dynamic: Optional[bool] = typer.Option(
        None, "--dynamic/--static",
        help="Any batch and image size (the default: the same boxes as the .pt in detect and val), or a fixed "
        "batch x 3 x imgsz input (some runtimes need it; images are then letterboxed to that square).",
    ),
    opset: Optional[int] = typer.Option(None, "--opset", help=_help("opset", "ONNX opset (14 or newer).")),
    simplify: Optional[bool] = typer.Option(None, "--simplify", help="Simplify the ONNX graph (needs onnxslim or onnxsim)."),
    half: Optional[bool] = typer.Option(None, "--half", help="float16 weights and input (CUDA only)."),
    device: Optional[str] = typer.Option(None, "--device", help=_help("device", "cpu, 0 or cuda:0 (--half needs a GPU).")),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (default: next to the weights)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Image to verify on (default: a generated test scene)."),
    runs: Optional[int] = typer.Option(None, "--runs", help=_help("runs", "Timed runs for the latency figure.")),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON only."),
    data: Optional[str] = typer.Option(
        None, "--data", help="Edge formats: verify on its val images; INT8: calibrate on its train split, score on "
        "val (default: the demo set)."
    ),
    calib_images: int = typer.Option(300, "--calib-images", help="INT8: calibration images from the train split."),
    max_drop: float = typer.Option(
        1.0, "--int8-max-drop", help="openvino-int8: most mAP50-95 points nncf's accuracy control may lose (0: off)."
    ),
) -> None:
    """Export a checkpoint, check it (onnx.checker, outputs and boxes vs PyTorch) and report size and latency."""
    from mnv3det.core.near_files import missing_checkpoint
    from mnv3det.data.locate import check_data_path
    from mnv3det.deploy.export.registry import edge_format, known_format

    if format:  # names and paths before torch: a usage error in a moment
        known_format(format)
    if weights.suffix.lower() == ".pt" and not weights.is_file():
        raise missing_checkpoint(weights)
    check_data_path(data)
    from mnv3det.deploy.export.pipeline import export_checkpoint

    if format and edge_format(format) is not None:  # OpenVINO, ncnn, INT8: mnv3det.deploy.export.edge
        from mnv3det.api import check_edge_options

        check_edge_options(format, dynamic=dynamic, half=half, simplify=simplify, device=device)
        _export_edge(
            weights, edge_format(format), json_out, max_drop, imgsz=imgsz, batch=batch or 1, output=output,
            image=image, data=data, runs=runs or 10, threads=threads, calib_images=calib_images,
        )
        return
    config = build_config(
        ExportConfig, format=format.lower() if format else None, imgsz=imgsz, batch=batch, dynamic=dynamic,
        opset=opset, simplify=simplify, half=half, device=device, output=output, image=image, runs=runs,
        threads=threads,
    )
    result = export_checkpoint(weights, config)
    if json_out:
        import json

        print(json.dumps(result.as_dict()))
    else:
        _print_result(result, config.runs)
    if not result.passed:  # a bug, not a user error: keep the file for inspection, fail the command
        make_console(stderr=True).print(
            f"[bold red]verification failed:[/] {escape(str(result.path))} differs from PyTorch by up to "
            f"{result.max_abs_diff:.2e} (tolerance {result.tolerance:g}), kept for inspection under that name; "
            "please report it with the checkpoint's recipe",
            highlight=False,
        )
        raise typer.Exit(code=1)


def _print_result(result, runs: int) -> None:
    console = make_console()
    for note in result.notes:
        console.print(escape(note), highlight=False)
    table = Table(title=f"export {result.format}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("file", escape(str(result.path)))
    table.add_row("size", f"{result.size_mb:.2f} MB")
    shape = f"{result.batch}x3x{result.imgsz[0]}x{result.imgsz[1]}"
    shape += " (dynamic batch and size)" if result.dynamic else " (static)"
    table.add_row("input", shape + (", float16" if result.half else ""))
    if result.simplified_with:
        table.add_row("simplified", result.simplified_with)
    table.add_row("onnx.checker", result.checker)
    from mnv3det.deploy.export.wording import raw_diff_text

    checked = ", ".join("x".join(map(str, s)) for s in result.checked_shapes)
    verdict = raw_diff_text(result.passed, result.max_abs_diff, result.tolerance, result.max_rel_diff, result.max_excess)
    table.add_row("vs PyTorch", f"{verdict} on {checked}")
    torch_boxes, file_boxes = result.boxes
    table.add_row(
        "boxes (conf 0.25)",
        f"{torch_boxes} PyTorch, {file_boxes} exported; corners within {result.max_box_diff:.1e} px",
    )
    if result.latency_ms is not None:
        table.add_row("latency", f"{result.latency_ms:.1f} ms per batch ({result.latency_engine}, median of {runs})")
    console.print(table)


def _export_edge(weights: Path, fmt, json_out: bool, max_drop: float, calib_images: int, **options) -> None:
    """A static format (openvino, ncnn, litert, coreml, the INT8 ones): float32 or INT8 exports, verified."""
    from mnv3det.deploy.export.edge import Int8Options, export_edge_checkpoint
    from mnv3det.deploy.export.report import print_edge_result

    int8 = Int8Options(calib_images=calib_images, max_drop=max_drop / 100 if max_drop > 0 else None)
    console = make_console(stderr=True) if json_out else make_console()
    # --json: stdout holds the JSON line only; the converters' own progress bars (nncf's) go to stderr with the log.
    with stdout_to_stderr(json_out):
        result = export_edge_checkpoint(weights, fmt, int8=int8, console=console, **options)
    if json_out:
        import json

        print(json.dumps(result.as_dict()))
    else:
        print_edge_result(result)
    if not result.passed:  # a bug, not a user error: keep the files for inspection, fail the command
        make_console(stderr=True).print(
            f"[bold red]verification failed:[/] {result.path} differs from PyTorch: {result.agreement.summary()}",
            highlight=False,
        )
        raise typer.Exit(code=1)
