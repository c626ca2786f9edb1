"""`mnv3det val --weights best.pt --data data.yaml`: COCO metrics (pycocotools) of a checkpoint or an export."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from mnv3det.cli.app import command
from mnv3det.cli.options import THREADS_HELP


@command("val")
def val_command(
    weights: Path = typer.Option(..., "--weights", "-w", help="A .pt checkpoint or an exported .onnx/.torchscript file."),
    data: Optional[str] = typer.Option(None, "--data", help="Data yaml or dataset folder (default: the built-in demo set)."),
    imgsz: Optional[int] = typer.Option(
        None, "--imgsz", help="Inference size (long side), a multiple of the stride (default: the training size, else 640)."
    ),
    batch: int = typer.Option(32, "--batch", help="Images per batch."),
    conf: float = typer.Option(0.001, "--conf", help="Confidence threshold; keep it low for mAP."),
    iou: float = typer.Option(0.6, "--iou", help="NMS IoU threshold."),
    max_det: int = typer.Option(300, "--max-det", help="Most boxes kept per image."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, 0, cuda:0 (default: GPU when available)."),
    save_json: bool = typer.Option(False, "--save-json", help="Write predictions.json (COCO results format)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="PR/F1 curves, confusion matrix, image mosaics."),
    split: str = typer.Option("val", "--split", help="Which split to evaluate: val or test."),
    project: Path = typer.Option(Path("runs/val"), "--project", help="Folder that holds the run folders."),
    name: str = typer.Option("exp", "--name", help="Run folder name; exp, exp2, ... when taken."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Reuse project/name instead of a new folder."),
    workers: int = typer.Option(2, "--workers", help="Data loading worker processes (0 = in the main process)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
) -> None:
    """Evaluate a detector: per-class table, COCO AP/AR, speed; results in runs/val/expN."""
    from mnv3det.evaluate.runner import ValOptions, run_val

    run_val(
        ValOptions(weights=weights, data=data, imgsz=imgsz, batch=batch, conf=conf, iou=iou, max_det=max_det,
                   device=device, save_json=save_json, plots=plots, split=split, project=project, name=name,
                   exist_ok=exist_ok, workers=workers, threads=threads),
        Console(),
    )
