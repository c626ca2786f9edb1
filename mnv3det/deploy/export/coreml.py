"""Core ML (`--format coreml`, weight-only INT8: `coreml-int8`): an ML Program (.mlpackage) made by coremltools from
the traced fused model, for iOS/macOS apps (Vision or Core ML directly).

- Input "images": an RGB image of the export size (H x W), scaled to 0..1 inside the model (`scale=1/255`), so Vision
  can hand it a camera frame; output "output": float32 (1, N, 5 + nc), decoded as in PyTorch eval mode.
- Deployment precision: float16 compute (what the Neural Engine and GPU run); `coreml-int8` also stores the conv
  weights as int8 (linear symmetric, per channel; activations stay float16: no calibration).
- Metadata: the export metadata (runtime/metadata.py) as user-defined metadata "mnv3det", and the class names and
  strides under their own keys ("names", "strides", JSON) for an app to read.

Core ML predicts on macOS/iOS only. Off macOS, `check` proves what it can without running the model: every op is a
native ML Program op (no custom layer), input and output have the expected names and shapes, the model converts in
float32 too with the same ops (the reference precision on a Mac), and the saved file reads back to the same spec.
The export's table then says the numbers are unverified here. On macOS edge.py verifies it against PyTorch like any
float format (float16: the detections after NMS, IoU >= 0.9).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from mnv3det.deploy.runtime.coreml import METADATA_KEY, load_spec_model, quiet_coremltools
from mnv3det.errors import UserError

MINIMUM_TARGET = "iOS16"  # ML Program with float16 compute and int8 weight compression


def _program_ops(spec: Any) -> Counter:
    """Op type -> count over every function of the ML Program in `spec`."""
    return Counter(op.type for function in spec.mlProgram.functions.values()
                   for block in function.block_specializations.values() for op in block.operations)


def convert(model: torch.nn.Module, shape: tuple[int, int, int, int], precision: str, fmt: str) -> Any:
    """The ML Program of `model` (fused, eval) for inputs of `shape` ("float16" or "float32" compute)."""
    with quiet_coremltools():
        import coremltools as ct

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarning for Detect's shape arithmetic; torch.jit deprecation
            traced = torch.jit.trace(model, torch.zeros(shape), check_trace=False)
        try:
            return ct.convert(
                traced, convert_to="mlprogram",
                inputs=[ct.ImageType(name="images", shape=shape, scale=1 / 255, color_layout=ct.colorlayout.RGB)],
                outputs=[ct.TensorType(name="output")],
                compute_precision=ct.precision.FLOAT16 if precision == "float16" else ct.precision.FLOAT32,
                minimum_deployment_target=getattr(ct.target, MINIMUM_TARGET),
            )
        except Exception as err:  # an op coremltools cannot map: its message names it; one line, no traceback
            reason = " ".join(str(err).split())[:200]
            raise UserError(f"--format {fmt}: coremltools could not convert the model ({type(err).__name__}: "
                            f"{reason}); export --format onnx or litert instead, and please report it") from None


def _weights_int8(mlmodel: Any) -> Any:
    import coremltools.optimize.coreml as cto

    config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"))
    with quiet_coremltools():
        return cto.linear_quantize_weights(mlmodel, config)


def write(job: Any, out: Path) -> None:
    """The job's model as an .mlpackage folder at `out` (float16 compute; int8 weights for coreml-int8)."""
    fmt = job.meta.get("format", "coreml")
    job.say(f"{fmt}: converting with coremltools (TorchScript -> ML Program, float16)")
    mlmodel = convert(job.model, job.shape, "float16", fmt)
    if fmt == "coreml-int8":
        job.say(f"{fmt}: int8 weights (linear symmetric, per channel)")
        mlmodel = _weights_int8(mlmodel)
    mlmodel.short_description = f"mnv3det detector ({job.meta.get('recipe') or 'model'}), {len(job.meta['names'])} classes"
    metadata = mlmodel.user_defined_metadata
    metadata[METADATA_KEY] = json.dumps(job.meta)
    metadata["names"], metadata["strides"] = json.dumps(job.meta["names"]), json.dumps(job.meta["strides"])
    with tempfile.TemporaryDirectory(prefix=".mnv3det-coreml-", dir=out.parent) as tmp:
        saved = Path(tmp) / "model.mlpackage"  # coremltools writes a new package; moved into the staged folder
        with quiet_coremltools():
            mlmodel.save(str(saved))
        out.mkdir(parents=True, exist_ok=True)
        for item in saved.iterdir():
            shutil.move(str(item), out / item.name)
    job.notes.append("coremltools ML Program, float16 compute" + (", int8 weights" if fmt == "coreml-int8" else ""))
    job.report.update(checks(job, out))


def checks(job: Any, path: Path) -> dict[str, str]:
    """What can be checked without Core ML's predictor (see the module docstring); a UserError when one fails."""
    fmt = job.meta.get("format", "coreml")
    saved = load_spec_model(path)
    spec = saved.get_spec()
    ops = _program_ops(spec)
    with quiet_coremltools():
        import coremltools as ct
        from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    unknown = sorted(op for op in ops if op not in SSAOpRegistry.core_ops)  # MIL's own op set: no custom layers
    if unknown:
        raise UserError(f"--format {fmt}: ops {', '.join(unknown)} are not native Core ML ops")
    b, _, h, w = job.shape
    with torch.no_grad():
        n, no = job.model(torch.zeros(job.shape)).shape[1:]
    inp, out = spec.description.input[0], spec.description.output[0]
    image = inp.type.imageType
    if inp.name != "images" or (image.height, image.width) != (h, w):
        raise UserError(f"--format {fmt}: input {inp.name} is {image.height}x{image.width}, expected images {h}x{w}")
    got = tuple(out.type.multiArrayType.shape)
    if out.name != "output" or (got and got != (b, n, no)):
        raise UserError(f"--format {fmt}: output {out.name} has shape {got}, expected output {(b, n, no)}")
    reference = _program_ops(convert(job.model, job.shape, "float32", fmt).get_spec())
    added = {"cast"} | {op for op in ops if op.startswith("constexpr_")}  # float16 casts, int8 weight decompression
    differ = sorted((set(reference) - {"cast"}) ^ (set(ops) - added))
    if differ:
        raise UserError(f"--format {fmt}: the float16 and float32 programs differ in ops {', '.join(differ)}")
    again = Path(str(path) + ".roundtrip.mlpackage")
    try:
        with quiet_coremltools():
            ct.models.MLModel(spec, weights_dir=saved.weights_dir, skip_model_load=True).save(str(again))
        if load_spec_model(again).get_spec() != spec:
            raise UserError(f"--format {fmt}: the saved spec does not read back the same (coremltools round trip)")
    finally:
        shutil.rmtree(again, ignore_errors=True)
    main = ", ".join(f"{op} {count}" for op, count in ops.most_common() if op != "const")
    return {
        "ops": f"{sum(c for o, c in ops.items() if o != 'const')} ML Program ops, all native: {main}",
        "shapes": f"images RGB {h}x{w} (scale 1/255) -> output float32 {b}x{n}x{no}",
        "spec": f"reads back identical (coremltools {ct.__version__}); float32 conversion has the same ops",
    }


def update_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Replace the "mnv3det" metadata entry of the saved package."""
    saved = load_spec_model(path)
    saved.user_defined_metadata[METADATA_KEY] = json.dumps(meta)
    with quiet_coremltools():
        saved.save(str(path))
