"""The typed configs of `mnv3det detect` (`DetectConfig`) and `mnv3det export` (`ExportConfig`).

Defaults live here only: the CLI maps the options a user gives onto these fields and leaves the rest, and the
Python API takes the same names. Light to import (no torch), so `--help` can show the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from mnv3det.core.imgsz import ImgSize
from mnv3det.core.nms_checks import check_nms_values
from mnv3det.errors import UserError

if TYPE_CHECKING:
    from mnv3det.deploy.formats import Format
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


# Options a format may refuse (deploy/formats.py `Format.options`), each with the flag that sets it.
FORMAT_OPTIONS = {"dynamic": "--dynamic", "half": "--half", "device": "--device", "opset": "--opset",
                  "simplify": "--simplify", "calib_images": "--calib-images", "int8_max_drop": "--int8-max-drop"}


@dataclass(kw_only=True)
class ExportConfig:
    """Every option of `mnv3det export` (the CLI maps its options onto these fields; defaults live here only).

    Which format takes which option is the format's record (deploy/formats.py); `check` refuses the rest."""

    format: str = "onnx"  # any export format of deploy/formats.py (aliases: tflite)
    imgsz: ImgSize | int | str | None = None  # None = the size the checkpoint was trained at, else 640
    batch: int = 1  # batch of the traced input (a static export's fixed batch)
    dynamic: bool | None = None  # any batch and size; None = so where the format can be (onnx, torchscript)
    opset: int = 17  # ONNX opset (14 or newer)
    simplify: bool = False  # onnxslim / onnxsim on the ONNX graph
    half: bool = False  # float16 body and input (CUDA only)
    device: str | None = "cpu"  # cpu, 0, cuda:0 (--half needs a GPU); the static formats run on the CPU
    output: Path | None = None  # the file to write; None = next to the weights
    image: Path | None = None  # verification image; None = the val images of `data`, else a generated scene
    data: str | Path | None = None  # verify on its val images; INT8: calibrate on train, score on val (None: demo set)
    calib_images: int = 300  # INT8: calibration images from the train split (nncf's default subset size)
    int8_max_drop: float = 1.0  # openvino-int8: most mAP50-95 points nncf's accuracy control may lose (0: off)
    nms: bool = False  # end-to-end: the file ends in NMS and outputs final detections (deploy/export/end_to_end.py)
    conf: float = DetectConfig.conf  # --nms: score threshold held in the file (detect's default)
    iou: float = DetectConfig.iou  # --nms: NMS IoU threshold held in the file
    max_det: int = DetectConfig.max_det  # --nms: detections per image (the output's fixed size)
    runs: int = 10  # timed runs for the latency figure (0: not timed)
    threads: int | None = None  # CPU threads for verification and latency; None = the cores this process may use
    verify: bool = True  # False: no comparison with PyTorch (a file made only to be timed, benchmark's yolov5n)
    val_images: int | None = None  # INT8: score on the first N val images only (benchmark --max-images); None: all

    def check(self) -> "Format":
        """The format record, after clear one-line errors for options it cannot take or that cannot work."""
        from mnv3det.deploy.formats import export_format

        fmt = export_format(self.format)
        defaults = {f.name: f.default for f in fields(ExportConfig)}
        for name, flag in FORMAT_OPTIONS.items():
            value = getattr(self, name)
            given = bool(value) if name == "dynamic" else value not in (defaults[name], None)  # --static is never refused
            if name == "device" and str(value).lower() == "cpu":
                given = False
            if given and not fmt.accepts(name):
                takes = [f.name for f in _formats() if f.accepts(name)]
                why = {"dynamic": "its exports are static", "device": "it runs on the CPU; use --device cpu"}
                raise UserError(f"{flag} applies to --format {'/'.join(takes)}; {fmt.name} does not take it"
                                + (f" ({why[name]})" if name in why else ""))
        if self.batch < 1:
            raise UserError(f"--batch {self.batch}: must be 1 or more")
        if self.runs < 0:
            raise UserError(f"--runs {self.runs}: must be 0 or more")
        if self.calib_images < 1:
            raise UserError(f"--calib-images {self.calib_images}: must be 1 or more (a few hundred is usual)")
        if not 0 <= self.int8_max_drop <= 100:
            raise UserError(f"--int8-max-drop {self.int8_max_drop}: mAP50-95 points between 0 (off) and 100")
        if fmt.name == "onnx":
            from mnv3det.deploy.export.onnx import MIN_OPSET, max_opset

            if self.opset < MIN_OPSET:
                raise UserError(f"--opset {self.opset} is too old for HardSwish; use {MIN_OPSET} or newer (default 17)")
            if self.opset != defaults["opset"] and self.opset > max_opset():  # max_opset imports torch
                raise UserError(f"--opset {self.opset}: the ONNX exporter of this torch writes opsets {MIN_OPSET} to "
                                f"{max_opset()}; use one of them (default 17)")
        self._check_nms(fmt, defaults)
        return fmt

    def _check_nms(self, fmt: "Format", defaults: dict) -> None:
        if self.nms and fmt.nms_refusal:
            raise UserError(f"--nms: --format {fmt.name} cannot hold NMS: {fmt.nms_refusal}")
        if not self.nms:
            given = [f"--{k.replace('_', '-')}" for k in ("conf", "iou", "max_det") if getattr(self, k) != defaults[k]]
            if given:
                raise UserError(f"{', '.join(given)} set(s) the NMS held in the file: add --nms")
            return
        check_nms_values(conf=self.conf, iou=self.iou, max_det=self.max_det)

    def is_dynamic(self, fmt: "Format") -> bool:
        """Whether the file takes any batch and size: --dynamic/--static as given, else the format's default."""
        return fmt.dynamic if self.dynamic is None else self.dynamic

    def nms_settings(self) -> dict | None:
        """The NMS the file holds ({"conf", "iou", "max_det"}: its metadata's `nms`), None without --nms."""
        return {"conf": self.conf, "iou": self.iou, "max_det": self.max_det} if self.nms else None

    def int8_max_drop_fraction(self) -> float | None:
        """nncf's max_drop (absolute, 0.01 = 1 point), None when accuracy control is off."""
        return self.int8_max_drop / 100 if self.int8_max_drop > 0 else None


def _formats() -> list:
    from mnv3det.deploy.formats import export_formats

    return export_formats()
