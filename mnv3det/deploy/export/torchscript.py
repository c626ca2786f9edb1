"""TorchScript: the fused model traced by torch.jit, the export metadata in the file's `_extra_files`.

`write(job, out)` is what the export pipeline calls for `--format torchscript` (deploy/formats.py); run by
deploy/runtime/backends.py TorchScriptBackend. An --nms file calls torchvision's nms op: loading it needs
torchvision imported first (the backend does).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from mnv3det.deploy.runtime.metadata import TORCHSCRIPT_META_FILE


def write(job, out: Path) -> None:
    """Trace the job's model on its dummy input and save it with the metadata."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 marks torch.jit deprecated; it still works
        traced = torch.jit.trace(job.model, job.dummy(), strict=False, check_trace=False)
    traced.save(str(out), _extra_files={TORCHSCRIPT_META_FILE: json.dumps(job.meta)})
