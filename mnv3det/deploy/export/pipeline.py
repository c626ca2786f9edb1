"""Export a trained detector to ONNX or TorchScript (registry.py, `ExportFormat.edge` False), then check the file.

Steps (`export_checkpoint` for a .pt file, `export_model` for a model in memory):
1. BN folded into the convs (`model.fuse()`), eval mode: the file's output is the decoded
   Tensor (B, N, 5 + nc) = (cx, cy, w, h in input pixels, obj, class probs), as in PyTorch eval mode.
2. Written with the class names, strides, input shape and trained size in the file's own metadata
   (ONNX `metadata_props["mnv3det"]`, TorchScript `_extra_files["config.json"]`), so `detect`/`val` need nothing else.
3. Verified on a real (or generated) letterboxed image: the file's raw output must match PyTorch within
   `|a - b| <= atol + rtol * |b|`, atol = rtol = 1e-4 (float16: 1e-2), and both go through the prediction path
   (NMS, scale back) to compare the boxes. A dynamic export is also checked at a second input size and batch.
   File size and latency are reported.

Default shape: dynamic (any batch and size), at the size the checkpoint was trained at. A dynamic export gets
exactly the input a .pt gets in `detect` and `val`, so both give the same boxes and the same mAP. `--static`
fixes (B, 3, H, W), which some runtimes need; every image is then letterboxed to that square, and `detect`/`val`
say so when they run such a file.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnv3det.core.atomic import AtomicOutput, remove_stale, unwritable
from mnv3det.core import memory
from mnv3det.core.imgsz import choose_imgsz
from mnv3det.core.memory import MB, activation_bytes
from mnv3det.core.threads import resolve_threads
from mnv3det.deploy.config import ExportConfig
from mnv3det.deploy.export.onnx import find_simplifier
from mnv3det.deploy.export.registry import ExportSettings, get_exporter
from mnv3det.deploy.runtime.backends import TorchBackend, load_backend
from mnv3det.deploy.runtime.metadata import export_metadata
from mnv3det.deploy.runtime.predictor import NmsSettings, letterbox_images, run_batch
from mnv3det.errors import Interrupted, UserError

VERIFY_NMS = NmsSettings(conf=0.25, iou=0.45)  # the boxes compared after NMS: detect's defaults


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
    latency_ms: float | None = None  # median batch latency of the exported file
    latency_engine: str = ""
    simplified_with: str | None = None
    boxes: tuple[int, int] = (0, 0)  # boxes after NMS (conf 0.25) on the checked inputs: PyTorch, exported
    max_box_diff: float = 0.0  # largest corner difference (original pixels) between matched boxes
    notes: list[str] = field(default_factory=list)  # defaults chosen for the user, one line each

    @property
    def passed(self) -> bool:
        return self.max_excess <= 0

    def to_json(self, indent: int | None = None) -> str:
        """The result as json (what `mnv3det export --json` prints)."""
        from mnv3det.core.tables import to_json

        return to_json(self.as_dict(), indent)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path)
        out["passed"] = self.passed
        return out


def synthetic_image(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A deterministic BGR test scene (gradient background, filled shapes, texture) for verification.

    Used when no `--image` is given, so export works offline with no dataset at hand.
    """
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xx / width * 200, yy / height * 200, (xx + yy) / (width + height) * 255], -1)
    image = (image + rng.normal(0, 12, image.shape)).clip(0, 255).astype(np.uint8)
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(min(height, width) // 20, min(height, width) // 4))
        if rng.random() < 0.5:
            cv2.circle(image, (x, y), size, color, -1)
        else:
            image[max(y - size, 0) : y + size, max(x - size, 0) : x + size] = color
    return image


def _prepared(model: torch.nn.Module, device: torch.device, half: bool) -> torch.nn.Module:
    """A fused, eval-mode, gradient-free copy on `device` (the original is not changed)."""
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
    return model


def _features_to_float32(module: torch.nn.Module, args: tuple) -> tuple:
    """Forward pre-hook for Detect in a --half export: its (float16) feature maps become float32."""
    return ([x.float() for x in args[0]],)


def export_model(
    model: torch.nn.Module,
    output: str | Path,
    config: ExportConfig | None = None,
    *,
    recipe_name: str = "",
    train_imgsz: int | None = None,
    picture: np.ndarray | None = None,
    **fields: Any,
) -> ExportResult:
    """Export a `DetectionModel` (not changed: a fused copy is exported) and verify the file; see the module doc.

    config: an ExportConfig, or its fields as keywords (`imgsz=320, dynamic=False, ...`). picture: a BGR image to
    verify on (default: `config.image` read from disk, else a generated scene).
    """
    config = config or ExportConfig(**fields)
    config.validate()
    device = torch.device(config.device or "cpu")
    threads = resolve_threads(config.threads)  # verification and the latency figure run with this many CPU threads
    if device.type == "cpu":
        torch.set_num_threads(threads)
    if config.half and device.type != "cuda":
        raise UserError("--half needs a CUDA device (float16 convs are slow or missing on CPU); add --device 0 or drop --half")
    fmt = get_exporter(config.format)
    exporter = fmt.load()  # the format's module: write(...), latency(...)
    simplify_tool = find_simplifier() if config.simplify else None
    strides = [int(s) for s in model.stride]
    size = choose_imgsz(config.imgsz, train_imgsz, max(strides))
    names = list(getattr(model, "names", None) or [str(i) for i in range(model.nc)])
    path = Path(output)
    path = path if path.name.endswith(fmt.file_suffix) else path.with_suffix(fmt.file_suffix)
    meta = export_metadata(names, strides, size.hw, config.batch, config.dynamic, config.half, recipe_name, train_imgsz)
    result = ExportResult(
        path=path, format=config.format, imgsz=size.hw, batch=config.batch, dynamic=config.dynamic,
        half=config.half, size_mb=0.0, max_abs_diff=0.0, max_rel_diff=0.0, max_excess=float("-inf"),
        tolerance=1e-2 if config.half else 1e-4, checker="passed" if config.format == "onnx" else "n/a",
        simplified_with=simplify_tool,
    )
    model = _prepared(model, device, config.half)
    require_export_memory(model, (config.batch, 3, *size.hw), f"export --format {config.format} at {size}")
    # Written beside `path` under a temporary name, verified, then renamed over it (core/atomic.py): a kill or
    # Ctrl-C leaves an earlier file whole, and two exports to one file each verify their own.
    staged = _staged(path)
    try:
        with staged as tmp:
            dummy = torch.zeros(config.batch, 3, *size.hw, device=device,
                                dtype=torch.float16 if config.half else torch.float32)
            with torch.no_grad():
                model(dummy)  # one plain run first: builds any cached grids and catches shape errors early
            exporter.write(model, dummy, tmp, meta, ExportSettings(config.dynamic, config.opset, simplify_tool))
            backend = load_backend(tmp, device, threads)
            _verify(model, backend, picture if picture is not None else synthetic_image(), result, max(strides))
            if not result.passed:  # kept for inspection under another name; an earlier file at `path` stays
                staged.target = path.with_name(f"{path.stem}.unverified{path.suffix}")
    except KeyboardInterrupt:
        raise Interrupted(interrupted_line(path)) from None
    except OSError as err:  # a full disk while writing, the folder removed meanwhile
        raise unwritable(path, err) from None
    result.path = staged.target
    result.size_mb = _size_mb(result.path)
    shape = (config.batch, 3, *size.hw)
    result.latency_ms, result.latency_engine = exporter.latency(result.path, backend, shape, config.runs, threads)
    return result


EXPORT_BASE_BYTES = 150 * MB  # what an export adds besides activations: the runtime's session, the converter
ACTIVATION_COPIES = 1  # one forward's activations more than the process holds at the check (which ran one)


def require_export_memory(model: torch.nn.Module, shape: tuple[int, int, int, int], step: str,
                          extra: int = 0) -> None:
    """A one-line error before an export starts when the machine has less memory available than it will add:
    EXPORT_BASE_BYTES + ACTIVATION_COPIES x one forward's activations at `shape` + `extra` (an INT8 calibrator's
    chunk). Measured for mnv3-small at 640 (benchmarks/results/export-memory.md): the process holds 0.79 GB here and
    peaks at 0.87-0.97 GB (float formats) or 1.15-1.21 GB (INT8); this estimate adds 0.29 and 0.79 GB: about twice
    what was measured, to leave room."""
    needed = EXPORT_BASE_BYTES + ACTIVATION_COPIES * activation_bytes(model, shape) + extra
    memory.require(needed, step, "use a smaller --imgsz or --batch, or free memory")


def _staged(path: Path) -> AtomicOutput:
    """The atomic writer of an export at `path`, its temporary already made (a one-line error when it cannot
    be), after removing the temporaries killed exports left there."""
    staged = AtomicOutput(path, folder=not path.suffix, keep_suffix=True)  # a suffix-less name: a folder format
    try:
        remove_stale(path)
        staged.open()
    except OSError as err:
        raise unwritable(path, err) from None
    return staged


def interrupted_line(path: Path) -> str:
    """What Ctrl-C during an export to `path` prints (the temporary is gone; `path` was never touched)."""
    left = f"the earlier {path} is unchanged" if path.exists() else f"no {path} was made"
    return f"export interrupted: nothing was written ({left})"


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def _verify(model: torch.nn.Module, backend: Any, image: np.ndarray, result: ExportResult, stride: int) -> None:
    """Fill `result`'s comparison fields: raw outputs and boxes after the prediction path, PyTorch vs the file."""
    b, (h, w) = result.batch, result.imgsz
    result.checked_shapes = [(b, 3, h, w)]
    if result.dynamic:
        result.checked_shapes.append((b + 1, 3, h + stride, max(w - stride, stride)))
    reference = TorchBackend(model, names=backend.names, device=backend.device)
    n_ref = n_exp = 0
    for shape in result.checked_shapes:
        variants = [np.ascontiguousarray(image if i % 2 == 0 else image[:, ::-1]) for i in range(shape[0])]
        batch, shapes = letterbox_images(variants, shape[2:], stride, auto=False)  # flipped copies so items differ
        x = batch.to(backend.device).float() / 255
        with torch.no_grad():
            expected = model(x.to(next(model.parameters()).dtype)).float().cpu()
        got = backend(x).float().cpu()
        if got.shape != expected.shape:
            raise RuntimeError(f"exported output shape {tuple(got.shape)} != torch {tuple(expected.shape)}")
        abs_diff, rel_diff, excess = _compare(got, expected, result.tolerance)
        result.max_abs_diff = max(result.max_abs_diff, abs_diff)
        result.max_rel_diff = max(result.max_rel_diff, rel_diff)
        result.max_excess = max(result.max_excess, excess)
        ref_boxes = run_batch(reference, batch, shapes, VERIFY_NMS).detections
        exp_boxes = run_batch(backend, batch, shapes, VERIFY_NMS).detections
        n_ref, n_exp = n_ref + sum(map(len, ref_boxes)), n_exp + sum(map(len, exp_boxes))
        result.max_box_diff = max([result.max_box_diff] + [_box_diff(a, e) for a, e in zip(ref_boxes, exp_boxes)])
    result.boxes = (n_ref, n_exp)


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


def _box_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest corner distance from each box of `a` to the nearest same-class box of `b` (inf when unmatched)."""
    if len(a) == 0 and len(b) == 0:
        return 0.0
    if len(a) != len(b):
        return float("inf")
    same = a[:, None, 5] == b[None, :, 5]
    dist = (a[:, None, :4] - b[None, :, :4]).abs().amax(-1).masked_fill(~same, float("inf"))
    return float(dist.amin(1).max())


def export_checkpoint(weights: str | Path, config: ExportConfig | None = None, **fields: Any) -> ExportResult:
    """Export the model stored in checkpoint `weights` (default output: next to it, with the format's suffix).

    The default size is the one the checkpoint was trained at; `result.notes` says so.
    """
    from mnv3det.core.checkpoint import load_model
    from mnv3det.core.device import select_device
    from mnv3det.deploy.runtime.sources import UnreadableImage, read_image

    config = config or ExportConfig(**fields)
    weights = Path(weights)
    if weights.suffix.lower() != ".pt":
        raise UserError(f"--weights {weights}: export reads a .pt checkpoint written by mnv3det train")
    config.validate()
    device = select_device(config.device)
    picture = None
    if config.image is not None:
        try:
            picture = read_image(Path(config.image))
        except UnreadableImage as err:
            raise UserError(f"--image {config.image}: {err}") from None
    model, ckpt = load_model(weights, device="cpu")
    trained, recipe = ckpt.train_imgsz, ckpt.train_recipe  # from the run's TrainConfig, when it was trained
    out = Path(config.output) if config.output else weights.with_suffix(get_exporter(config.format).file_suffix)
    config = dataclasses.replace(config, device=str(device))
    result = export_model(model, out, config, recipe_name=str(recipe), train_imgsz=trained, picture=picture)
    if config.imgsz is None and trained:
        result.notes.append(f"imgsz {trained}: the size {weights} was trained at (set --imgsz to change it)")
    return result
