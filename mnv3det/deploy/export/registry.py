"""Every export format, in one registry: `FORMATS[name] = ExportFormat(...)`, one module per format in this package.

    format          written as (from best.pt)             runtime              package(s) (extra)
    onnx            best.onnx (dynamic or static)         onnxruntime          onnx, onnxruntime (export)
    torchscript     best.torchscript                      torch.jit            -
    openvino        best_openvino_model/best.xml + .bin   OpenVINO (CPU)       openvino (edge)
    openvino-int8   best_int8_openvino_model/             OpenVINO (CPU)       openvino, nncf (edge)
    ncnn            best_ncnn_model/model.ncnn.param+.bin ncnn (CPU)           ncnn, pnnx (edge)
    onnx-int8       best_int8.onnx                        onnxruntime (CPU)    onnx, onnxruntime (export)
    litert          best.tflite (alias tflite)            LiteRT interpreter   litert-torch, ai-edge-litert (litert)
    litert-int8     best_int8.tflite                      LiteRT interpreter   + ai-edge-quantizer (litert)
    coreml          best.mlpackage (ML Program, fp16)     Core ML (macOS/iOS)  coremltools (coreml)
    coreml-int8     best_int8.mlpackage (int8 weights)    Core ML (macOS/iOS)  coremltools (coreml)

Every format runs the whole graph, Detect decode included, so its output is the decoded Tensor (B, N, 5 + nc)
that `val` and `detect` read from any backend, and it carries the export metadata (deploy/runtime/metadata.py).

Two pipelines write them (`ExportFormat.edge` says which): pipeline.py (`export_model`: dynamic or static input,
--half, --opset; raw outputs and boxes vs PyTorch) for onnx and torchscript, whose modules have
`write(model, dummy, path, meta, settings)` and `latency(path, backend, shape, runs, threads)`; edge.py
(`export_edge`: static input, INT8 calibration, detections vs PyTorch after NMS) for the others, whose modules
have `export(job, out)` and `update_metadata(path, meta)`. What runs a written file lives in deploy/runtime.
The CLI, the Python API and `benchmark` reach the formats through this registry only; importing it needs none of
the optional packages.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from mnv3det.core.extras import require
from mnv3det.errors import UserError


@dataclass(frozen=True)
class ExportFormat:
    """One deployable format: its --format name, the module that implements it and what it needs."""

    name: str
    module: str  # under mnv3det.deploy.export.pipeline
    packages: tuple[tuple[str, str], ...]  # (import name, extra that installs it)
    runtime: str  # the engine that runs it, for tables
    int8: bool = False
    folder_suffix: str | None = None  # "_openvino_model": a folder format; None: one file
    file_suffix: str = ""  # ".onnx" for a file format
    edge: bool = True  # written by edge.export_edge (static); False: pipeline.export_model (onnx, torchscript)

    def output_for(self, weights: Path) -> Path:
        """Default output next to `weights`: best.pt -> best_openvino_model/ (or best_int8.onnx)."""
        stem = weights.with_suffix("").name + ("_int8" if self.int8 else "")
        if self.folder_suffix:
            return weights.parent / f"{stem}{self.folder_suffix}"
        return weights.parent / f"{stem}{self.file_suffix}"

    def load(self) -> ModuleType:
        """The implementing module; a clear one-line error naming the extra when a package is missing."""
        require(self.packages, f"--format {self.name}")
        return importlib.import_module(f"mnv3det.deploy.export.{self.module}")


@dataclass(frozen=True)
class ExportSettings:
    """What an onnx/torchscript writer needs beyond the model and the dummy input (a subset of ExportConfig)."""

    dynamic: bool
    opset: int
    simplify: str | None  # the simplifier's module name, or None


_ONNX = (("onnx", "export"), ("onnxruntime", "export"))
_LITERT = (("litert_torch", "litert"), ("ai_edge_litert", "litert"))
_COREML = (("coremltools", "coreml"),)

FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", "onnx", _ONNX, "onnxruntime", file_suffix=".onnx", edge=False),
        ExportFormat("torchscript", "torchscript", (), "torch.jit", file_suffix=".torchscript", edge=False),
        ExportFormat("openvino", "openvino", (("openvino", "edge"),), "OpenVINO", folder_suffix="_openvino_model"),
        ExportFormat(
            "openvino-int8", "openvino_int8", (("openvino", "edge"), ("nncf", "edge")), "OpenVINO", True,
            folder_suffix="_openvino_model",
        ),
        ExportFormat("ncnn", "ncnn", (("ncnn", "edge"), ("pnnx", "edge")), "ncnn", folder_suffix="_ncnn_model"),
        ExportFormat("onnx-int8", "onnx_int8", _ONNX, "onnxruntime", True, file_suffix=".onnx"),
        ExportFormat("litert", "litert", _LITERT, "LiteRT", file_suffix=".tflite"),
        ExportFormat("litert-int8", "litert_int8", (*_LITERT, ("ai_edge_quantizer", "litert")), "LiteRT", True,
                     file_suffix=".tflite"),
        ExportFormat("coreml", "coreml", _COREML, "Core ML", folder_suffix=".mlpackage"),
        ExportFormat("coreml-int8", "coreml", _COREML, "Core ML", folder_suffix="_int8.mlpackage"),  # weight-only
    )
}
ALIASES: dict[str, str] = {"tflite": "litert", "tflite-int8": "litert-int8"}  # another name -> the format's name


def export_format(name: str) -> ExportFormat | None:
    """The format called `name` (any case, `_` for `-`, or an alias); None when there is none."""
    key = name.lower().replace("_", "-")
    return FORMATS.get(ALIASES.get(key, key))


def known_format(name: str) -> ExportFormat:
    """The format called `name`; a UserError listing every format when there is none (no package is imported)."""
    fmt = export_format(name)
    if fmt is None:
        raise UserError(f"--format {name!r} is not supported; use one of {', '.join(FORMATS)}")
    return fmt


def edge_format(name: str) -> ExportFormat | None:
    """The format called `name` when `edge.export_edge` writes it (static input, verified after NMS); else None."""
    fmt = export_format(name)
    return fmt if fmt is not None and fmt.edge else None


def get_exporter(name: str) -> ExportFormat:
    """The onnx/torchscript format called `name` (written by pipeline.export_model), its packages checked; a clear
    error otherwise."""
    fmt = known_format(name)
    if fmt.edge:
        raise UserError(f"--format {name!r} is an edge format, written by deploy.export.edge; this path writes "
                        "onnx and torchscript")
    fmt.load()
    return fmt
