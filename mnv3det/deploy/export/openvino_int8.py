"""OpenVINO INT8: nncf post-training quantization of the OpenVINO model converted from the fp32 ONNX file.

Folder: best_int8_openvino_model/{best.xml, best.bin, metadata.json}; runs with the OpenVINO Backend (deploy/runtime/openvino.py).

nncf's MIXED preset (symmetric int8 weights, asymmetric activations) over the calibration images, with the
Detect decode kept in float through an IgnoredScope: boxes in pixels and probabilities share its output, and
one int8 scale cannot resolve both (see onnx_int8.py). With `head_float` the Detect 1x1 convs stay float too.

Accuracy control (default when the data has a val split and `max_drop` is set):
`nncf.quantize_with_accuracy_control` measures mAP50-95 of the float and the INT8 model on the val split and,
while the drop exceeds `max_drop` (absolute, 0.01 = 1 point), ranks the quantized layers by their effect on it
and returns them to float, most harmful first. Without a val split it falls back to plain `nncf.quantize`, and the
pipeline still reports the drop it measures.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from mnv3det.deploy.export.onnx_int8 import HEAD_BRANCHES, detect_scope
from mnv3det.deploy.export.openvino import save, update_metadata  # noqa: F401 (the same files as fp32)
from mnv3det.deploy.runtime.openvino import Backend, keep_signal_stack


def import_nncf() -> Any:
    """nncf, without torch's "No CUDA runtime is found, using CUDA_HOME=..." line.

    nncf imports torch.utils.cpp_extension, whose import looks for a CUDA toolkit and logs that warning on a
    machine that has the toolkit but no usable GPU. Nothing here compiles CUDA code, so the line only confuses: its
    logger is muted for that one import (a later import of the module is cached and logs nothing)."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension  # noqa: F401
    finally:
        log.setLevel(level)
    import nncf

    return nncf


def ignored_scope(scope: str, head_float: bool) -> Any:
    """nncf IgnoredScope for every op under the Detect module (its 1x1 convs too when `head_float`)."""
    nncf = import_nncf()

    prefix = re.escape(scope) + rf"(?!{re.escape(HEAD_BRANCHES)})"  # the anchor-free head's branches: quantized
    pattern = f"^{prefix}.*" if head_float else rf"^{prefix}(?!(m|box_pred|cls_pred)\.\d+/Conv).*"
    return nncf.IgnoredScope(patterns=[pattern], validate=False)


def export(job: Any, out: Path) -> None:
    import openvino as ov

    nncf = import_nncf()

    logging.getLogger("nncf").setLevel(logging.WARNING)  # its INFO lines would mix into our table (and --json)
    model = ov.convert_model(str(job.onnx_path))
    calibration = nncf.Dataset(job.calibration)
    common = dict(
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(job.calibration),
        ignored_scope=ignored_scope(detect_scope(job.model), job.options.head_float),
    )
    if job.val_records and job.options.max_drop is not None:
        meta = job.meta

        def validate(compiled: Any, records: Any) -> float:
            return job.score(Backend.wrap(compiled, meta), list(records)).map

        with keep_signal_stack():  # nncf compiles models of its own (see keep_signal_stack)
            quantized = nncf.quantize_with_accuracy_control(
                model,
                calibration_dataset=calibration,
                validation_dataset=nncf.Dataset(job.val_records),
                validation_fn=validate,
                max_drop=job.options.max_drop,
                drop_type=nncf.DropType.ABSOLUTE,
                **common,
            )
        job.notes.append(f"nncf accuracy control, max drop {job.options.max_drop:g} mAP50-95")
    else:
        with keep_signal_stack():
            quantized = nncf.quantize(model, calibration, **common)
        job.notes.append("nncf quantize (no accuracy control)")
    save(quantized, out, job.stem, job.meta)
