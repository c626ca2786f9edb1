"""`mnv3det export --weights best.pt --format onnx`: write an ONNX/TorchScript file and verify it against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from mnv3det.cli.app import command
from mnv3det.cli.options import THREADS_HELP, parse_imgsz


@command("export")
def export_command(
    weights: Path = typer.Option(..., "--weights", "-w", help="The .pt checkpoint to export."),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
    imgsz: str = typer.Option("640", "--imgsz", help="Input size: 640, or height,width (multiples of the stride)."),
    batch: int = typer.Option(1, "--batch", help="Batch size of the exported input."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Dynamic batch and image size."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (14 or newer)."),
    simplify: bool = typer.Option(False, "--simplify", help="Simplify the ONNX graph (needs onnxslim or onnxsim)."),
    half: bool = typer.Option(False, "--half", help="float16 weights and input (CUDA only)."),
    device: Optional[str] = typer.Option("cpu", "--device", help="cpu, 0 or cuda:0 (--half needs a GPU)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (default: next to the weights)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Image to verify on (default: a generated test scene)."),
    runs: int = typer.Option(10, "--runs", help="Timed runs for the latency figure."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON only."),
) -> None:
    """Export a checkpoint, check it (onnx.checker, outputs vs PyTorch within 1e-4) and report size and latency."""
    from mnv3det.deploy.export import export_checkpoint

    result = export_checkpoint(
        weights,
        format=format.lower(),
        output=output,
        device=device,
        image=image,
        imgsz=parse_imgsz(imgsz),
        batch=batch,
        dynamic=dynamic,
        opset=opset,
        simplify=simplify,
        half=half,
        latency_runs=runs,
        threads=threads,
    )
    if json_out:
        import json

        print(json.dumps(result.as_dict()))
    else:
        table = Table(title=f"export {result.format}", title_justify="left", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("file", str(result.path))
        table.add_row("size", f"{result.size_mb:.2f} MB")
        shape = f"{result.batch}x3x{result.imgsz[0]}x{result.imgsz[1]}" + (" (dynamic batch, size)" if result.dynamic else "")
        table.add_row("input", shape + (", float16" if result.half else ""))
        if result.simplified_with:
            table.add_row("simplified", result.simplified_with)
        table.add_row("onnx.checker", result.checker)
        verdict = "[green]ok[/]" if result.passed else "[red]MISMATCH[/]"
        checked = ", ".join("x".join(map(str, s)) for s in result.checked_shapes)
        table.add_row(
            "vs PyTorch",
            f"{verdict}: max |diff| {result.max_abs_diff:.1e}, relative {result.max_rel_diff:.1e} "
            f"(tolerance {result.tolerance:g} abs + {result.tolerance:g} rel) on {checked}",
        )
        if result.latency_ms is not None:
            table.add_row("latency", f"{result.latency_ms:.1f} ms per batch ({result.latency_engine}, median of {runs})")
        Console().print(table)
    if not result.passed:  # a bug, not a user error: keep the file for inspection, fail the command
        Console(stderr=True).print(
            f"[bold red]verification failed:[/] {result.path} differs from PyTorch by up to {result.max_abs_diff:.2e} "
            f"(tolerance {result.tolerance:g}); please report it with the checkpoint's recipe",
            highlight=False,
        )
        raise typer.Exit(code=1)
