"""ONNX: the fused model written by torch's TorchScript-based ONNX exporter, checked by onnx.checker.

`write(job, out)` is what the export pipeline calls for `--format onnx` (deploy/formats.py); `write_onnx` also
makes the static fp32 file OpenVINO and ONNX INT8 start from (`ExportJob.onnx_path`) and `profile` times. Run by
onnxruntime (deploy/runtime/backends.py OnnxBackend).

ONNX exporter choice: torch 2.14 defaults to the torch.export-based ("dynamo") ONNX exporter, which needs the
`onnxscript` package (not a dependency of mnv3det, and not installed here). The TorchScript-based exporter
(`dynamo=False`) needs only torch, maps nn.Hardswish/nn.Hardsigmoid to the ONNX HardSwish/HardSigmoid ops
(opset >= 14) and handles `dynamic_axes` for batch and image size, which the tests check at two sizes;
so we use it and silence its deprecation warning.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from mnv3det.errors import UserError

MIN_OPSET = 14  # HardSwish arrived in opset 14


def max_opset() -> int:
    """The newest opset torch's TorchScript-based ONNX exporter (the one used here, see above) can write."""
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", getattr(_constants, "ONNX_MAX_OPSET", 20)))


def find_simplifier() -> str:
    """The name of an installed ONNX simplifier, or a clear error."""
    import importlib.util

    for name in ("onnxslim", "onnxsim"):
        if importlib.util.find_spec(name) is not None:
            return name
    raise UserError(
        "--simplify needs onnxslim or onnxsim, and neither is installed; "
        "`pip install onnxslim` or export without --simplify (the plain export runs fine in onnxruntime)"
    )


def _simplify(proto, tool: str):
    if tool == "onnxslim":
        import onnxslim

        return onnxslim.slim(proto)
    import onnxsim

    simplified, ok = onnxsim.simplify(proto)
    if not ok:
        raise UserError("onnxsim could not validate the simplified model; export without --simplify")
    return simplified


def write_onnx(
    model, dummy, path: Path, meta: dict, opset: int = 17, dynamic: bool = False, simplify: str | None = None,
    output_names: list[str] | None = None, input_names: list[str] | None = None,
) -> None:
    """Export `model` (eval, BN fused) traced on `dummy` to `path`, with `meta` as the file's metadata; checked.
    output_names: ["output"] (raw) or end_to_end.OUTPUT_NAMES (an --nms model: detections, count)."""
    import onnx
    import torch

    output_names = output_names or ["output"]
    axes = {"output": {0: "batch", 1: "anchors"}, "detections": {0: "batch"}, "count": {0: "batch"}}
    input_names = input_names or ["images"]
    dynamic_axes = (
        {"images": {0: "batch", 2: "height", 3: "width"}, **{n: axes[n] for n in output_names}} if dynamic else None
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy-exporter notice (see the module docstring)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape-to-int conversions in Detect's grid code
        torch.onnx.export(
            model, (dummy,), str(path), dynamo=False, opset_version=opset, input_names=input_names,
            output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    if simplify:
        proto = _simplify(proto, simplify)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "mnv3det", json.dumps(meta)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def write(job, out: Path) -> None:
    """The job's model as an ONNX file at `out` (dynamic or static, --opset, --simplify)."""
    config = job.config
    simplify = find_simplifier() if config.simplify else None
    write_onnx(job.model, job.dummy(), out, job.meta, config.opset, job.dynamic, simplify, job.output_names)
