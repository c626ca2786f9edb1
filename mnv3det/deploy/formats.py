"""Every model format, one record each: what `export` writes, what `load_backend` opens, what `val`, `detect`,
timing and `benchmark` run. Data only (imports nothing but core), so every layer of deploy reads it.

A record names two modules: its writer under mnv3det.deploy.export (`write(job, out)`, plus `update_metadata(path,
meta)` for INT8 formats, whose metadata gains the mAP report after the check) and its runtime under
mnv3det.deploy.runtime (`Backend(path, device, threads)`, `runner(path, threads) -> (run, input shape)` and
`runs_here()`). Adding a format means adding its writer module (and a runtime module when no existing one runs
it) and one record below; tests/test_formats.py checks every record is complete.

Which export options each format takes is `options`; everything else is refused in one line naming the option.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from mnv3det.core.extras import require
from mnv3det.errors import UserError

# Options every writer takes; the rest a record lists in `options` (names as ExportConfig fields).
COMMON_OPTIONS = ("format", "imgsz", "batch", "output", "image", "data", "runs", "threads", "verify", "nms", "conf",
                  "iou", "max_det")
INT8_OPTIONS = ("calib_images",)


@dataclass(frozen=True)
class Format:
    """One model format (see the module doc)."""

    name: str  # the --format name
    title: str  # the runtime, for tables ("OpenVINO")
    runtime: str  # module under mnv3det.deploy.runtime that opens and runs it
    writer: str | None  # module under mnv3det.deploy.export that writes it; None: not an export (the .pt)
    suffix: str  # ".onnx" (a file) or "_openvino_model" (a folder, `folder` True)
    opens: tuple[str, ...]  # file suffixes its runtime opens (".xml"); a folder holding `folder_glob` opens too
    packages: tuple[tuple[str, str], ...] = ()  # (import name, extra) the writer needs
    runtime_packages: tuple[tuple[str, str], ...] = ()  # what running a file needs
    aliases: tuple[str, ...] = ()
    folder: bool = False
    folder_glob: str | None = None  # "*.xml": an exported folder (best_openvino_model/)
    dynamic: bool = False  # can be exported with any batch and size (then its default)
    half: bool = False  # --half (float16 body, CUDA)
    int8: bool = False  # INT8: judged by its mAP on val, not by raw outputs
    calibration: bool = False  # INT8 activations calibrated on --data's train split (else weight-only)
    nms_refusal: str = ""  # "" = `--nms` can be held in the file; else why not, one line
    options: tuple[str, ...] = ()  # export options beyond COMMON_OPTIONS it takes
    input: str = "images float32 (B, 3, H, W)"  # what the file's input is, for the README table
    timed: bool = True  # a `benchmark` row
    reference: bool = False  # a candidate for yolov5n's fastest format in `benchmark`

    @property
    def end_to_end(self) -> bool:
        return not self.nms_refusal

    def accepts(self, option: str) -> bool:
        return option in COMMON_OPTIONS or option in self.options

    def output_for(self, weights: Path, nms: bool = False) -> Path:
        """Default output next to `weights`: best.pt -> best_openvino_model/ (best_int8.onnx, best_nms.onnx)."""
        stem = weights.with_suffix("").name + ("_int8" if self.int8 else "") + ("_nms" if nms else "")
        return weights.parent / f"{stem}{self.suffix}"

    def writer_module(self) -> ModuleType:
        """The writer; a clear one-line error naming the extra when a package is missing."""
        if self.writer is None:
            raise UserError(f"--format {self.name}: the checkpoint itself; nothing to export")
        require(self.packages, f"--format {self.name}")
        return importlib.import_module(f"mnv3det.deploy.export.{self.writer}")

    def runtime_module(self) -> ModuleType:
        """The runtime; a clear one-line error naming the extra when a package is missing."""
        require(self.runtime_packages, f"running a {self.name} model")
        return importlib.import_module(f"mnv3det.deploy.runtime.{self.runtime}")

    def opens_path(self, path: Path) -> bool:
        """Whether `path` (an existing file or folder) is a model this format's runtime opens."""
        if path.suffix.lower() in self.opens:
            return True
        return self.folder_glob is not None and path.is_dir() and any(path.glob(self.folder_glob))


_ORT = (("onnxruntime", "export"),)
_ONNX = (("onnx", "export"), *_ORT)
_OV = (("openvino", "edge"),)
_LITERT_RUN = (("ai_edge_litert", "litert"),)
_LITERT = (("litert_torch", "litert"), *_LITERT_RUN)
_COREML = (("coremltools", "coreml"),)
_TENSOR = "`images` float32 (B, 3, H, W): RGB, 0-1, letterboxed (pad 114)"
_IMAGE = "`images`: an RGB image H x W (0-255; the file divides by 255), letterboxed (pad 114)"
_NO_COREML_NMS = ("Core ML predicts only on macOS/iOS, so an NMS graph could not be checked against predict here; "
                  "export onnx --nms or run NMS in the app (Vision)")
_NO_LITERT_NMS = ("litert-torch converts through torch.export, which cannot hold NMS's data-dependent number of boxes; "
                  "export onnx --nms or run NMS in the app")

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("pytorch", "PyTorch", "pytorch", None, ".pt", (".pt",), reference=False,
               nms_refusal="the checkpoint itself; predict runs NMS", dynamic=True, input=_TENSOR),
        Format("torchscript", "torch.jit", "torchscript", "torchscript", ".torchscript", (".torchscript",),
               dynamic=True, half=True, options=("dynamic", "half", "device"), input=_TENSOR),
        Format("onnx", "onnxruntime", "onnx", "onnx", ".onnx", (".onnx",), _ONNX, _ORT, dynamic=True, half=True,
               options=("dynamic", "half", "device", "opset", "simplify"), input=_TENSOR, reference=True),
        Format("onnx-int8", "onnxruntime", "onnx", "onnx_int8", ".onnx", (".onnx",), _ONNX, _ORT, int8=True,
               calibration=True, options=INT8_OPTIONS, input=_TENSOR, reference=True),
        Format("openvino", "OpenVINO", "openvino", "openvino", "_openvino_model", (".xml",), (*_ONNX, *_OV), _OV,
               folder=True, folder_glob="*.xml", input=_TENSOR, reference=True),
        Format("openvino-int8", "OpenVINO", "openvino", "openvino_int8", "_openvino_model", (".xml",),
               (*_ONNX, *_OV, ("nncf", "edge")), _OV, folder=True, folder_glob="*.xml", int8=True, calibration=True,
               options=(*INT8_OPTIONS, "int8_max_drop"), input=_TENSOR, reference=True),
        Format("ncnn", "ncnn", "ncnn", "ncnn", "_ncnn_model", (".param",), (("ncnn", "edge"), ("pnnx", "edge")),
               (("ncnn", "edge"),), folder=True, folder_glob="*.ncnn.param", input=_TENSOR, reference=True,
               nms_refusal="pnnx converts no NonMaxSuppression op into ncnn layers; export onnx --nms or run NMS in "
               "the app"),
        Format("litert", "LiteRT", "litert", "litert", ".tflite", (".tflite",), _LITERT, _LITERT_RUN,
               aliases=("tflite",), nms_refusal=_NO_LITERT_NMS, input=_TENSOR, reference=True),
        Format("litert-int8", "LiteRT", "litert", "litert_int8", ".tflite", (".tflite",),
               (*_LITERT, ("ai_edge_quantizer", "litert")), _LITERT_RUN, aliases=("tflite-int8",), int8=True,
               calibration=True, options=INT8_OPTIONS, nms_refusal=_NO_LITERT_NMS, input=_TENSOR, reference=True),
        Format("coreml", "Core ML", "coreml", "coreml", ".mlpackage", (".mlpackage",), _COREML, _COREML, folder=True,
               nms_refusal=_NO_COREML_NMS, input=_IMAGE, timed=False),
        Format("coreml-int8", "Core ML", "coreml", "coreml", "_int8.mlpackage", (".mlpackage",), _COREML, _COREML,
               folder=True, nms_refusal=_NO_COREML_NMS, input=_IMAGE, timed=False),  # int8 weights only: checked as float
    )
}

RAW_OUTPUT = ("`output` float32 (B, N, 5 + nc): cx, cy, w, h in input pixels, objectness, class probabilities "
              "(anchor-free head: 4 + nc, class scores)")
NMS_OUTPUT = ("`detections` float32 (B, max_det, 6): x1, y1, x2, y2 in input pixels, score, class, zero rows after "
              "the image's `count` int64 (B,)")


def export_formats() -> list[Format]:
    """The formats `export` writes (every record but the checkpoint's)."""
    return [f for f in FORMATS.values() if f.writer is not None]


def find_format(name: str) -> Format | None:
    """The format called `name` (any case, `_` for `-`, or an alias); None when there is none."""
    key = name.lower().replace("_", "-")
    return next((f for f in FORMATS.values() if key == f.name or key in f.aliases), None)


def export_format(name: str, option: str = "--format") -> Format:
    """The export format called `name`, or a one-line error listing them."""
    fmt = find_format(name)
    if fmt is None or fmt.writer is None:
        names = ", ".join(f.name for f in export_formats())
        raise UserError(f"{option} {name!r} is not supported; use one of {names}")
    return fmt


def format_for_path(path: Path) -> Format | None:
    """The (first) format whose runtime opens `path`, a file or folder; None when none does. Formats sharing a
    runtime (onnx and onnx-int8) open alike: the file's metadata says which it is."""
    if not path.exists():
        return None
    return next((f for f in FORMATS.values() if f.opens_path(path)), None)


def io_table() -> str:
    """The README's table (markdown) of what each export expects and returns, from the records."""
    rows = ["| format | file | input | `--nms` |", "|---|---|---|---|"]
    for f in export_formats():
        nms = "yes" if f.end_to_end else f"no: {f.nms_refusal.split(';')[0]}"
        shape = "any batch and size (multiples of 32; `--static`: fixed)" if f.dynamic else "static: B, H, W fixed"
        rows.append(f"| `{f.name}` | `{f.output_for(Path('best.pt'))}` | {f.input}; {shape} | {nms} |")
    rows += ["", f"Output: {RAW_OUTPUT}; NMS is the app's. With `--nms`: {NMS_OUTPUT}; the app only undoes the "
             "letterbox (subtract the padding, divide by the scale)."]
    return "\n".join(rows)


if __name__ == "__main__":  # the README's table: python -m mnv3det.deploy.formats
    print(io_table())
