"""LiteRT INT8 (`--format litert-int8`): ai-edge-quantizer's static W8A8 of the float .tflite, calibrated on the
user's training images, with the Detect decode and the output concat kept in float.

What is quantized: every op but those of the Detect module (its 1x1 convs too with `head_float`, the default), the
op writing the output and the stem conv reading the image (an int8 op there would make the input itself int8): int8 weights, symmetric per output channel; int8 activations, asymmetric per tensor,
ranges from min/max over the calibration images. Quantizing the whole graph ruins the scores (the output mixes
box pixels, 0..640, with probabilities, 0..1, under one int8 scale; mean |score diff| 0.26 measured for issue 23):
the same reason onnx_int8.py and openvino_int8.py keep the decode float. The quantizer puts a dequantize in front of
the float ops, so the file's input and output stay float32 and run like the float file (runtime/litert.py).

The scope names come from the converter: every tensor made inside Detect carries "mnv3det.models.detect.Detect" in
its name; the output op is found from the graph's output tensor. mAP before and after on the val split are measured
by edge.py and stored in the file's metadata (`quantization`).
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mnv3det.deploy.export.litert import convert, set_metadata
from mnv3det.deploy.runtime.litert import quiet_stderr
from mnv3det.errors import UserError

# In the name of every tensor the head makes (YOLOv5's Detect or the anchor-free AFDetect, whose branches stay float
# here too: the converter's scope names were not mapped to quantize them as ONNX and OpenVINO do).
DETECT_SCOPE = r"mnv3det\.models\.(detect\.Detect|af_head\.AFDetect)"
DETECT_CONV = DETECT_SCOPE + r"_\d+/torch\.nn\.modules\.conv\.Conv2d"  # its 1x1 convs' outputs


def _a8w8() -> dict[str, Any]:
    """ai-edge-quantizer's op config for static int8: per-channel symmetric weights, per-tensor asymmetric
    activations (what XNNPACK's and NNAPI's int8 kernels take)."""
    return {
        "activation_tensor_config": {"num_bits": 8, "symmetric": False, "granularity": "TENSORWISE", "dtype": "INT"},
        "weight_tensor_config": {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"},
        "compute_precision": "INTEGER",
        "explicit_dequantize": False,
    }


def recipe(float_names: list[str], head_float: bool = True) -> list[dict[str, Any]]:
    """The quantization recipe: everything int8, then (later entries win) Detect and the ops writing `float_names`
    (output tensor names: the op reading the image, the op writing the output) float. head_float=False quantizes
    Detect's 1x1 convs too (their int8 logits cost accuracy; see onnx_int8.py)."""
    rows: list[dict[str, Any]] = [
        {"regex": ".*", "operation": "*", "algorithm_key": "min_max_uniform_quantize", "op_config": _a8w8()},
        {"regex": DETECT_SCOPE, "operation": "*", "algorithm_key": "no_quantize"},
    ]
    if not head_float:
        rows.append({"regex": DETECT_CONV, "operation": "CONV_2D", "algorithm_key": "min_max_uniform_quantize",
                     "op_config": _a8w8()})
    for name in float_names:
        rows.append({"regex": f"^{re.escape(name)};$", "operation": "*", "algorithm_key": "no_quantize"})  # op scope: "name;"
    return rows


def signature(path: Path) -> tuple[str, str, list[str]]:
    """(signature key, its input name, the output tensor names of the ops to keep float) of a .tflite file: the ops
    that read the image and the op that writes the output. An int8 op reading the graph input would make the input
    itself int8, so the stem conv stays float (as onnx-int8's does; 3 input channels gain little from int8) and the
    file takes and gives float32 as the float file does."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():
        signatures = Interpreter(model_path=str(path)).get_signature_list()
    key = next(iter(signatures))
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    name = lambda index: graph.Tensors(index).Name().decode()  # noqa: E731
    names, tensor = [name(graph.Inputs(0))], graph.Inputs(0)
    # From the image to the first conv (layout transpose, padding, the conv): quantization-transparent ops such as
    # the transpose share their input's scale, so all of them stay float.
    while True:
        reader = next((op for op in ops if tensor in op.InputsAsNumpy()), None)
        if reader is None:
            break
        tensor = reader.Outputs(0)
        names.append(name(tensor))
        code = model.OperatorCodes(reader.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == schema.BuiltinOperator.CONV_2D:
            break
    names.append(name(graph.Outputs(0)))
    return key, signatures[key]["inputs"][0], names


CHUNK = 8  # calibration images per calibrator call (it lists each call's images in memory before running them)


def _chunks(calibration: Any, input_name: str, batch: int) -> Iterator[list[dict[str, np.ndarray]]]:
    """The calibration arrays as lists of CHUNK feeds {input name: (batch, 3, H, W)}, read lazily."""
    chunk: list[dict[str, np.ndarray]] = []
    for array in calibration:
        chunk.append({input_name: np.repeat(array, batch, axis=0)})  # a batch-b file: the image b times
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def quantize(float_path: Path, out: Path, calibration: Any, batch: int, head_float: bool, threads: int) -> None:
    """Calibrate `float_path` on `calibration` ((1, 3, H, W) float32 arrays) and write the INT8 file to `out`.

    The quantizer's calibrator turns its input into a list before running it (300 images at 640 px would be 1.5 GB),
    so it gets CHUNK images a call, each call starting from the ranges so far: min/max ranges merge exactly."""
    from ai_edge_quantizer import quantizer

    from mnv3det.core.streams import spawn_children

    spawn_children()  # the quantizer runs on JAX, which runs threads: no os.fork() from here on

    key, input_name, float_names = signature(float_path)
    qt = quantizer.Quantizer(str(float_path), recipe(float_names, head_float))
    ranges = None
    quiet = io.StringIO()  # its progress bars and report (Python), its interpreters' XNNPACK line (C++)
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), quiet_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental_preserve_all_tensors ... for debugging": the calibrator's choice
        for chunk in _chunks(calibration, input_name, batch):
            ranges = qt.calibrate({key: chunk}, previous_calibration_result=ranges, num_threads=threads)
        if ranges is None:
            raise UserError("none of the INT8 calibration images could be read; check the train split with "
                            "`mnv3det data check`")
        result = qt.quantize(ranges, enable_progress_report=False)
    out.write_bytes(bytes(result.quantized_model))


def write(job: Any, out: Path) -> None:
    """INT8 .tflite of the job's model at `out`, calibrated on job.calibration, with the export metadata."""
    from mnv3det.core.threads import resolve_threads

    with tempfile.TemporaryDirectory(prefix=".mnv3det-litert-", dir=out.parent) as tmp:
        float_path = Path(tmp) / "float.tflite"
        job.say("litert-int8: converting with litert-torch (torch.export -> TFLite, about a minute)")
        convert(job.model, job.shape, float_path, job.meta.get("format", "litert-int8"))
        job.say(f"litert-int8: calibrating and quantizing on {len(job.calibration)} images")
        quantize(float_path, out, job.calibration, job.shape[0], job.options.head_float, resolve_threads(None))
    set_metadata(out, job.meta)
    job.stem_precision = "float"  # the conv reading the image (see signature)
    job.notes.append("ai-edge-quantizer static W8A8 (per-channel int8 weights, int8 activations, min/max "
                     "calibration)")


update_metadata = set_metadata  # after the mAP check: the same entry with the INT8 figures added
