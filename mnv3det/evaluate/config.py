"""The typed configs of evaluation: `EvalConfig` (what defines the numbers) and `ValConfig` (`mnv3det val`).

Defaults live here only: the CLI maps the options a user gives onto these fields and leaves the rest, the
Python API (`mnv3det.val`) takes the same names. Light to import (no torch), so `--help` can show the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from mnv3det.core.nms_checks import check_nms_values
from mnv3det.errors import UserError, option

if TYPE_CHECKING:
    from mnv3det.deploy.runtime.predictor import NmsSettings

SPLITS = ("val", "test", "train")  # train measures fit, not generalisation (val says so)


@dataclass(kw_only=True)
class EvalConfig:
    """How a split is evaluated (the numbers-defining part of `mnv3det val`)."""

    imgsz: int | None = None  # long side of the letterbox; None = the size the model was trained at, else 640
    batch: int = 32  # images per batch (rounded to a multiple of a static export's batch)
    conf: float = 0.001  # keep low for mAP: the PR curve needs the low-score boxes
    iou: float = 0.6  # NMS IoU threshold
    max_det: int = 300  # most boxes per image (COCO's AR100 needs 100)
    multi_label: bool = False  # one class per box, as YOLOv5's val
    coco: bool = True  # AP/AR from pycocotools; False = the fast in-process mAP only (per-epoch validation)
    workers: int = 2  # data loading worker processes (0 = in the main process)

    def validate(self) -> None:
        """Clear errors for values that cannot work, naming the option."""
        check_nms_values(conf=self.conf, iou=self.iou, max_det=self.max_det)
        for option, value in (("--batch", self.batch),):
            if value < 1:
                raise UserError(f"{option} {value}: must be a positive integer")
        if self.workers < 0:
            raise UserError(f"--workers {self.workers}: must be 0 or more")

    def nms(self) -> "NmsSettings":
        from mnv3det.deploy.runtime.predictor import NmsSettings

        return NmsSettings(conf=self.conf, iou=self.iou, max_det=self.max_det, multi_label=self.multi_label)


@dataclass(kw_only=True)
class ValConfig(EvalConfig):
    """Every option of `mnv3det val`: the EvalConfig fields plus what to open and where to write."""

    weights: Path  # a .pt checkpoint or an exported file
    data: str | None = None  # data yaml or dataset folder; None = the checkpoint's own data, else the demo set
    split: str = "val"  # val, test, or train (how well it fits its training images)
    device: str | None = None  # cpu, 0, cuda:0; None = a GPU when there is one
    threads: int | None = None  # CPU threads; None = the cores this process may use
    save_json: bool = False  # predictions.json in COCO results format
    plots: bool = True  # PR/F1 curves, confusion matrix, image mosaics
    project: Path = Path("runs/val")  # folder of run folders
    name: str = "exp"  # run folder name; exp2, exp3, ... when taken
    exist_ok: bool = False  # reuse project/name instead of a new folder

    def validate(self) -> None:
        """The EvalConfig checks, then the split name and the paths (no torch: the CLI asks before its imports)."""
        from mnv3det.core.near_files import missing_model
        from mnv3det.data.locate import check_data_path

        super().validate()
        if self.imgsz:  # an option's value before a path: the size rule (core/imgsz.py) is light too
            from mnv3det.core.imgsz import ImgSize

            ImgSize.parse(self.imgsz)
        if not Path(self.weights).exists():
            raise missing_model(self.weights)
        check_data_path(self.data)
        if self.split not in SPLITS:
            raise UserError(f"{option('split', self.split)}: use one of {', '.join(SPLITS)}")

    def eval_config(self, imgsz: int) -> EvalConfig:
        """The EvalConfig part, at the size resolved for the model."""
        values = {f.name: getattr(self, f.name) for f in fields(EvalConfig)}
        return EvalConfig(**{**values, "imgsz": imgsz})
