"""`mnv3det profile`: per-row parameters/MACs/FLOPs and CPU latency of a model, optionally against another."""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from mnv3det.core.console import make_console
from mnv3det.cli.app import command
from mnv3det.cli.options import THREADS_HELP
from mnv3det.core.threads import resolve_threads
from mnv3det.core.imgsz import parse_imgsz
from mnv3det.errors import UserError

if TYPE_CHECKING:  # torch loads when the command runs, not when `mnv3det --help` registers it
    from mnv3det.deploy.profile import ModelProfile


def profile_models(*args, **kwargs):
    """`mnv3det.deploy.profile.profile_models`, imported on first call (tests replace this name)."""
    from mnv3det.deploy.profile import profile_models as run

    return run(*args, **kwargs)


STD_CONV_HEADER = "vs std conv*"
STD_CONV_NOTE = ("vs std conv: the block's MACs / the MACs of one standard k x k conv with the same input and output "
                 "shape (0.20x = a fifth of the cost; in brackets MobileNet's estimate 1/N + 1/k² for a separable conv)")


@command("profile")
def profile_cmd(
    backbone: str = typer.Option("small", help="MobileNetV3 backbone: small or large (ignored with --recipe)."),
    recipe: Optional[str] = typer.Option(None, help="Recipe name (mnv3-small, mnv3-large, mnv2, yolov5n, yolov5s) or yaml path."),
    imgsz: str = typer.Option("640", help="Square input size in pixels (a multiple of the model's stride)."),
    nc: Optional[int] = typer.Option(None, help="Number of classes (default: the recipe's, 80)."),
    batch: int = typer.Option(1, help="Batch size for counting and timing."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    runs: int = typer.Option(20, help="Timed runs per backend (median reported); 0 skips latency."),
    compare: Optional[str] = typer.Option(None, help="A second recipe to show side by side, with ratios."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only (for piping)."),
) -> None:
    """Show what a model costs: params, MACs and FLOPs per row, and CPU latency."""
    from mnv3det.models import recipe_for_backbone
    from mnv3det.deploy.profile import ratios

    name = recipe or recipe_for_backbone(backbone)
    size = parse_imgsz(imgsz).side(why="profile measures square inputs")
    if nc is not None and nc < 1:
        raise UserError(f"--nc {nc} must be >= 1")
    console = make_console(stderr=True)  # status messages never mix into --json output
    with console.status(f"profiling {name} at {size}x{size}", spinner="dots") if not as_json else nullcontext():
        profiles = profile_models([name, compare] if compare else [name], size, nc, batch, resolve_threads(threads), runs)
    main, other = profiles[0], (profiles[1] if compare else None)
    if as_json:
        payload = {"profile": main.to_dict()}
        if other is not None:
            payload["compare"] = other.to_dict()
            payload["ratios"] = ratios(main, other)
        typer.echo(json.dumps(payload, indent=2))
        return
    out = make_console()
    out.print(_rows_table(main))
    out.print(_summary_table(main, other))
    for prof in (main, other):
        if prof is not None and prof.ort_note:
            out.print(f"[yellow]{prof.recipe}: {prof.ort_note}[/]")


def _fmt_m(value: int) -> str:
    return f"{value / 1e6:,.2f}"


def _rows_table(prof: ModelProfile) -> Table:
    table = Table(
        title=f"{prof.recipe} at {prof.imgsz}x{prof.imgsz}, batch {prof.batch}, nc {prof.nc} (output = CxHxW; "
        "Detect: anchors x outputs)",
        caption=f"* {STD_CONV_NOTE}\nFLOPs = 2 x MACs (YOLOv5's GFLOPs convention; convs/matmuls counted by "
        "torch.utils.flop_counter).",
        caption_justify="left",
    )
    for col in ("row", "from", "module", "args", "output", "params", "MMACs", "MFLOPs", STD_CONV_HEADER):
        numeric = col in ("row", "params", "MMACs", "MFLOPs", STD_CONV_HEADER)
        table.add_column(col, justify="right" if numeric else "left", no_wrap=col != STD_CONV_HEADER)
    for r in prof.rows:
        saving = ""
        if r.vs_std_conv is not None:
            saving = f"{r.vs_std_conv:.2f}x"
            if r.separable_theory is not None:
                saving += f" (1/N+1/k²={r.separable_theory:.2f})"
        table.add_row(
            str(r.index), _compact(r.source), r.module, _compact(r.args), "x".join(map(str, r.out_shape[1:])),
            f"{r.params:,}",
            _fmt_m(r.macs), _fmt_m(r.flops), saving,
        )
    table.add_row("", "", "[bold]total", "", "", f"[bold]{prof.params:,}", f"[bold]{_fmt_m(prof.macs)}",
                  f"[bold]{_fmt_m(2 * prof.macs)}", "")
    return table


def _compact(value: object) -> str:
    """[16, 2, 'nearest'] -> 16,2,nearest (keeps the table narrow)."""
    text = str(value).replace(" ", "").replace("'", "")
    return text[1:-1] if text.startswith("[") else text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _summary_table(prof: ModelProfile, other: ModelProfile | None) -> Table:
    from mnv3det.deploy.profile import ratios

    table = Table(
        title=f"Summary (latency: median of {prof.runs} runs, {prof.threads} threads, BN fused"
        + (", timed interleaved)" if other is not None else ")")
    )
    table.add_column("metric")
    table.add_column(prof.recipe, justify="right")
    metrics = [
        ("params", lambda p: f"{p.params:,}"),
        ("GFLOPs", lambda p: f"{p.gflops:.3f}"),
        ("PyTorch eager ms", lambda p: _ms(p.eager_ms)),
        ("ONNX Runtime ms", lambda p: _ms(p.ort_ms)),
    ]
    if other is None:
        for label, fmt in metrics:
            table.add_row(label, fmt(prof))
        return table
    table.add_column(other.recipe, justify="right")
    table.add_column("ratio", justify="right")
    rat = ratios(prof, other)
    for (label, fmt), key in zip(metrics, ("params", "gflops", "eager_ms", "ort_ms")):
        value = rat[key]
        table.add_row(label, fmt(prof), fmt(other), "-" if value is None else f"{value:.2f}x")
    return table
