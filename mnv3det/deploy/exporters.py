"""One writer per export format, in a registry: `EXPORTERS[format] = Exporter(suffix, write, latency, needs)`.

`mnv3det.deploy.export.export_model` prepares the model (BN fused, eval, float16 body with --half), looks the
format up here, writes the file, opens it with `load_backend` (the runtime registered for its suffix in
`mnv3det.deploy.backends.BACKENDS`) and verifies it. A new format adds an `Exporter` with `register_exporter`
and a backend with `register_backend`; nothing else changes.

ONNX exporter choice: torch 2.14 defaults to the torch.export-based ("dynamo") ONNX exporter, which needs the
`onnxscript` package (not a dependency of mnv3det, and not installed here). The TorchScript-based exporter
(`dynamo=False`) needs only torch, maps nn.Hardswish/nn.Hardsigmoid to the ONNX HardSwish/HardSigmoid ops
(opset >= 14) and handles `dynamic_axes` for batch and image size, which the tests check at two sizes;
so we use it and silence its deprecation warning.
"""

from __future__ import annotations

import json
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mnv3det.core.threads import ort_session_options
from mnv3det.deploy.backends import TORCHSCRIPT_META_FILE, Backend
from mnv3det.deploy.timing import time_runner
from mnv3det.errors import UserError

MIN_OPSET = 14  # HardSwish arrived in opset 14


def max_opset() -> int:
    """The newest opset torch's TorchScript-based ONNX exporter (the one used here, see above) can write."""
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", getattr(_constants, "ONNX_MAX_OPSET", 20)))


@dataclass(frozen=True)
class ExportSettings:
    """What a writer needs beyond the model and the dummy input (a subset of ExportConfig)."""

    dynamic: bool
    opset: int
    simplify: str | None  # the simplifier's module name, or None


@dataclass(frozen=True)
class Exporter:
    """One export format."""

    suffix: str  # the file (or folder) name ending `load_backend` knows it by
    write: Callable[[torch.nn.Module, torch.Tensor, Path, dict, ExportSettings], None]  # model, dummy, path, meta
    latency: Callable[[Path, Backend, tuple, int, int], tuple[float, str]]  # path, backend, shape, runs, threads
    needs: tuple[str, ...] = ()  # importable modules it needs (a clear error names the extra when one is missing)
    extra: str = "export"  # the pip extra that installs them


def latency_ms(run: Callable[[Any], Any], x: Any, runs: int, warmup: int = 2) -> float:
    """Median milliseconds of `run(x)` over `runs` timed calls after `warmup` untimed ones."""
    return statistics.median(time_runner(run, x, runs, warmup))


def ort_cpu_session(path: str | Path, threads: int | None = 2):
    """An onnxruntime CPU InferenceSession with the settings `detect`/`val` use (`ort_session_options`)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=ort_session_options(threads), providers=["CPUExecutionProvider"])


def onnx_latency_ms(path: str | Path, shape: tuple[int, int, int, int], threads: int = 2, runs: int = 20) -> float:
    """Median latency (ms) of one onnxruntime CPU run of `path` on a random input of `shape`."""
    session = ort_cpu_session(path, threads)
    inp = session.get_inputs()[0]
    dtype = np.float16 if "float16" in inp.type else np.float32
    x = np.random.default_rng(0).random(shape, dtype=np.float32).astype(dtype)
    return latency_ms(lambda a: session.run(None, {inp.name: a}), x, runs)


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
    model, dummy, path: Path, meta: dict, opset: int = 17, dynamic: bool = False, simplify: str | None = None
) -> None:
    """Export `model` (eval, BN fused) traced on `dummy` to `path`, with `meta` as the file's metadata; checked."""
    import onnx

    dynamic_axes = (
        {"images": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 1: "anchors"}} if dynamic else None
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy-exporter notice (see the module docstring)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape-to-int conversions in Detect's grid code
        torch.onnx.export(
            model, (dummy,), str(path), dynamo=False, opset_version=opset, input_names=["images"],
            output_names=["output"], dynamic_axes=dynamic_axes, do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    if simplify:
        proto = _simplify(proto, simplify)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "mnv3det", json.dumps(meta)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def _onnx_write(model, dummy, path: Path, meta: dict, settings: ExportSettings) -> None:
    write_onnx(model, dummy, path, meta, settings.opset, settings.dynamic, settings.simplify)


def _onnx_latency(path: Path, backend: Backend, shape: tuple, runs: int, threads: int) -> tuple[float, str]:
    return onnx_latency_ms(path, shape, threads=threads, runs=runs), f"onnxruntime CPU, {threads} threads"


def _torchscript_write(model, dummy, path: Path, meta: dict, settings: ExportSettings) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 marks torch.jit deprecated; it still works
        traced = torch.jit.trace(model, dummy, strict=False, check_trace=False)
    traced.save(str(path), _extra_files={TORCHSCRIPT_META_FILE: json.dumps(meta)})


def _torchscript_latency(path: Path, backend: Backend, shape: tuple, runs: int, threads: int) -> tuple[float, str]:
    x = torch.rand(*shape, device=backend.device, dtype=backend.dtype)
    with torch.inference_mode():
        ms = latency_ms(backend.module, x, runs)
    return ms, f"torch.jit {backend.device.type}, {torch.get_num_threads()} threads"


# Format name (the --format value) -> its exporter. New formats register here (see the module docstring).
EXPORTERS: dict[str, Exporter] = {
    "onnx": Exporter(".onnx", _onnx_write, _onnx_latency, needs=("onnx", "onnxruntime")),
    "torchscript": Exporter(".torchscript", _torchscript_write, _torchscript_latency),
}


def register_exporter(name: str, exporter: Exporter) -> None:
    """Offer `--format name` (written by `exporter`)."""
    EXPORTERS[name.lower()] = exporter


def get_exporter(name: str) -> Exporter:
    """The exporter of `--format name`, checked for its packages; a clear error otherwise."""
    exporter = EXPORTERS.get(name.lower())
    if exporter is None:
        from mnv3det.deploy.formats import FORMATS  # the edge formats, exported by `edge_export`

        raise UserError(f"--format {name!r} is not supported; use one of {', '.join([*EXPORTERS, *FORMATS])}")
    import importlib.util

    missing = [m for m in exporter.needs if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"--format {name} needs {', '.join(missing)}, which is not installed: pip install mnv3det[{exporter.extra}]"
        )
    return exporter
