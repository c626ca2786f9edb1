"""OpenVINO: `ov.convert_model` on the verified fp32 ONNX file, `ov.save_model` to an IR folder.

Folder: best_openvino_model/{best.xml, best.bin, metadata.json}, run by deploy/runtime/openvino.py. Weights are
stored in float32 (`compress_to_fp16=False`): fp16 storage halves the .bin but changes every weight slightly, and
the file is checked against PyTorch to float32 precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnv3det.deploy.runtime.metadata import write_metadata


def save(model: Any, folder: Path, stem: str, meta: dict[str, Any]) -> Path:
    """Write `model` (ov.Model) as folder/stem.xml + .bin with metadata.json beside it; returns the .xml path."""
    import openvino as ov

    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / f"{stem}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    write_metadata(folder, meta)
    return xml


def write(job: Any, out: Path) -> None:
    """Convert the job's fp32 ONNX file to OpenVINO IR in folder `out`."""
    import openvino as ov

    save(ov.convert_model(str(job.onnx_path)), out, job.stem, job.meta)


def update_metadata(folder: Path, meta: dict[str, Any]) -> None:
    write_metadata(folder, meta)
