"""`mnv3det detect SOURCE --weights best.pt`: run a detector on images, a folder, a glob, a video or a .txt list.

Options map onto `mnv3det.deploy.config.DetectConfig` (the defaults live there); the work is
`mnv3det.deploy.detect_runner.run_detect`, over the same prediction path as `mnv3det.load(...).predict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mnv3det.core.console import make_console
from mnv3det.cli.app import command
from mnv3det.cli.options import THREADS_HELP, build_config, default_help, parse_ints
from mnv3det.deploy.config import DetectConfig
from mnv3det.errors import UserError


def _help(name: str, text: str) -> str:
    return default_help(DetectConfig, name, text)


def _one_source(positional: str | None, option: str | None) -> str:
    """SOURCE or --source (users of YOLOv5 type the latter), exactly one of them."""
    if positional is not None and option is not None and positional != option:
        raise UserError(f"two sources given, {positional!r} and --source {option!r}: give one")
    if positional is None and option is None:
        raise UserError("no source: give an image, folder, glob, video, .txt list or camera index, "
                        "e.g. `mnv3det detect images/ --weights best.pt`")
    return positional if positional is not None else option  # type: ignore[return-value]


@command("detect")
def detect_command(
    source: Optional[str] = typer.Argument(
        None, show_default=False, help="Image, directory, glob ('imgs/*.jpg', quoted), video file, .txt list, camera "
        "index (0) or stream URL (rtsp://, http://).",
    ),
    source_option: Optional[str] = typer.Option(
        None, "--source", help="The same as SOURCE, in the spelling YOLOv5's detect.py uses."
    ),
    weights: Path = typer.Option(
        ..., "--weights", "-w",
        help="A .pt checkpoint, an exported .onnx/.torchscript file, or an *_openvino_model / *_ncnn_model folder.",
    ),
    imgsz: Optional[str] = typer.Option(
        None, "--imgsz", help="Inference size: 640, or height,width (default: the training size, else 640). "
        "A static export uses its own."
    ),
    conf: Optional[float] = typer.Option(None, "--conf", help=_help("conf", "Score threshold (obj x class prob; an anchor-free head: its class score).")),
    iou: Optional[float] = typer.Option(None, "--iou", help=_help("iou", "NMS IoU threshold.")),
    max_det: Optional[int] = typer.Option(None, "--max-det", help=_help("max_det", "Most boxes kept per image.")),
    classes: Optional[str] = typer.Option(None, "--classes", help="Keep only these class indices, e.g. 0,2,3."),
    agnostic_nms: Optional[bool] = typer.Option(None, "--agnostic-nms", help="One NMS over all classes."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, 0, cuda:0 (default: GPU when available)."),
    save_txt: Optional[bool] = typer.Option(None, "--save-txt", help="Write YOLO labels to labels/<name>.txt."),
    save_conf: Optional[bool] = typer.Option(None, "--save-conf", help="Add the score to each --save-txt row."),
    save_json: Optional[bool] = typer.Option(None, "--save-json", help="Write all boxes to predictions.json."),
    save_crop: Optional[bool] = typer.Option(None, "--save-crop", help="Cut each box out to crops/<class>/."),
    nosave: bool = typer.Option(False, "--nosave", help="Do not write annotated images/videos."),
    hide_labels: Optional[bool] = typer.Option(
        None, "--hide-labels", help="Draw boxes only, no labels (dense scenes)."
    ),
    hide_conf: Optional[bool] = typer.Option(None, "--hide-conf", help="Labels show the class name only."),
    line_width: Optional[int] = typer.Option(
        None, "--line-width", help="Box line width in pixels for every box (default: by image size, thinner on "
        "small boxes, labels sized to their box)."
    ),
    project: Optional[Path] = typer.Option(None, "--project", help=_help("project", "Folder that holds the run folders.")),
    name: Optional[str] = typer.Option(None, "--name", help=_help("name", "Run folder name; exp, exp2, ... when taken.")),
    exist_ok: Optional[bool] = typer.Option(None, "--exist-ok", help="Reuse project/name instead of a new folder."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
) -> None:
    """Detect objects and save annotated images/videos (plus labels, json, crops when asked) to runs/detect/expN."""
    config = build_config(
        DetectConfig, source=_one_source(source, source_option), weights=weights, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det,
        classes=parse_ints(classes, "--classes") if classes else None, agnostic_nms=agnostic_nms, device=device,
        save_images=False if nosave else None, save_txt=save_txt, save_conf=save_conf, save_json=save_json,
        save_crop=save_crop, hide_labels=hide_labels, hide_conf=hide_conf, line_width=line_width, project=project,
        name=name,
        exist_ok=exist_ok, threads=threads,
    )
    config.check_weights()  # before torch: a usage error in a moment
    from mnv3det.deploy.detect_runner import print_detect_report, run_detect

    console = make_console()
    report = run_detect(config, console)
    print_detect_report(report, console)
