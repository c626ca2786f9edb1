"""`mnv3det export --weights best.pt --format onnx`: write an exported file and verify it against PyTorch.

Options map onto `mnv3det.deploy.config.ExportConfig` (the defaults live there); the work is
`mnv3det.deploy.export.pipeline.export_checkpoint`, printed by `mnv3det.deploy.export.report.print_result`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
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
        help=_help("format", "onnx, torchscript, onnx-int8, openvino, openvino-int8, ncnn, litert (alias tflite), "
                   "litert-int8, coreml, coreml-int8."),
    ),
    imgsz: Optional[str] = typer.Option(
        None, "--imgsz", help="Input size: 640, or height,width, multiples of the stride (default: the training size)."
    ),
    batch: Optional[int] = typer.Option(None, "--batch", help=_help("batch", "Batch size of the exported input.")),
    dynamic: Optional[bool] = typer.Option(
        None, "--dynamic/--static",
        help="onnx/torchscript: any batch and image size (their default: the same boxes as the .pt in detect and "
        "val), or a fixed batch x 3 x imgsz input (images are then letterboxed to that square). Other formats are "
        "static.",
    ),
    opset: Optional[int] = typer.Option(None, "--opset", help=_help("opset", "ONNX opset (14 or newer).")),
    simplify: Optional[bool] = typer.Option(None, "--simplify", help="Simplify the ONNX graph (needs onnxslim or onnxsim)."),
    half: Optional[bool] = typer.Option(None, "--half", help="float16 weights and input (CUDA only)."),
    device: Optional[str] = typer.Option(None, "--device", help=_help("device", "cpu, 0 or cuda:0 (--half needs a GPU).")),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (default: next to the weights)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Image to verify on (default: --data's val images, "
                                         "else a generated test scene)."),
    data: Optional[str] = typer.Option(
        None, "--data", help="Verify on its val images; INT8: calibrate on its train split, score on val (default: "
        "the demo set)."
    ),
    calib_images: Optional[int] = typer.Option(
        None, "--calib-images", help=_help("calib_images", "INT8: calibration images from the train split.")),
    int8_max_drop: Optional[float] = typer.Option(
        None, "--int8-max-drop",
        help=_help("int8_max_drop", "openvino-int8: most mAP50-95 points nncf's accuracy control may lose (0: off)."),
    ),
    nms: Optional[bool] = typer.Option(
        None, "--nms", help="End-to-end: the file ends in NMS and outputs final detections (boxes in input pixels, "
        "score, class; a count per image); onnx, onnx-int8, openvino, openvino-int8, torchscript."),
    conf: Optional[float] = typer.Option(None, "--conf", help=_help("conf", "--nms: score threshold held in the file.")),
    iou: Optional[float] = typer.Option(None, "--iou", help=_help("iou", "--nms: NMS IoU threshold held in the file.")),
    max_det: Optional[int] = typer.Option(None, "--max-det", help=_help("max_det", "--nms: detections per image.")),
    runs: Optional[int] = typer.Option(None, "--runs", help=_help("runs", "Timed runs for the latency figure.")),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON only."),
) -> None:
    """Export a checkpoint, check it against PyTorch (raw outputs, detections; INT8: mAP) and report size and latency."""
    from mnv3det.core.near_files import missing_checkpoint
    from mnv3det.data.locate import check_data_path

    config = build_config(
        ExportConfig, format=format, imgsz=imgsz, batch=batch, dynamic=dynamic, opset=opset, simplify=simplify,
        half=half, device=device, output=output, image=image, data=data, calib_images=calib_images,
        int8_max_drop=int8_max_drop, nms=nms, conf=conf, iou=iou, max_det=max_det, runs=runs, threads=threads,
    )
    config.check()  # names, options and paths before torch: a usage error in a moment
    if weights.suffix.lower() == ".pt" and not weights.is_file():
        raise missing_checkpoint(weights)
    check_data_path(data)
    from mnv3det.deploy.export.pipeline import export_checkpoint
    from mnv3det.deploy.export.report import failure_line, print_result

    console = make_console(stderr=True) if json_out else make_console()
    # --json: stdout holds the JSON line only; the converters' own progress bars (nncf's) go to stderr with the log.
    with stdout_to_stderr(json_out):
        result = export_checkpoint(weights, config, console=console)
    if json_out:
        print(result.to_json())
    else:
        print_result(result, runs=config.runs)
    if not result.passed:  # a bug, not a user error: keep the file for inspection, fail the command
        make_console(stderr=True).print(failure_line(result), highlight=False)
        raise typer.Exit(code=1)
