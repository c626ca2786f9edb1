"""LiteRT float32 (`--format litert`, alias `tflite`): litert-torch converts the fused model to a .tflite file.

litert-torch traces the model with torch.export, lowers it to StableHLO and then to TFLite ops; the file keeps
PyTorch's signature, NCHW float32 in and the decoded (B, N, 5 + nc) out, so `detect`/`val` and an app read it as
any other export (runtime/litert.py). Detect writes (2 sigmoid)^2 as t * t because the converter rejects the 5-D
pow that `** 2` becomes. Checked like every float format: raw outputs within 1e-4 of PyTorch and the detections
after NMS (edge.py).

Converter failures are one line naming the op and the model source line it came from (`converter_error`), never
the converter's traceback. The conversion takes about 30 s for mnv3-small on an idle 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from mnv3det.core.atomic import AtomicOutput
from mnv3det.core.streams import spawn_children
from mnv3det.deploy.runtime.litert import METADATA_NAME, quiet_stderr
from mnv3det.errors import UserError


# Set while converting: litert-torch's progress lines (stdout) off. Restored afterwards.
QUIET_ENV = {"LITERT_TORCH_SHOW_PROGRESS": "n"}


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """The converter's own progress lines off while it runs (QUIET_ENV), its C++ log lines too (file descriptor 2:
    "oneDNN custom operations are on", the op count; failures still arrive as Python exceptions), and torch's
    pytree notice."""
    import logging

    before = {key: os.environ.get(key) for key in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    pytree = logging.getLogger("torch.utils._pytree")
    level = pytree.level
    pytree.setLevel(logging.ERROR)  # "KernelPreference is an Enum subclass ...", said when litert-torch loads
    try:
        with quiet_stderr():
            yield
    finally:
        pytree.setLevel(level)
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def converter_error(err: Exception, fmt: str) -> UserError:
    """One line for a failed conversion: the format, the TFLite op the converter could not lower and the model
    source line it came from, when its message names them (e.g. "op tfl.pow at mnv3det/models/detect.py:99")."""
    text = str(err)
    op = re.search(r"operation '([\w.]+)'", text)
    where = re.search(r"([\w./-]+\.py):(\d+)", text)
    found = [f"op {op.group(1)}" if op else "", f"at {where.group(1)}:{where.group(2)}" if where else ""]
    what = " ".join(part for part in found if part) or "the model"
    first = next((line.strip() for line in text.splitlines() if "error:" in line), "")
    reason = first.split("error:", 1)[-1].strip() if first else (text.splitlines()[0] if text else "")
    reason = re.sub(r"\s*%\d+ = .*", "", reason)[:160]  # drop the MLIR operation dump
    return UserError(f"--format {fmt}: the LiteRT converter failed on {what} ({type(err).__name__}: {reason}); "
                     "export --format onnx or openvino instead, and please report it with the checkpoint's recipe")


def convert(model: torch.nn.Module, shape: tuple[int, int, int, int], out: Path, fmt: str) -> None:
    """Write the float32 .tflite of `model` (fused, eval, CPU) for inputs of `shape` to `out`."""
    with _quiet_converter():
        import litert_torch

        spawn_children()  # litert_torch brought JAX, which runs threads: no os.fork() from here on

        try:
            with torch.no_grad():
                edge_model = litert_torch.convert(model, (torch.zeros(shape),))
        except Exception as err:  # an op the converter cannot lower: one line, no MLIR traceback
            raise converter_error(err, fmt) from None
        edge_model.export(str(out))


def set_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Store `meta` (JSON) in the .tflite metadata entry "mnv3det" (replacing an earlier one); atomic."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    raw = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(raw, 0)
    for buffer in model.buffers or []:  # data stored after the flatbuffer (the quantizer's output): inline it, since
        if buffer.offset > 1:  # repacking writes a new flatbuffer and would drop what follows the old one
            buffer.data = np.frombuffer(raw, dtype=np.uint8, count=buffer.size, offset=buffer.offset)
            buffer.offset = buffer.size = 0
    data = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if m.name in (METADATA_NAME, METADATA_NAME.decode())), None)
    if entry is None:  # a new buffer for the text, and the entry pointing at it
        buffer = schema.BufferT()
        buffer.data = data
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = METADATA_NAME.decode(), len(model.buffers) - 1
        model.metadata.append(entry)
    else:
        model.buffers[entry.buffer].data = data
    builder = flatbuffers.Builder(path.stat().st_size + data.size + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with AtomicOutput(path) as tmp:
        Path(tmp).write_bytes(bytes(builder.Output()))


def write(job: Any, out: Path) -> None:
    """The job's fused float32 model as a .tflite file at `out`, with the export metadata."""
    job.say("litert: converting with litert-torch (torch.export -> TFLite, about a minute)")
    convert(job.model, job.shape, out, job.meta.get("format", "litert"))
    set_metadata(out, job.meta)
    job.notes.append("litert-torch conversion, float32")


update_metadata = set_metadata  # after the checks: the same entry with their figures added
