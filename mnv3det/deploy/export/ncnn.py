"""ncnn: the fused model traced by torch.jit, converted by `pnnx` (pip pnnx).

Folder: best_ncnn_model/{model.ncnn.param, model.ncnn.bin, metadata.json}; weights stored in float32 (`fp16=0`);
run by deploy/runtime/ncnn.py (whose docstring holds the accuracy and speed findings).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from mnv3det.deploy.runtime.metadata import write_metadata
from mnv3det.deploy.runtime.ncnn import BIN, PARAM
from mnv3det.errors import UserError


def write(job: Any, out: Path) -> None:
    """Trace the job's fused fp32 model, convert it with the pnnx binary and keep the ncnn files in `out`."""
    import pnnx

    b, _, h, w = job.shape
    if b != 1:
        raise UserError("--format ncnn: ncnn models take one image at a time; use --batch 1")
    with tempfile.TemporaryDirectory(prefix="mnv3det-pnnx-") as tmp:
        traced = Path(tmp) / "model.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarning for Detect's shape arithmetic; torch.jit deprecation
            torch.jit.trace(job.model, torch.zeros(job.shape), check_trace=False).save(str(traced))
        command = [pnnx.EXEC_PATH, str(traced), f"inputshape=[{b},3,{h},{w}]f32", "device=cpu", "fp16=0"]
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        param, weights = Path(tmp) / PARAM, Path(tmp) / BIN
        if done.returncode != 0 or not param.is_file() or not weights.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"pnnx failed (exit {done.returncode}): {' | '.join(tail)}")
        out.mkdir(parents=True, exist_ok=True)
        shutil.move(param, out / PARAM)
        shutil.move(weights, out / BIN)
    write_metadata(out, job.meta)


def update_metadata(folder: Path, meta: dict[str, Any]) -> None:
    write_metadata(folder, meta)
