"""The typed configs of `mnv3det detect` (`DetectConfig`) and `mnv3det export` (`ExportConfig`).

Defaults live here only: the CLI maps the options a user gives onto these fields and leaves the rest, and the
Python API takes the same names. Light to import (no torch), so `--help` can show the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mnv3det.core.imgsz import ImgSize
from mnv3det.core.nms_checks import check_nms_values
from mnv3det.errors import UserError

if TYPE_CHECKING:
    from mnv3det.deploy.runtime.predictor import NmsSettings


@dataclass(kw_only=True)
class DetectConfig:
    """Every option of `mnv3det detect` (the CLI maps its options onto these fields; defaults live here only)."""

    source: str  # image, folder, glob, video or .txt list
    weights: Path  # a .pt checkpoint or an exported file
    imgsz: ImgSize | int | str | None = None  # None = the size the model was trained at (a static export: its own)
    conf: float = 0.25  # score threshold (obj x class prob; anchor-free head: the class score)
    iou: float = 0.45  # NMS IoU threshold
    max_det: int = 300  # most boxes kept per image
    classes: list[int] | None = None  # keep only these class indices
    agnostic_nms: bool = False  # one NMS over all classes
    device: str | None = None  # cpu, 0, cuda:0; None = a GPU when there is one
    threads: int | None = None  # CPU threads; None = the cores this process may use
    save_images: bool = True  # annotated images/videos (the CLI's --nosave turns it off)
    save_txt: bool = False  # YOLO labels in labels/<name>.txt
    save_conf: bool = False  # the score as a sixth column of --save-txt rows
    save_json: bool = False  # every box in predictions.json
    save_crop: bool = False  # each box cut out to crops/<class>/
    hide_labels: bool = False  # boxes only, no labels (dense scenes)
    hide_conf: bool = False  # labels show the class name only
    line_width: int | None = None  # box line width in pixels; None = by image size, thinner on small boxes
    project: Path = Path("runs/detect")  # folder of run folders
    name: str = "exp"  # run folder name; exp2, exp3, ... when taken
    exist_ok: bool = False  # reuse project/name instead of a new folder

    def validate(self, names: list[str]) -> None:
        """Clear errors for values that cannot work with a model of these classes, naming the option."""
        check_nms_values(conf=self.conf, iou=self.iou, max_det=self.max_det, classes=self.classes, names=names)
        if self.line_width is not None and self.line_width < 1:
            raise UserError(f"--line-width {self.line_width}: must be 1 or more (leave it out to scale with the boxes)")

    def check_weights(self) -> None:
        """A missing --weights, without torch (the CLI asks before its imports; the backend asks again)."""
        from mnv3det.core.near_files import missing_model

        if not Path(self.weights).exists():
            raise missing_model(self.weights)

    def nms(self) -> "NmsSettings":
        from mnv3det.deploy.runtime.predictor import NmsSettings

        classes = tuple(self.classes) if self.classes is not None else None
        return NmsSettings(conf=self.conf, iou=self.iou, max_det=self.max_det, classes=classes, agnostic=self.agnostic_nms)


@dataclass(kw_only=True)
class ExportConfig:
    """Every option of `mnv3det export` (the CLI maps its options onto these fields; defaults live here only)."""

    format: str = "onnx"  # onnx or torchscript (mnv3det.deploy.export.registry; the edge formats take their own path)
    imgsz: ImgSize | int | str | None = None  # None = the size the checkpoint was trained at, else 640
    batch: int = 1  # batch of the traced input (a static export's fixed batch)
    dynamic: bool = True  # any batch and size; False (--static) fixes (batch, 3, H, W)
    opset: int = 17  # ONNX opset (14 or newer)
    simplify: bool = False  # onnxslim / onnxsim on the ONNX graph
    half: bool = False  # float16 body and input (CUDA only)
    device: str | None = "cpu"  # cpu, 0, cuda:0 (--half needs a GPU)
    output: Path | None = None  # the file to write; None = next to the weights
    image: Path | None = None  # verification image; None = a generated test scene
    runs: int = 10  # timed runs for the latency figure
    threads: int | None = None  # CPU threads for verification and latency; None = the cores this process may use

    def validate(self) -> None:
        """Clear errors for options that cannot work together, naming the option."""
        from mnv3det.deploy.export.onnx import MIN_OPSET, max_opset
        from mnv3det.deploy.export.registry import get_exporter

        get_exporter(self.format)
        if self.batch < 1:
            raise UserError(f"--batch {self.batch}: must be 1 or more")
        if self.runs < 1:
            raise UserError(f"--runs {self.runs}: must be 1 or more")
        if self.format == "onnx" and self.opset < MIN_OPSET:
            raise UserError(f"--opset {self.opset} is too old for HardSwish; use {MIN_OPSET} or newer (default 17)")
        if self.format == "onnx" and self.opset > max_opset():
            raise UserError(f"--opset {self.opset}: the ONNX exporter of this torch writes opsets {MIN_OPSET} to "
                            f"{max_opset()}; use one of them (default 17)")
        if self.simplify and self.format != "onnx":
            raise UserError("--simplify applies to --format onnx only")
