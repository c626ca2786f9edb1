"""TorchScript: the fused model traced by torch.jit, the export metadata in the file's `_extra_files`.

`write` and `latency` are what pipeline.export_model calls for `--format torchscript` (registry.py); run by
deploy/runtime/backends.py TorchScriptBackend.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from mnv3det.deploy.export.registry import ExportSettings
from mnv3det.deploy.runtime.backends import Backend
from mnv3det.deploy.runtime.metadata import TORCHSCRIPT_META_FILE
from mnv3det.deploy.runtime.timing import latency_ms


def write(model, dummy, path: Path, meta: dict, settings: ExportSettings) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 marks torch.jit deprecated; it still works
        traced = torch.jit.trace(model, dummy, strict=False, check_trace=False)
    traced.save(str(path), _extra_files={TORCHSCRIPT_META_FILE: json.dumps(meta)})


def latency(path: Path, backend: Backend, shape: tuple, runs: int, threads: int) -> tuple[float, str]:
    x = torch.rand(*shape, device=backend.device, dtype=backend.dtype)
    with torch.inference_mode():
        ms = latency_ms(backend.module, x, runs)
    return ms, f"torch.jit {backend.device.type}, {torch.get_num_threads()} threads"
