"""`mnv3det detect SOURCE --weights best.pt`: run a detector on images, a folder, a glob, a video or a .txt list."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from mnv3det.cli.app import command
from mnv3det.cli.options import THREADS_HELP, parse_imgsz, parse_ints


@command("detect")
def detect_command(
    source: str = typer.Argument(..., help="Image, directory, glob ('imgs/*.jpg', quoted), video file or .txt list."),
    weights: Path = typer.Option(..., "--weights", "-w", help="A .pt checkpoint or an exported .onnx/.torchscript file."),
    imgsz: str = typer.Option("640", "--imgsz", help="Inference size: 640, or height,width. A static export uses its own."),
    conf: float = typer.Option(0.25, "--conf", help="Confidence threshold (obj x class prob)."),
    iou: float = typer.Option(0.45, "--iou", help="NMS IoU threshold."),
    max_det: int = typer.Option(300, "--max-det", help="Most boxes kept per image."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Keep only these class indices, e.g. 0,2,3."),
    agnostic_nms: bool = typer.Option(False, "--agnostic-nms", help="One NMS over all classes."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, 0, cuda:0 (default: GPU when available)."),
    save_txt: bool = typer.Option(False, "--save-txt", help="Write YOLO labels to labels/<name>.txt."),
    save_conf: bool = typer.Option(False, "--save-conf", help="Add the score to each --save-txt row."),
    save_json: bool = typer.Option(False, "--save-json", help="Write all boxes to predictions.json."),
    save_crop: bool = typer.Option(False, "--save-crop", help="Cut each box out to crops/<class>/."),
    nosave: bool = typer.Option(False, "--nosave", help="Do not write annotated images/videos."),
    hide_conf: bool = typer.Option(False, "--hide-conf", help="Labels show the class name only."),
    line_width: Optional[int] = typer.Option(None, "--line-width", help="Box line width in pixels (default: by image size)."),
    project: Path = typer.Option(Path("runs/detect"), "--project", help="Folder that holds the run folders."),
    name: str = typer.Option("exp", "--name", help="Run folder name; exp, exp2, ... when taken."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Reuse project/name instead of a new folder."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
) -> None:
    """Detect objects and save annotated images/videos (plus labels, json, crops when asked) to runs/detect/expN."""
    from mnv3det.deploy.detect_runner import DetectOptions, print_detect_report, run_detect

    options = DetectOptions(
        source=source,
        weights=weights,
        imgsz=parse_imgsz(imgsz),
        conf=conf,
        iou=iou,
        max_det=max_det,
        classes=parse_ints(classes, "--classes") if classes else None,
        agnostic_nms=agnostic_nms,
        device=device,
        save_images=not nosave,
        save_txt=save_txt,
        save_conf=save_conf,
        save_json=save_json,
        save_crop=save_crop,
        hide_conf=hide_conf,
        line_width=line_width,
        project=project,
        name=name,
        exist_ok=exist_ok,
        threads=threads,
    )
    console = Console()
    report = run_detect(options, console)
    print_detect_report(report, console)
