"""`mnv3det check-app --weights MODEL --images DIR --predictions PRED`: does your app get mnv3det's boxes?

The work is `mnv3det.check_app` (mnv3det/deploy/check_app/check.py); this module maps options and prints. Exit status 0
when the app agrees with the reference, 1 when it does not (usable in CI), 2 for bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mnv3det.cli.app import command
from mnv3det.cli.options import THREADS_HELP


@command("check-app")
def check_app_command(
    weights: Path = typer.Option(..., "--weights", "-w", help="The model your app runs: a .pt checkpoint or any "
                                 "export detect takes (.onnx, .torchscript, an *_openvino_model folder, ...)."),
    images: Path = typer.Option(..., "--images", help="The folder of images your app ran on (its own files)."),
    predictions: Path = typer.Option(
        ..., "--predictions", help="What your app found: a folder of YOLO txt files, one per image, rows `class cx cy "
        "w h conf` normalised to the image (as detect --save-txt --save-conf writes), or a json list of "
        "{file_name, bbox (x, y, w, h in pixels), score, category_id (class index)}."),
    imgsz: Optional[str] = typer.Option(None, "--imgsz", help="Input size your app uses (default: detect's: the "
                                        "training size; a static export's own)."),
    conf: Optional[float] = typer.Option(None, "--conf", help="Score threshold to compare at (default: just below "
                                         "your app's lowest score)."),
    iou: Optional[float] = typer.Option(None, "--iou", help="The reference's NMS IoU (default: detect's)."),
    max_det: Optional[int] = typer.Option(None, "--max-det", help="Most boxes per image (default: detect's)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, 0, cuda:0 (default: GPU when available)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON only."),
) -> None:
    """Compare your app's detections with mnv3det's on the same images; name the usual mistake that explains them."""
    from mnv3det.deploy.check_app.check import check_app
    from mnv3det.core.console import make_console
    from mnv3det.deploy.check_app.report import print_check

    result = check_app(weights, images, predictions, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det,
                       device=device, threads=threads)
    if json_out:
        print(result.to_json())
    else:
        print_check(result, make_console())
    if not result.agrees:
        raise typer.Exit(code=1)
