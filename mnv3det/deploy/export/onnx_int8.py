"""ONNX INT8: onnxruntime's static post-training quantization (QDQ, per-channel weights) of the fp32 ONNX file.

File: best_int8.onnx, run by the same OnnxBackend (deploy/runtime) as any .onnx file (the metadata says it is INT8 and holds the
mAP before and after).

What stays float: every node of the Detect decode (sigmoid, grid and anchor arithmetic, the final Concat).
The output mixes box coordinates in pixels (0..640) with probabilities (0..1) in one tensor, so one int8 scale
for it cannot resolve both: quantizing it is how ORT's quantize_static gives mAP 0 on YOLO models
(microsoft/onnxruntime#10787). With `head_float` (the default) the three Detect 1x1 convs stay float too: their
outputs are logits of boxes and classes whose int8 rounding cost 6.6 of 67.0 mAP50-95 points on the demo model.

Calibration: activation ranges from the 99.999th percentile of each tensor's histogram over the calibration
images (deploy/calibrate.py), which ignores rare outliers that MinMax stretches the int8 grid for; activations
uint8 asymmetric, weights int8 symmetric per output channel (the u8s8 layout onnxruntime's x86 kernels run
fastest). Measured on the demo model at 256 px, 100 calibration images, val mAP50-95 0.670 float:
MinMax 0.564, MinMax + float head convs 0.630, Percentile + float head convs 0.653.
Neither range rule wins everywhere, so with a val split both are made and the one scoring the higher val
mAP50-95 is kept (both scores go into the metadata's `quantization.calibration_map50_95`); without one, percentile.
BCCD val, stem float, 205 calibration images (float 0.485 / 0.515): mnv3-small at 416 percentile 0.488, MinMax
0.485; yolov5n at 320 percentile 0.504 (-1.1 points), MinMax 0.513 (-0.2). (Entropy: 0.482 / 0.511; symmetric
int8 activations 0.508 and per-tensor weights 0.502 on yolov5n; percentile 99.99 0.485.)
`reduce_range` keeps weights to 7 bits, which avoids overflow in the u8s8 instruction on CPUs without VNNI.

Memory: onnxruntime's calibrators keep every output of every calibrated tensor of every image they are fed in one
`collect_data` call before folding them into ranges (MinMax) or histograms (percentile); 300 images of
mnv3-small at 512 are ~110 MB each, 33 GB in all (the out-of-memory kill of issue 21). So the images are fed in
chunks (`CalibStridedMinMax`, which both calibrators honour: one `collect_data` per chunk, folded before the
next), each chunk as many images as `calibrate.CHUNK_BYTES` holds (`calibration_chunk`, at least 1, at most 8): the
calibrator holds one chunk's activations, whatever the number of calibration images. Peak memory: see
benchmarks/results/export-memory.md.

Speed (`stem_float`, the default): the first row, the conv that reads the 3-channel image, and its activation stay
float. With 3 input channels int8 gains nothing (onnxruntime's float conv has a direct kernel for it; its
QLinearConv took 3.2 ms of mnv3-small's 20 ms at 640, 1 thread, against about 1.9 ms in float), and quantizing it
also put a QuantizeLinear and a layout Transpose over the whole image. Per-op profile (onnxruntime's own, 640 px,
1 thread, shared machine): mnv3-small fp32 21.2 ms, INT8 21.9 -> 19.7 ms with the stem float; yolov5n fp32 52.5,
INT8 30.4 -> 29.0. Why mnv3-small gains so little: its int8 convs save 16.4 -> ~9.5 ms, but h-swish and SiLU have
no int8 kernel that fuses into the conv as the float ones do (HardSigmoid, QLinearMul, QLinearSigmoid and the
Q/DQ around them: ~7 ms). Quantizing only the dense convs (depthwise, SE and activations float) was slower
(23.7 ms: float/int8 layout changes at every block), and QOperator format gave the same as QDQ. Accuracy on BCCD
val stayed within noise for all of these (mnv3-small at 416: float 0.485, INT8 0.483-0.490).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np



MAX_CHUNK = 8
COPIES = 3  # the calibrator's own copies of a chunk's outputs while it folds them (stack, flatten, abs)


# The anchor-free head's depthwise-separable branches (models/af_head.py) are more network, not output: they are
# quantized like the neck. What stays float is what writes the output: prediction convs (head_float) and decode.
HEAD_BRANCHES = "branches."


def detect_scope(model: Any) -> str:
    """The ONNX node-name prefix of the Detect module, e.g. '/layers.26/' (names follow the torch module path)."""
    for name, module in model.named_modules():
        if module is model.detect:
            return f"/{name}/"
    raise ValueError("model has no Detect module")


def stem_scope(model: Any) -> str:
    """The ONNX node-name prefix of the model's first row (the conv that reads the image), e.g. '/layers.0/'."""
    first = model.layers[0]
    return next(f"/{name}/" for name, module in model.named_modules() if module is first)


def name_nodes(proto: Any) -> None:
    """Give every unnamed node a unique name made from its first output (in place).

    quant_pre_process inlines HardSwish as HardSigmoid + Mul nodes without names, and onnxruntime's
    `nodes_to_exclude` matches names: named after their output ('/layers.0/layers.0.2/HardSwish_output_0'), the
    stem's activation carries the stem's prefix and can be kept in float with its conv.
    """
    for index, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.output[0].removesuffix('_output_0')}/{node.op_type}_{index}"


def float_nodes(proto: Any, scope: str, head_float: bool, stem: str | None = None) -> list[str]:
    """Names of the nodes to keep in float: Detect's decode (and its 1x1 convs when `head_float`), and the nodes
    of the `stem` prefix when given."""
    keep = []
    for node in proto.graph.node:
        if stem is not None and node.name.startswith(stem):
            keep.append(node.name)
            continue
        if not node.name.startswith(scope) or node.name.startswith(scope + HEAD_BRANCHES):
            continue
        if node.op_type == "Conv" and not head_float:
            continue
        keep.append(node.name)
    return keep


def activation_bytes(proto: Any) -> int:
    """Bytes of every float tensor one image produces in `proto` (shapes inferred, batch as in the model): what
    the calibrator's session returns per image."""
    import onnx

    total = 0
    for info in [*proto.graph.value_info, *proto.graph.output]:
        kind = info.type.tensor_type
        if kind.elem_type != onnx.TensorProto.FLOAT:
            continue
        dims = [d.dim_value for d in kind.shape.dim]
        if dims and all(d > 0 for d in dims):
            total += 4 * int(np.prod(dims))
    return total


def calibration_chunk(count: int, per_image: int, budget: int | None = None) -> int:
    """Images per calibrator call: as many as `budget` holds (counting the calibrator's copies), 1..MAX_CHUNK, and
    a divisor of `count` (onnxruntime asks for one). budget: default calibrate.CHUNK_BYTES."""
    from mnv3det.deploy.export.calibrate import CHUNK_BYTES

    budget = CHUNK_BYTES if budget is None else budget
    most = max(1, min(MAX_CHUNK, budget // max(COPIES * per_image, 1), count))
    return next(k for k in range(most, 0, -1) if count % k == 0)


class _Reader:
    """onnxruntime's CalibrationDataReader over the calibration arrays, in chunks: `set_range` starts the next
    chunk, `get_next` gives its arrays, then None. Arrays that could not be read (skipped by the calibration set)
    are made up by starting over, so every chunk gets its images."""

    def __init__(self, name: str, images: Any, count: int):
        self.name, self.images, self.count = name, images, count
        self.iterator: Iterator[np.ndarray] = iter(images)
        self.left = count  # without set_range: one call takes all

    def __len__(self) -> int:
        return self.count

    def set_range(self, start_index: int, end_index: int) -> None:
        self.left = end_index - start_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.left <= 0:
            return None
        array = next(self.iterator, None)
        if array is None:  # unreadable images were skipped: start over
            self.iterator = iter(self.images)
            array = next(self.iterator, None)
            if array is None:
                from mnv3det.errors import UserError

                raise UserError("none of the INT8 calibration images could be read; check the train split with "
                                "`mnv3det data check`")
        self.left -= 1
        return {self.name: array}


def quantize(
    fp32: Path, out: Path, calibration: Any, scope: str, *, head_float: bool = True, reduce_range: bool = False,
    percentile: bool = True, stem: str | None = None,
) -> list[str]:
    """Quantize `fp32` into `out`; returns the names of the nodes left in float. percentile=False: MinMax ranges.
    stem: the node-name prefix of the first row, kept in float (see the module docstring); None: quantized.
    calibration: a sized iterable of (1, 3, H, W) float32 arrays (a CalibrationSet), fed in chunks."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="mnv3det-ort-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        proto = onnx.load(str(prepared))
        name_nodes(proto)
        onnx.save(proto, str(prepared))
        keep = float_nodes(proto, scope, head_float, stem)
        count = len(calibration)
        chunk = calibration_chunk(count, activation_bytes(proto))
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True, "CalibStridedMinMax": chunk}
        if percentile:
            extra.update(CalibPercentile=99.999)
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its histogram progress
            quantize_static(
                str(prepared),
                str(out),
                _Reader(proto.graph.input[0].name, calibration, count),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=keep,
                calibrate_method=CalibrationMethod.Percentile if percentile else CalibrationMethod.MinMax,
                extra_options=extra,
            )
    return keep


def set_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Store `meta` as the file's `mnv3det` metadata_props entry (what OnnxBackend reads); atomic: a kill while
    saving leaves the file as it was."""
    import onnx

    from mnv3det.core.atomic import AtomicOutput

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "mnv3det", json.dumps(meta)
    with AtomicOutput(path) as tmp:
        onnx.save(proto, str(tmp))


def export(job: Any, out: Path) -> None:
    """INT8 ONNX of the job's fp32 ONNX file, calibrated on job.calibration.

    With a val split, both calibrations are made and the one with the higher val mAP50-95 is kept (see the module
    docstring); without one, percentile ranges.
    """
    from mnv3det.deploy.runtime.onnx import Backend

    options = dict(head_float=job.options.head_float, reduce_range=job.options.reduce_range,
                   stem=stem_scope(job.model) if job.options.stem_float else None)
    scope = detect_scope(job.model)
    scores: dict[str, float] = {}  # calibration method -> val mAP50-95 of its INT8 model (0.0 without val)
    constant = "an activation was constant, so no percentile histogram"
    with tempfile.TemporaryDirectory(prefix=".mnv3det-int8-", dir=out.parent) as tmp:
        for step, method in enumerate(("percentile", "MinMax"), 1):
            path = Path(tmp) / f"{method}.onnx"
            job.say(f"onnx-int8: {method} calibration ({step}/2) on {len(job.calibration)} images")
            try:  # quantize() feeds the calibrator in chunks (it needs the set's length, so no progress wrapper)
                quantize(job.onnx_path, path, job.calibration, scope, percentile=method == "percentile", **options)
            except ValueError as err:  # a constant activation (untrained models) has no histogram: "Too many bins"
                if method != "percentile" or "bins" not in str(err):
                    raise
                continue  # MinMax next
            set_metadata(path, job.meta)  # the backend that scores it reads the metadata
            if job.val_records:
                job.say(f"onnx-int8: scoring the {method} model on {len(job.val_records)} val images")
            scores[method] = job.score(Backend(path)).map if job.val_records else 0.0
            if not job.val_records:
                break  # no val split to choose by: the first that worked
        chosen = max(scores, key=lambda m: scores[m])  # a tie keeps percentile, the first made
        os.replace(Path(tmp) / f"{chosen}.onnx", out)
    if job.val_records:
        job.report["calibration_map50_95"] = {m: round(v, 4) for m, v in scores.items()}
    others = [m for m in scores if m != chosen]
    why = f", above {others[0]} on val" if others else (f"; {constant}" if chosen == "MinMax" else "")
    job.stem_precision = "float" if options["stem"] else "int8"
    job.notes.append(f"onnxruntime quantize_static (QDQ, per-channel weights, {chosen} calibration{why})")


update_metadata = set_metadata  # after the mAP check: the same entry with the INT8 figures added
