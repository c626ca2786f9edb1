"""Export a trained detector to ONNX or TorchScript, then check the file against PyTorch.

Steps (`export_checkpoint` for a .pt file, `export_model` for a model in memory):
1. BN folded into the convs (`model.fuse()`), eval mode: the file's output is the decoded
   Tensor (B, N, 5 + nc) = (cx, cy, w, h in input pixels, obj, class probs), as in PyTorch eval mode.
2. Written with the class names, strides and input shape in the file's own metadata
   (ONNX `metadata_props["mnv3det"]`, TorchScript `_extra_files["config.json"]`), so `detect`/`val` need nothing else.
3. Verified: `onnx.checker`; the exported model (onnxruntime on CPU, or torch.jit) run on a real, letterboxed image
   must match PyTorch within `|a - b| <= atol + rtol * |b|`, atol = rtol = 1e-4 (float16: 1e-2). A dynamic export is
   also checked at a second input size and batch. File size and latency are reported.

Exporter choice: torch 2.14 defaults to the torch.export-based ("dynamo") ONNX exporter, which needs the
`onnxscript` package (not a dependency of mnv3det, and not installed here). The TorchScript-based exporter
(`dynamo=False`) needs only torch, maps nn.Hardswish/nn.Hardsigmoid to the ONNX HardSwish/HardSigmoid ops
(opset >= 14) and handles `dynamic_axes` for batch and image size, which the tests check at two sizes;
so we use it and silence its deprecation warning.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mnv3det.deploy.backends import (
    TORCHSCRIPT_META_FILE,
    OnnxBackend,
    TorchScriptBackend,
    export_metadata,
)
from mnv3det.core.device import select_device
from mnv3det.deploy.predictor import check_imgsz, prepare_images
from mnv3det.core.threads import ort_session_options, resolve_threads
from mnv3det.errors import UserError

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript"}
MIN_OPSET = 14  # HardSwish arrived in opset 14


@dataclass
class ExportResult:
    """What an export produced and how it compared with PyTorch."""

    path: Path
    format: str
    imgsz: tuple[int, int]
    batch: int
    dynamic: bool
    half: bool
    size_mb: float
    max_abs_diff: float  # largest |exported - torch| over all outputs of all checked inputs (boxes are in pixels)
    max_rel_diff: float  # largest |exported - torch| / max(|torch|, 1)
    max_excess: float  # largest |a - b| - (atol + rtol * |b|); <= 0 means within tolerance
    tolerance: float  # atol = rtol used
    checked_shapes: list[tuple[int, int, int, int]] = field(default_factory=list)
    checker: str = "n/a"  # "passed" for ONNX
    latency_ms: float | None = None  # median batch latency of the exported file (ORT or torch.jit)
    latency_engine: str = ""
    simplified_with: str | None = None

    @property
    def passed(self) -> bool:
        return self.max_excess <= 0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path)
        out["passed"] = self.passed
        return out


def synthetic_image(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A deterministic BGR test scene (gradient background, filled shapes, texture) for verification.

    Used when no `--image` is given, so export works offline with no dataset at hand.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xx / width * 200, yy / height * 200, (xx + yy) / (width + height) * 255], -1)
    image = (image + rng.normal(0, 12, image.shape)).clip(0, 255).astype(np.uint8)
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(min(height, width) // 20, min(height, width) // 4))
        if rng.random() < 0.5:
            import cv2

            cv2.circle(image, (x, y), size, color, -1)
        else:
            image[max(y - size, 0) : y + size, max(x - size, 0) : x + size] = color
    return image


def _verification_batch(image: np.ndarray, shape: tuple[int, int, int, int], stride: int) -> torch.Tensor:
    """`image` letterboxed to shape (B, 3, H, W), float 0..1; batch items are flipped copies so they differ."""
    b, _, h, w = shape
    variants = [image if i % 2 == 0 else image[:, ::-1] for i in range(b)]
    batch, _ = prepare_images([np.ascontiguousarray(v) for v in variants], (h, w), stride, auto=False)
    return batch.float() / 255


def _compare(exported: torch.Tensor, reference: torch.Tensor, tol: float) -> tuple[float, float, float]:
    """(max |a - b|, max |a - b| / max(|b|, 1), max(|a - b| - (tol + tol * |b|))) over all elements.

    Boxes are in input pixels (up to ~imgsz), so float32 rounding alone gives ~1e-5 * imgsz there; the
    combined absolute + relative test holds probabilities to ~1e-4 and boxes to 1e-4 of their size.
    """
    a, b = exported.float(), reference.float()
    diff = (a - b).abs()
    return (
        float(diff.max()),
        float((diff / b.abs().clamp(min=1)).max()),
        float((diff - (tol + tol * b.abs())).max()),
    )


def _latency_ms(run, x, runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


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
    return _latency_ms(lambda a: session.run(None, {inp.name: a}), x, runs)


def _simplifier() -> str:
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
            model,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=["output"],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    if simplify:
        proto = _simplify(proto, simplify)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "mnv3det", json.dumps(meta)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def _write_torchscript(model, dummy, path: Path, meta: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 marks torch.jit deprecated; it still works
        traced = torch.jit.trace(model, dummy, strict=False, check_trace=False)
    traced.save(str(path), _extra_files={TORCHSCRIPT_META_FILE: json.dumps(meta)})


def _features_to_float32(module: torch.nn.Module, args: tuple) -> tuple:
    """Forward pre-hook for Detect in a --half export: its (float16) feature maps become float32."""
    return ([x.float() for x in args[0]],)


def export_model(
    model: torch.nn.Module,
    output: str | Path,
    *,
    format: str = "onnx",
    imgsz: int | tuple[int, int] = 640,
    batch: int = 1,
    dynamic: bool = False,
    opset: int = 17,
    simplify: bool = False,
    half: bool = False,
    device: torch.device | str = "cpu",
    image: np.ndarray | None = None,
    latency_runs: int = 10,
    recipe_name: str = "",
    threads: int | None = None,
) -> ExportResult:
    """Export a `DetectionModel` (not changed: a fused copy is exported) and verify the file; see the module doc."""
    if format not in FORMATS:
        raise UserError(f"--format {format!r} is not supported; use one of {', '.join(FORMATS)}")
    threads = resolve_threads(threads)  # verification and the latency figure run with this many CPU threads
    if device == "cpu" or getattr(device, "type", None) == "cpu":
        torch.set_num_threads(threads)
    if batch < 1:
        raise UserError(f"--batch {batch}: must be 1 or more")
    if format == "onnx" and opset < MIN_OPSET:
        raise UserError(f"--opset {opset} is too old for HardSwish; use {MIN_OPSET} or newer (default 17)")
    device = torch.device(device)
    if half and device.type != "cuda":
        raise UserError("--half needs a CUDA device (float16 convs are slow or missing on CPU); add --device 0 or drop --half")
    if format == "onnx":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as err:
            raise UserError(f"ONNX export needs onnx and onnxruntime ({err.name} is missing): pip install mnv3det[export]") from None
    simplify_tool = _simplifier() if simplify and format == "onnx" else None
    if simplify and format != "onnx":
        raise UserError("--simplify applies to --format onnx only")

    strides = [int(s) for s in model.stride]
    stride = max(strides)
    h, w = check_imgsz(imgsz, stride)
    names = list(getattr(model, "names", None) or [str(i) for i in range(model.nc)])
    model = copy.deepcopy(model).to(device).float().eval()
    model.fuse()
    for p in model.parameters():
        p.requires_grad_(False)
    if half:
        # float16 body, float32 decode: float16 resolves only ~0.5 px at 640 px, and the legacy exporter cannot
        # export the float16 torch.arange of Detect's grid. The output stays float32.
        model.half()
        model.detect.float()
        model.detect.register_forward_pre_hook(_features_to_float32)
    dtype = torch.float16 if half else torch.float32
    dummy = torch.zeros(batch, 3, h, w, device=device, dtype=dtype)
    with torch.no_grad():
        model(dummy)  # one plain run first: builds any cached grids and catches shape errors early

    path = Path(output).with_suffix(SUFFIX[format]) if Path(output).suffix != SUFFIX[format] else Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = export_metadata(names, strides, (h, w), batch, dynamic, half, recipe_name)
    if format == "onnx":
        write_onnx(model, dummy, path, meta, opset, dynamic, simplify_tool)
        backend = OnnxBackend(path, device, threads)
    else:
        _write_torchscript(model, dummy, path, meta)
        backend = TorchScriptBackend(path, device)

    # Verification on a real (or synthetic) letterboxed image; a dynamic file also at another size and batch.
    image = synthetic_image() if image is None else image
    shapes = [(batch, 3, h, w)]
    if dynamic:
        shapes.append((batch + 1, 3, h + stride, max(w - stride, stride)))
    tol = 1e-2 if half else 1e-4
    max_abs, max_rel, max_excess = 0.0, 0.0, float("-inf")
    for shape in shapes:
        x = _verification_batch(image, shape, stride).to(device)
        with torch.no_grad():
            reference = model(x.to(dtype)).float().cpu()
        exported = backend(x).float().cpu()
        if exported.shape != reference.shape:
            raise RuntimeError(f"exported output shape {tuple(exported.shape)} != torch {tuple(reference.shape)}")
        abs_diff, rel_diff, excess = _compare(exported, reference, tol)
        max_abs, max_rel, max_excess = max(max_abs, abs_diff), max(max_rel, rel_diff), max(max_excess, excess)

    if format == "onnx":
        latency = onnx_latency_ms(path, (batch, 3, h, w), threads=threads, runs=latency_runs)
        engine = f"onnxruntime CPU, {threads} threads"
    else:
        x = torch.rand(batch, 3, h, w, device=device, dtype=dtype)
        with torch.inference_mode():
            latency = _latency_ms(backend.module, x, latency_runs)
        engine = f"torch.jit {device.type}, {torch.get_num_threads()} threads"
    return ExportResult(
        path=path,
        format=format,
        imgsz=(h, w),
        batch=batch,
        dynamic=dynamic,
        half=half,
        size_mb=path.stat().st_size / 2**20,
        max_abs_diff=max_abs,
        max_rel_diff=max_rel,
        max_excess=max_excess,
        tolerance=tol,
        checked_shapes=shapes,
        checker="passed" if format == "onnx" else "n/a",
        latency_ms=latency,
        latency_engine=engine,
        simplified_with=simplify_tool,
    )


def export_checkpoint(
    weights: str | Path,
    *,
    format: str = "onnx",
    output: str | Path | None = None,
    device: str | None = "cpu",
    image: str | Path | None = None,
    **options,
) -> ExportResult:
    """Export the model stored in checkpoint `weights` (default output: next to it, .onnx/.torchscript)."""
    from mnv3det.core.checkpoint import load_model
    from mnv3det.deploy.sources import UnreadableImage, read_image

    weights = Path(weights)
    if weights.suffix.lower() != ".pt":
        raise UserError(f"--weights {weights}: export reads a .pt checkpoint written by mnv3det train")
    if format not in FORMATS:
        raise UserError(f"--format {format!r} is not supported; use one of {', '.join(FORMATS)}")
    torch_device = select_device(device)
    picture = None
    if image is not None:
        try:
            picture = read_image(Path(image))
        except UnreadableImage as err:
            raise UserError(f"--image {image}: {err}") from None
    model, ckpt = load_model(weights, device="cpu")
    recipe_name = ckpt.train_recipe  # TrainConfig.recipe, if trained
    out = Path(output) if output else weights.with_suffix(SUFFIX[format])
    return export_model(
        model, out, format=format, device=torch_device, image=picture, recipe_name=recipe_name, **options
    )
