"""`mnv3det val --weights best.pt --data data.yaml`: COCO metrics (pycocotools) of a checkpoint or an export.

Options map onto `mnv3det.evaluate.config.ValConfig` (the defaults live there); the work is `mnv3det.api.val`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mnv3det.cli.app import command
from mnv3det.cli.options import THREADS_HELP, build_config, default_help
from mnv3det.evaluate.config import ValConfig


def _help(name: str, text: str) -> str:
    return default_help(ValConfig, name, text)


@command("val")
def val_command(
    weights: Path = typer.Option(
        ..., "--weights", "-w",
        help="A .pt checkpoint, an exported .onnx/.torchscript file, or an *_openvino_model / *_ncnn_model folder.",
    ),
    data: Optional[str] = typer.Option(None, "--data", help="Data yaml or dataset folder (default: the data a .pt was trained "
                                      "on, when it still exists; else the built-in demo set)."),
    imgsz: Optional[str] = typer.Option(
        None, "--imgsz", help="Inference size (long side), a multiple of the stride (default: the training size, else 640)."
    ),
    batch: Optional[int] = typer.Option(None, "--batch", help=_help("batch", "Images per batch.")),
    conf: Optional[float] = typer.Option(None, "--conf", help=_help("conf", "Confidence threshold; keep it low for mAP.")),
    iou: Optional[float] = typer.Option(None, "--iou", help=_help("iou", "NMS IoU threshold.")),
    max_det: Optional[int] = typer.Option(None, "--max-det", help=_help("max_det", "Most boxes kept per image.")),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, 0, cuda:0 (default: GPU when available)."),
    save_json: Optional[bool] = typer.Option(None, "--save-json", help="Write predictions.json (COCO results format)."),
    plots: Optional[bool] = typer.Option(
        None, "--plots/--no-plots", help=_help("plots", "PR/F1 curves, confusion matrix, image mosaics.")
    ),
    split: Optional[str] = typer.Option(None, "--split", help=_help("split", "Which split to evaluate: val, test, or train (measures fit).")),
    project: Optional[Path] = typer.Option(None, "--project", help=_help("project", "Folder that holds the run folders.")),
    name: Optional[str] = typer.Option(None, "--name", help=_help("name", "Run folder name; exp, exp2, ... when taken.")),
    exist_ok: Optional[bool] = typer.Option(None, "--exist-ok", help="Reuse project/name instead of a new folder."),
    workers: Optional[int] = typer.Option(
        None, "--workers", help=_help("workers", "Data loading worker processes (0 = in the main process).")
    ),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
) -> None:
    """Evaluate a detector: per-class table, COCO AP/AR, speed; results in runs/val/expN."""
    config = build_config(
        ValConfig, weights=weights, data=data, imgsz=imgsz, batch=batch, conf=conf, iou=iou, max_det=max_det,
        device=device, save_json=save_json, plots=plots, split=split, project=project, name=name, exist_ok=exist_ok,
        workers=workers, threads=threads,
    )
    config.validate()  # options and paths before torch: a usage error in a moment
    from mnv3det.api import val

    val(config, verbose=True)
