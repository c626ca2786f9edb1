"""`mnv3det val` as a function: open the weights and the data, evaluate, print and save the results.

Writes into the run folder (runs/val/exp, exp2, ...): results.json (every number, per class too),
summary.txt (the paste-able block), predictions.json with --save-json (COCO results format, the
dataset's own category ids) and the plots with --plots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mnv3det.evaluate.report import print_eval, summary_text
from mnv3det.evaluate.evaluator import EvalResult, evaluate
from mnv3det.core.runs import claim_run_dir
from mnv3det.errors import UserError

SPLITS = ("val", "test")


@dataclass
class ValOptions:
    """The options of `mnv3det val` (see the command's --help)."""

    weights: Path
    data: str | None = None
    imgsz: int | None = None  # None: the size the checkpoint was trained at (640 when unknown)
    batch: int = 32
    conf: float = 0.001
    iou: float = 0.6
    max_det: int = 300
    device: str | None = None
    save_json: bool = False
    plots: bool = True
    split: str = "val"
    project: Path = Path("runs/val")
    name: str = "exp"
    exist_ok: bool = False
    workers: int = 2
    threads: int | None = None  # CPU threads; None = the cores this process may use


def check_options(opts: ValOptions) -> None:
    """Clear errors for values that cannot work, naming the option."""
    if opts.split not in SPLITS:
        raise UserError(f"--split {opts.split!r}: use one of {', '.join(SPLITS)}")
    for option, value in (("--conf", opts.conf), ("--iou", opts.iou)):
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{option} {value}: must lie between 0 and 1")
    for option, value in (("--imgsz", opts.imgsz), ("--batch", opts.batch), ("--max-det", opts.max_det)):
        if value is not None and value < 1:
            raise UserError(f"{option} {value}: must be a positive integer")
    if opts.workers < 0:
        raise UserError(f"--workers {opts.workers}: must be 0 or more")


def run_val(opts: ValOptions, console: Console | None = None) -> tuple[EvalResult, Path]:
    """Evaluate `opts.weights` on a split of `opts.data`; returns the result and the run folder."""
    from mnv3det.data import load_data
    from mnv3det.deploy.backends import load_backend
    from mnv3det.core.device import select_device
    from mnv3det.deploy.predictor import check_imgsz

    console = console or Console()
    check_options(opts)
    device = select_device(opts.device)
    backend = load_backend(opts.weights, device, opts.threads)
    fixed = backend.fixed_shape[2] if backend.fixed_shape is not None else None
    trained = getattr(backend, "train_imgsz", None)
    imgsz = opts.imgsz or fixed or trained or 640
    if opts.imgsz is None and fixed is None and trained:
        console.print(f"imgsz {imgsz}: the size {opts.weights} was trained at (set --imgsz to change it)")
    if fixed is None:
        check_imgsz(imgsz, int(backend.stride))
    elif fixed != imgsz:
        console.print(f"[yellow]note:[/] {opts.weights} was exported for {backend.fixed_shape[2]}x"
                      f"{backend.fixed_shape[3]} inputs; evaluating at that size instead of --imgsz {imgsz}")
        imgsz = fixed
    spec = load_data(opts.data)
    records = spec.records(opts.split)
    if backend.names and list(backend.names) != list(spec.names) and len(backend.names) == len(spec.names):
        console.print("[yellow]note:[/] the model's class names differ from the dataset's; the dataset's are shown")

    run_dir = claim_run_dir(Path(opts.project), opts.name, exist_ok=opts.exist_ok)
    result = evaluate(
        backend, records, spec, imgsz=imgsz, batch_size=opts.batch, conf=opts.conf, iou=opts.iou,
        max_det=opts.max_det, device=device, coco=True, plots_dir=run_dir if opts.plots else None,
        save_json=run_dir / "predictions.json" if opts.save_json else None, workers=opts.workers,
    )
    title = f"{opts.weights} on {spec.source} ({opts.split}, imgsz {imgsz})"
    summary = summary_text(result, title)
    (run_dir / "results.json").write_text(json.dumps(
        {"weights": str(opts.weights), "data": str(spec.source), "split": opts.split, "imgsz": imgsz,
         "conf": opts.conf, "iou": opts.iou, "max_det": opts.max_det, **result.as_dict()}, indent=2))
    (run_dir / "summary.txt").write_text(summary + "\n")
    print_eval(result, spec.names, console=console)
    console.print("\n[bold]Summary[/] (to paste; also in summary.txt):")
    console.print(summary, highlight=False, soft_wrap=True, markup=False)  # plain, never wrapped or cut
    console.print(f"Results saved to [bold]{run_dir}[/]")
    return result, run_dir
