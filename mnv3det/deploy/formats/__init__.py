"""Edge deployment formats: one module per runtime, each with an exporter, a Backend and a timing runner.

    format          written as (from best.pt)             runtime              package(s), extra `edge`
    openvino        best_openvino_model/best.xml + .bin   OpenVINO (CPU)       openvino
    openvino-int8   best_int8_openvino_model/             OpenVINO (CPU)       openvino, nncf
    ncnn            best_ncnn_model/model.ncnn.param+.bin ncnn (CPU)           ncnn, pnnx
    onnx-int8       best_int8.onnx                        onnxruntime (CPU)    onnxruntime (extra `export`)

Every format runs the whole graph, Detect decode included, so its output is the decoded Tensor (B, N, 5 + nc)
that `val` and `detect` read from any backend. A folder format holds `metadata.json` (the same description an
.onnx file keeps in its metadata_props, see `mnv3det.deploy.backends.export_metadata`), so it runs alone.

The export pipeline (deploy/edge_export.py) and the loader hook (`load_backend`) reach the modules through this
registry only; importing it needs none of the optional packages.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from mnv3det.errors import UserError

METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class EdgeFormat:
    """One deployable format: its --format name, the module that implements it and what it needs."""

    name: str
    module: str  # under mnv3det.deploy.formats
    packages: tuple[tuple[str, str], ...]  # (import name, extra that installs it)
    runtime: str  # the engine that runs it, for tables
    int8: bool = False
    folder_suffix: str | None = None  # "_openvino_model": a folder format; None: one file
    file_suffix: str = ""  # ".onnx" for a file format

    def output_for(self, weights: Path) -> Path:
        """Default output next to `weights`: best.pt -> best_openvino_model/ (or best_int8.onnx)."""
        stem = weights.with_suffix("").name + ("_int8" if self.int8 else "")
        if self.folder_suffix:
            return weights.parent / f"{stem}{self.folder_suffix}"
        return weights.parent / f"{stem}{self.file_suffix}"

    def load(self) -> ModuleType:
        """The implementing module; a clear one-line error naming the extra when a package is missing."""
        require(self.packages, f"--format {self.name}")
        return importlib.import_module(f"mnv3det.deploy.formats.{self.module}")


FORMATS: dict[str, EdgeFormat] = {
    f.name: f
    for f in (
        EdgeFormat("openvino", "openvino", (("openvino", "edge"),), "OpenVINO", folder_suffix="_openvino_model"),
        EdgeFormat(
            "openvino-int8", "openvino_int8", (("openvino", "edge"), ("nncf", "edge")), "OpenVINO", True,
            folder_suffix="_openvino_model",
        ),
        EdgeFormat("ncnn", "ncnn", (("ncnn", "edge"), ("pnnx", "edge")), "ncnn", folder_suffix="_ncnn_model"),
        EdgeFormat(
            "onnx-int8", "onnx_int8", (("onnx", "export"), ("onnxruntime", "export")), "onnxruntime", True,
            file_suffix=".onnx",
        ),
    )
}


def require(packages: tuple[tuple[str, str], ...], what: str) -> None:
    """UserError (one line) naming the pip extra to install when any of `packages` cannot be imported."""
    missing = [(name, extra) for name, extra in packages if importlib.util.find_spec(name) is None]
    if missing:
        names = ", ".join(name for name, _ in missing)
        extras = ",".join(sorted({extra for _, extra in missing}))
        raise UserError(f"{what} needs {names}, which is not installed: pip install 'mnv3det[{extras}]'")


def edge_format(name: str) -> EdgeFormat | None:
    return FORMATS.get(name.lower().replace("_", "-"))


def folder_format(path: Path) -> EdgeFormat | None:
    """The runtime format of an exported folder (or of a file inside one): OpenVINO .xml or ncnn .param."""
    folder = path if path.is_dir() else path.parent
    if path.suffix == ".xml" or (path.is_dir() and any(folder.glob("*.xml"))):
        return FORMATS["openvino"]
    if path.suffix == ".param" or (path.is_dir() and any(folder.glob("*.ncnn.param"))):
        return FORMATS["ncnn"]
    return None


def backend_loader(path: Path) -> Callable[[Path, Any, int | None], Any] | None:
    """The Backend loader for an exported folder (or its .xml/.param file); None when `path` is none of them.

    This is the hook `mnv3det.deploy.backends.load_backend` asks when no suffix in its BACKENDS matches
    (a folder has no suffix of its own, and users may rename it).
    """
    fmt = folder_format(path) if path.exists() else None
    if fmt is None:
        return None
    return lambda p, device, threads=None: fmt.load().Backend(p, device, threads)


def write_metadata(folder: Path, meta: dict[str, Any]) -> None:
    """metadata.json in an exported folder, written atomically (temp file + os.replace)."""
    tmp = folder / f".{METADATA_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, folder / METADATA_FILE)


def read_metadata(folder: Path) -> dict[str, Any]:
    """The folder's metadata.json checked like an .onnx file's metadata (clear error when absent or foreign)."""
    from mnv3det.deploy.backends import _check_metadata

    file = folder / METADATA_FILE
    try:
        meta = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}
    return _check_metadata(meta, file)  # errors name the metadata.json a user may have edited


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
