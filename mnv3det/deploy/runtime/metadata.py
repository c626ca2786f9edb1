"""The description every exported file carries, so `detect`/`val` can run it alone: class names, strides, input shape,
trained size (`export_metadata`), and how it is read back and checked (`check_metadata`).

Where it lives: ONNX in `metadata_props["mnv3det"]`, TorchScript in the `_extra_files` entry `config.json`
(`TORCHSCRIPT_META_FILE`), folder formats (OpenVINO, ncnn) in `metadata.json` (`METADATA_FILE`); each holds the
JSON object of `export_metadata` (key `mnv3det` = `METADATA_FORMAT`). Written by deploy/export, read by the
backends here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mnv3det.core.imgsz import ImgSize
from mnv3det.errors import UserError

METADATA_FORMAT = "mnv3det-export/1"
TORCHSCRIPT_META_FILE = "config.json"
METADATA_FILE = "metadata.json"


def export_metadata(
    names: list[str],
    strides: list[int],
    imgsz: tuple[int, int],
    batch: int,
    dynamic: bool,
    half: bool,
    recipe: str,
    train_imgsz: int | None = None,
    nms: dict[str, Any] | None = None,
    objectness: bool = True,
) -> dict[str, Any]:
    """The description stored in an exported file (read back by the backends below).

    imgsz: the (h, w) the file was exported (traced) at; train_imgsz: the size its checkpoint was trained at;
    nms: {"conf", "iou", "max_det"} when the file ends in NMS (`export --nms`: its outputs are final detections,
    deploy/export/end_to_end.py), else None; objectness: the raw rows are 5 + nc (YOLOv5's head) rather than 4 + nc
    (the anchor-free head).
    """
    return {
        "mnv3det": METADATA_FORMAT,
        "names": list(names),
        "nc": len(names),
        "strides": [int(s) for s in strides],
        "stride": int(max(strides)),
        "imgsz": [int(imgsz[0]), int(imgsz[1])],
        "batch": int(batch),
        "dynamic": bool(dynamic),
        "half": bool(half),
        "recipe": recipe,
        "train_imgsz": int(train_imgsz) if train_imgsz else None,
        "nms": dict(nms) if nms else None,
        "objectness": bool(objectness),
    }


def meta_objectness(meta: dict[str, Any]) -> bool:
    """Whether the file's raw rows carry an objectness column (5 + nc); files made before the key existed all came
    from YOLOv5's head, so a missing key means yes."""
    return bool(meta.get("objectness", True))


def meta_nms(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The NMS settings an end-to-end file holds ({"conf", "iou", "max_det"}), None for raw outputs."""
    return meta.get("nms") or None


def meta_imgsz(meta: dict[str, Any]) -> ImgSize | None:
    """The default size of an export: its trained size, else the size it was exported at (older files)."""
    value = meta.get("train_imgsz") or meta.get("imgsz")
    return ImgSize.parse(value) if value else None


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_metadata(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """The export metadata of `path` (a file, or a folder's metadata.json), checked key by key: a file edited by
    hand gets one line naming the file and the key, not an IndexError or ZeroDivisionError later."""
    if meta.get("mnv3det") != METADATA_FORMAT or not isinstance(meta.get("names"), list):
        raise UserError(
            f"{path} has no mnv3det export metadata (class names, strides); "
            "export it with `mnv3det export --weights CHECKPOINT.pt` so detect/val can run it alone"
        )

    def bad(key: str, why: str) -> UserError:
        return UserError(f"{path}: export metadata key '{key}' {why}; it was edited or damaged: export the checkpoint "
                         "again with `mnv3det export` (or restore the value)")

    names, strides = meta["names"], meta.get("strides")
    if not names or not all(isinstance(n, str) for n in names):
        raise bad("names", f"is {names!r}: it must list the model's class names, one string per class")
    if meta.get("nc", len(names)) != len(names):
        raise bad("nc", f"is {meta['nc']!r} but 'names' lists {len(names)} classes")
    if not _positive_int(meta.get("stride")):
        raise bad("stride", f"is {meta.get('stride')!r}: it must be the model's largest stride, a positive integer "
                  "(e.g. 32)")
    if strides is not None and (not isinstance(strides, list) or not strides or not all(map(_positive_int, strides))
                                or max(strides) != meta["stride"]):
        raise bad("strides", f"is {strides!r}: it must list the positive strides of the outputs, the largest equal to "
                  f"'stride' ({meta['stride']})")
    imgsz = meta.get("imgsz")
    if not (isinstance(imgsz, list) and len(imgsz) == 2 and all(map(_positive_int, imgsz))):
        raise bad("imgsz", f"is {imgsz!r}: it must be the [height, width] the file was exported at")
    if not isinstance(meta.get("objectness", True), bool):
        raise bad("objectness", f"is {meta['objectness']!r}: it must be true (YOLOv5 head) or false (anchor-free head)")
    if not _positive_int(meta.get("batch", 1)):
        raise bad("batch", f"is {meta.get('batch')!r}: it must be a positive integer")
    if meta.get("train_imgsz") is not None and not _positive_int(meta["train_imgsz"]):
        raise bad("train_imgsz", f"is {meta['train_imgsz']!r}: it must be a positive integer or null")
    nms = meta.get("nms")
    if nms is not None and not (
        isinstance(nms, dict) and all(isinstance(nms.get(k), (int, float)) and 0 <= nms[k] <= 1 for k in ("conf", "iou"))
        and _positive_int(nms.get("max_det"))
    ):
        raise bad("nms", f"is {nms!r}: it must be null or the NMS the file holds, {{conf, iou (0-1), max_det}}")
    return meta


def write_metadata(folder: Path, meta: dict[str, Any]) -> None:
    """metadata.json in an exported folder, written atomically (temp file + os.replace)."""
    tmp = folder / f".{METADATA_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, folder / METADATA_FILE)


def read_metadata(folder: Path) -> dict[str, Any]:
    """The folder's metadata.json checked like an .onnx file's metadata (clear error when absent or foreign)."""
    file = folder / METADATA_FILE
    try:
        meta = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}
    return check_metadata(meta, file)  # errors name the metadata.json a user may have edited


def model_folder(path: Path, pattern: str) -> tuple[Path, Path]:
    """(folder, model file matching `pattern`) for an exported folder or a file inside it; clear error if absent."""
    folder = path if path.is_dir() else path.parent
    if not path.is_dir():
        return folder, path
    files = sorted(folder.glob(pattern))
    if len(files) != 1:
        raise UserError(
            f"{folder}: expected one {pattern} file inside, found {len(files)}; pass the folder `mnv3det export` wrote"
        )
    return folder, files[0]
