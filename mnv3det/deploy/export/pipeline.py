"""The one export pipeline, for every format of deploy/formats.py: write a model, open it with the runtime that will
run it, check it against PyTorch, time it.

Steps of `export_model` (`export_checkpoint` reads a .pt first):
1. `config.check()`: the options against the format's record (one line naming an option it does not take).
2. A fused, eval, gradient-free copy of the model (`_prepared`); with `--nms`, wrapped in end_to_end.EndToEnd so
   the file outputs final detections. The file's metadata (runtime/metadata.py) records names, strides, input
   shape, trained size, the format and the NMS it holds.
3. Staged beside the output under a temporary name (core/atomic.py): the writer module's `write(job, out)` fills
   it. INT8 formats first calibrate on `calib_images` images of the train split of `--data` (calibrate.py).
4. Opened with the format's runtime (`load_backend`) and verified (`_verify`), through the one prediction path:
   - float formats without --nms: raw outputs within |a - b| <= tol + tol x |b| of PyTorch, tol 1e-4 (float16:
     1e-2), at the export shape and, for a dynamic file, a second shape and batch;
   - every format: detections on real images (the val images of --data, --image, else a generated scene) agree
     with PyTorch's after NMS (agreement.py; an --nms file's own detections against `predict`'s at the same conf,
     iou and max_det);
   - INT8 formats: mAP50-95 and mAP50 of PyTorch and of the file on the val split, stored in the metadata.
   A float file that fails is kept as NAME.unverified.SUFFIX and an earlier file at the output stays.
5. Renamed over the output; timed (`runs` calls of its runtime, runtime.timing); one `ExportResult`.
Ctrl-C at any point: `Interrupted`, nothing written.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from mnv3det.core import memory
from mnv3det.core.atomic import AtomicOutput, remove_stale, unwritable
from mnv3det.core.imgsz import choose_imgsz
from mnv3det.core.memory import MB, activation_bytes
from mnv3det.core.threads import resolve_threads
from mnv3det.deploy.config import ExportConfig
from mnv3det.deploy.export.agreement import FLOAT_TOLERANCE, INT8_TOLERANCE, Agreement, compare_detections
from mnv3det.deploy.export.calibrate import CHUNK_BYTES
from mnv3det.deploy.formats import Format
from mnv3det.deploy.runtime.backends import TorchBackend, load_backend
from mnv3det.deploy.runtime.metadata import export_metadata
from mnv3det.deploy.runtime.predictor import NmsSettings, letterbox_images, predict
from mnv3det.errors import Interrupted, UserError

VERIFY_IMAGES = 8  # val images the detections are compared on
VERIFY_NMS = NmsSettings()  # the detections compared without --nms: detect's defaults
RAW_TOLERANCE = 1e-4  # atol = rtol of the raw outputs (float32)
HALF_TOLERANCE = 1e-2  # the same for a --half file


@dataclass
class Int8Options:
    """How INT8 formats are calibrated and what they keep in float (the first two from ExportConfig)."""

    calib_images: int
    max_drop: float | None  # nncf accuracy control: most mAP50-95 to lose (absolute); None: plain quantize
    head_float: bool = True  # also keep the Detect 1x1 convs in float (their int8 logits cost mAP)
    stem_float: bool = True  # onnx-int8: keep the first row (the conv on the 3-channel image) float, faster there
    reduce_range: bool = False  # ORT: 7-bit weights, for CPUs without VNNI

    @classmethod
    def from_config(cls, config: ExportConfig) -> "Int8Options":
        return cls(calib_images=config.calib_images, max_drop=config.int8_max_drop_fraction())


@dataclass
class ExportJob:
    """What a writer module's `write(job, out)` gets."""

    model: torch.nn.Module  # fused, eval, on the export device (EndToEnd around it with --nms)
    shape: tuple[int, int, int, int]  # (B, 3, H, W) of the traced input
    stem: str  # file name stem inside folder formats ("best")
    meta: dict[str, Any]  # export metadata (runtime/metadata.py export_metadata + "format")
    config: ExportConfig
    scratch: Path  # a temporary folder beside the output, removed afterwards
    options: Int8Options
    calibration: Any = None  # a CalibrationSet for INT8 formats
    val_spec: Any = None  # DataSpec and records of the val split, when the data has one
    val_records: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stem_precision: str = "int8"  # "float" when the format kept the first row (the conv on the image) in float
    report: dict[str, Any] = field(default_factory=dict)  # format-specific entries for the quantization report
    console: Any = None  # where progress goes (None: silent)
    _onnx: Path | None = None

    @property
    def dynamic(self) -> bool:
        return bool(self.meta["dynamic"])

    @property
    def half(self) -> bool:
        return bool(self.meta["half"])

    @property
    def output_names(self) -> list[str]:
        from mnv3det.deploy.export.end_to_end import OUTPUT_NAMES

        return OUTPUT_NAMES if self.meta.get("nms") else ["output"]

    def dummy(self) -> torch.Tensor:
        """Zeros of the traced shape, dtype and device."""
        p = next(self.model.parameters())
        return torch.zeros(self.shape, device=p.device, dtype=torch.float16 if self.half else torch.float32)

    @property
    def raw_model(self) -> torch.nn.Module:
        """The detector without --nms's NMS (the model itself without --nms)."""
        from mnv3det.deploy.export.end_to_end import EndToEnd

        return self.model.model if isinstance(self.model, EndToEnd) else self.model

    def raw_onnx_path(self) -> Path:
        """`raw_model` as a static float32 ONNX file (ONNX INT8 quantizes it, then appends the NMS in float)."""
        if self.raw_model is self.model:
            return self.onnx_path
        from mnv3det.deploy.export.onnx import write_onnx

        path = self.scratch / "fp32-raw.onnx"
        if not path.exists():
            write_onnx(self.raw_model, self.dummy(), path, {**self.meta, "nms": None})
        return path

    @property
    def onnx_path(self) -> Path:
        """The job's model as a static float32 ONNX file (written on first use): what OpenVINO converts and ONNX
        INT8 quantizes."""
        if self._onnx is None:
            from mnv3det.deploy.export.onnx import write_onnx

            self._onnx = self.scratch / "fp32.onnx"
            write_onnx(self.model, self.dummy(), self._onnx, self.meta, output_names=self.output_names)
        return self._onnx

    def say(self, text: str) -> None:
        """One progress line (what runs now), so a long INT8 export is never silent."""
        if self.console is not None:
            self.console.print(text, highlight=False)

    def track(self, items: Iterable[Any], total: int, what: str) -> Iterator[Any]:
        """`items` unchanged, after a line saying `what`; on a terminal also a bar over them (transient).
        Close the generator when the consumer may stop early (calibration takes a prefix)."""
        self.say(f"{what} ({total} images)")  # now: the consumer may redirect stdout while it iterates
        if self.console is None or not self.console.is_terminal:
            return iter(items)
        from rich.console import Console

        bound = Console(file=self.console.file)  # the terminal as it is now, not a redirected sys.stdout
        return _with_bar(items, total, what, bound)

    def score(self, backend: Any, records: list | None = None) -> Any:
        """EvalResult (fast mAP) of `backend` on the val records (or `records`), square inputs of the export size;
        with --nms, PyTorch and the file both at the NMS the file holds, so the drop is the quantization's alone."""
        from mnv3det.evaluate.config import EvalConfig
        from mnv3det.evaluate.evaluator import evaluate

        held = self.meta.get("nms") or {}
        config = EvalConfig(imgsz=self.shape[2], batch=1, coco=False, workers=0, **held)
        return evaluate(backend, records if records is not None else self.val_records, self.val_spec, config,
                        progress=False)


def _with_bar(items: Iterable[Any], total: int, what: str, console: Any) -> Iterator[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("", total=total)
        for item in items:
            yield item
            progress.advance(task)


@dataclass
class ExportResult:
    """What an export wrote and how it compared with PyTorch (`mnv3det export` prints it; `--json` as_dict)."""

    path: Path
    format: str
    runtime: str
    imgsz: tuple[int, int]
    batch: int
    dynamic: bool
    half: bool
    int8: bool
    nms: dict[str, Any] | None  # the NMS the file holds (--nms), else None
    size_mb: float = 0.0
    tolerance: float = RAW_TOLERANCE  # atol = rtol of the raw comparison
    max_abs_diff: float | None = None  # raw outputs vs PyTorch (float formats without --nms)
    max_rel_diff: float | None = None
    max_excess: float | None = None  # largest |a - b| - (tol + tol * |b|); <= 0: within tolerance
    checked_shapes: list[tuple[int, int, int, int]] = field(default_factory=list)
    checker: str = "n/a"  # "passed" for ONNX files (onnx.checker)
    simplified_with: str | None = None
    agreement: Agreement | None = None  # detections vs PyTorch after NMS
    verify_images: int = 0
    verify_source: str = "not verified"  # "8 val images of DATA", "--image", "synthetic scene"
    quantization: dict[str, Any] | None = None  # INT8: calibration and mAP before/after (also in the metadata)
    latency_ms: float | None = None
    latency_engine: str = ""
    notes: list[str] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)  # what was checked without running the file (Core ML)
    unverified: bool = False  # True when this machine cannot run the file (Core ML off macOS)

    @property
    def raw_passed(self) -> bool:
        return self.max_excess is None or self.max_excess <= 0

    @property
    def passed(self) -> bool:
        if self.int8:
            return True  # judged by the mAP drop, which is printed and stored
        # float16 moves scores by ~1e-3: its raw test has a float16 tolerance, its detections are reported
        detections = self.agreement is None or self.agreement.passed or self.half
        return self.raw_passed and detections

    def to_json(self, indent: int | None = None) -> str:
        """The result as json (what `mnv3det export --json` prints)."""
        from mnv3det.core.tables import to_json

        return to_json(self.as_dict(), indent)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(path=str(self.path), passed=self.passed,
                   agreement=self.agreement.as_dict() if self.agreement is not None else None)
        return out


def synthetic_image(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A deterministic BGR test scene (gradient background, filled shapes, texture) for verification.

    Used when no `--image` or `--data` is given, so export works offline with no dataset at hand.
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


def _staged(path: Path, folder: bool) -> AtomicOutput:
    """The atomic writer of an export at `path`, its temporary already made (a one-line error when it cannot
    be), after removing the temporaries killed exports left there."""
    staged = AtomicOutput(path, folder=folder, keep_suffix=True)
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


def size_mb(path: Path) -> float:
    """Megabytes of a file, or of every file in a folder."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 2**20


def output_path(fmt: Format, output: str | Path | None, weights: Path, nms: bool) -> Path:
    """Where the file goes: `output` (its suffix made the format's for a file format), else next to `weights`."""
    if output is None:
        return fmt.output_for(weights, nms)
    path = Path(output)
    if not fmt.folder and not path.name.endswith(fmt.suffix):
        path = path.with_suffix(fmt.suffix)
    return path


def export_model(
    model: torch.nn.Module,
    output: str | Path | None = None,
    config: ExportConfig | None = None,
    *,
    recipe_name: str = "",
    train_imgsz: int | None = None,
    picture: np.ndarray | None = None,
    console: Any = None,
    **fields: Any,
) -> ExportResult:
    """Export a `DetectionModel` (not changed: a fused copy is exported) and verify the file; see the module doc.

    config: an ExportConfig, or its fields as keywords (`format="openvino", imgsz=320, ...`). output: default
    `config.output`, else `model.pt` in the working folder's name scheme. picture: a BGR image to verify on (default:
    the val images of `config.data`, else a generated scene). console: where progress lines go (None: silent).
    """
    config = config or ExportConfig(**fields)
    fmt = config.check()
    writer = fmt.writer_module()  # one clear line naming the extra when a package is missing
    device = torch.device(config.device if fmt.accepts("device") and config.device else "cpu")
    threads = resolve_threads(config.threads)  # verification and the latency figure run with this many CPU threads
    if device.type == "cpu":
        torch.set_num_threads(threads)
    if config.half and device.type != "cuda":
        raise UserError("--half needs a CUDA device (float16 convs are slow or missing on CPU); add --device 0 or drop --half")
    simplify_tool = None
    if config.simplify:
        from mnv3det.deploy.export.onnx import find_simplifier

        simplify_tool = find_simplifier()
    strides = [int(s) for s in model.stride]
    size = choose_imgsz(config.imgsz, train_imgsz, max(strides))
    names = list(getattr(model, "names", None) or [str(i) for i in range(model.nc)])
    path = output_path(fmt, output if output is not None else config.output, Path("model.pt"), config.nms)
    dynamic = config.is_dynamic(fmt)
    meta = {**export_metadata(names, strides, size.hw, config.batch, dynamic, config.half, recipe_name, train_imgsz,
                              config.nms_settings(), objectness=not getattr(model, "anchor_free", False)),
            "format": fmt.name}
    shape = (config.batch, 3, *size.hw)
    result = ExportResult(
        path=path, format=fmt.name, runtime=fmt.title, imgsz=size.hw, batch=config.batch, dynamic=dynamic,
        half=config.half, int8=fmt.int8, nms=config.nms_settings(),
        tolerance=HALF_TOLERANCE if config.half else RAW_TOLERANCE, simplified_with=simplify_tool,
    )
    prepared = _prepared(model, device, config.half)
    exported = prepared
    if config.nms:
        from mnv3det.deploy.export.end_to_end import EndToEnd

        exported = EndToEnd(prepared, config.conf, config.iou, config.max_det).eval()
    require_export_memory(prepared, shape, f"export --format {fmt.name} at {size}", CHUNK_BYTES if fmt.calibration else 0)
    staged = _staged(path, fmt.folder)
    try:
        with staged as tmp, tempfile.TemporaryDirectory(prefix=".mnv3det-export-", dir=path.parent) as scratch:
            with torch.no_grad():
                exported(torch.zeros(shape, device=device, dtype=torch.float16 if config.half else torch.float32))
            stem = path.name.removesuffix(fmt.suffix) if fmt.folder else path.stem
            job = ExportJob(exported, shape, stem, meta, config, Path(scratch), Int8Options.from_config(config),
                            console=console)
            _prepare_data(job, fmt, config, max(strides))
            writer.write(job, tmp)
            if job.calibration is not None and job.calibration.skipped:
                job.say(f"[yellow]{len(job.calibration.skipped)} calibration image(s) could not be read and were "
                        "skipped[/]")
            result.notes += job.notes
            result.checker = "passed" if fmt.name == "onnx" else "n/a"  # write_onnx ran onnx.checker
            backend = _check(job, fmt, writer, prepared, tmp, device, threads, picture, result)
            if not result.passed:  # kept for inspection under another name; an earlier file at `path` stays
                staged.target = path.with_name(f"{path.stem}.unverified{path.suffix}")
    except KeyboardInterrupt:
        raise Interrupted(interrupted_line(path)) from None
    except OSError as err:  # a full disk while writing, the folder removed meanwhile
        raise unwritable(path, err) from None
    result.path = staged.target
    result.size_mb = size_mb(result.path)
    if config.runs > 0 and backend is not None:
        job.say(f"timing {result.path.name} ({config.runs} runs)")
        on_gpu = backend if backend.device.type != "cpu" else None
        del backend  # release the runtime (its threads) before timing a fresh one
        result.latency_ms, result.latency_engine = _latency(on_gpu, result.path, shape, threads, config.runs, fmt)
    return result


def _prepare_data(job: ExportJob, fmt: Format, config: ExportConfig, stride: int) -> None:
    """The val split (verification images, INT8 scores) and, for INT8, the calibration images."""
    if not config.verify and not fmt.calibration:
        return
    if fmt.int8 or config.data is not None:
        from mnv3det.data import load_data

        job.val_spec = load_data(config.data)
        job.val_records = job.val_spec.records("val") if "val" in job.val_spec.splits and config.verify else []
        job.val_records = job.val_records[: config.val_images]  # benchmark --max-images: a subset, said in its table
    if fmt.calibration:
        from mnv3det.deploy.export.calibrate import calibration_set
        from rich.markup import escape

        job.calibration = calibration_set(config.data, job.shape, stride, config.calib_images)
        job.val_spec = job.val_spec or job.calibration.spec
        job.say(f"INT8: calibrating on {len(job.calibration)} images of the training split of "
                f"{escape(str(job.val_spec.source))}")


def _check(job: ExportJob, fmt: Format, writer: Any, model: torch.nn.Module, staged: Path, device: torch.device,
           threads: int, picture: np.ndarray | None, result: ExportResult) -> Any:
    """Step 4 of the module doc on the staged file; the opened Backend (None when it cannot run here)."""
    if not fmt.runtime_module().runs_here():  # Core ML off macOS: the writer's own checks (job.report), no numbers
        result.checks, result.unverified = dict(job.report), True
        result.verify_source = f"not run: {fmt.title} predicts on macOS/iOS only"
        return None
    backend = load_backend(staged, device, threads)
    if job.config.verify:
        _verify(model, backend, job, fmt, writer, staged, picture, result)
    return backend


def _verify(model: torch.nn.Module, backend: Any, job: ExportJob, fmt: Format, writer: Any, staged: Path,
            picture: np.ndarray | None, result: ExportResult) -> None:
    """Fill `result`'s checks: raw outputs (float formats without --nms), detections, INT8 mAP (stored in the file)."""
    reference = TorchBackend(model, names=backend.names, device=backend.device)
    reference.fixed_shape = backend.fixed_shape  # exactly the exported input (a static file: its square)
    reference.imgsz = backend.imgsz  # and the same default size for a dynamic one
    pictures, result.verify_source = _verification_images(picture, job.val_records, job.config.data)
    result.verify_images = len(pictures)
    job.say(f"verifying against PyTorch on {len(pictures)} image(s)")
    if not fmt.int8 and backend.nms is None:
        _raw_check(model, backend, pictures[0], result, int(backend.stride))
    nms = NmsSettings(**backend.nms) if backend.nms else VERIFY_NMS
    tolerance = INT8_TOLERANCE if fmt.int8 else FLOAT_TOLERANCE
    result.agreement = agreement_with(reference, backend, pictures, tolerance, nms)
    if fmt.int8:
        if job.val_records:
            job.say(f"INT8: mAP of PyTorch and of {result.path.name} on {len(job.val_records)} val images")
        result.quantization = _quantization_report(job, reference, backend, fmt)
        writer.update_metadata(staged, {**job.meta, "quantization": result.quantization})


def _verification_images(picture: np.ndarray | None, val_records: list, data: Any) -> tuple[list[np.ndarray], str]:
    from mnv3det.deploy.runtime.sources import UnreadableImage, read_image

    if picture is not None:
        return [picture], "--image"
    pictures = []
    for record in val_records[:VERIFY_IMAGES]:
        try:
            pictures.append(read_image(record.path))
        except UnreadableImage:
            continue
    if pictures:
        return pictures, f"{len(pictures)} val images of {data or 'the demo set'}"
    return [synthetic_image()], "synthetic scene"


def _raw_check(model: torch.nn.Module, backend: Any, image: np.ndarray, result: ExportResult, stride: int) -> None:
    """Raw outputs of the file vs PyTorch at the export shape and, for a dynamic file, a second shape and batch."""
    b, (h, w) = result.batch, result.imgsz
    result.checked_shapes = [(b, 3, h, w)]
    if result.dynamic:
        result.checked_shapes.append((b + 1, 3, h + stride, max(w - stride, stride)))
    result.max_abs_diff = result.max_rel_diff = 0.0
    result.max_excess = float("-inf")
    dtype = next(model.parameters()).dtype
    for shape in result.checked_shapes:
        variants = [np.ascontiguousarray(image if i % 2 == 0 else image[:, ::-1]) for i in range(shape[0])]
        batch, _ = letterbox_images(variants, shape[2:], stride, auto=False)  # flipped copies so items differ
        x = batch.to(backend.device).float() / 255
        with torch.no_grad():
            expected = model(x.to(dtype)).float().cpu()
        got = backend(x).float().cpu()
        if got.shape != expected.shape:
            raise RuntimeError(f"exported output shape {tuple(got.shape)} != torch {tuple(expected.shape)}")
        abs_diff, rel_diff, excess = compare_raw(got, expected, result.tolerance)
        result.max_abs_diff = max(result.max_abs_diff, abs_diff)
        result.max_rel_diff = max(result.max_rel_diff, rel_diff)
        result.max_excess = max(result.max_excess, excess)


def compare_raw(exported: torch.Tensor, reference: torch.Tensor, tol: float) -> tuple[float, float, float]:
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


def _detections(backend: Any, images: list[np.ndarray], nms: NmsSettings) -> list[torch.Tensor]:
    return [predict(backend, [im], nms=nms).detections[0] for im in images]


def agreement_with(reference: Any, backend: Any, images: list[np.ndarray], tolerance: tuple[float, float],
                   nms: NmsSettings = VERIFY_NMS) -> Agreement:
    """Detections of `backend` vs `reference` after NMS at `nms` (candidates: NMS at IoU 0.99, uncapped; an --nms
    file's candidates are its own detections)."""
    from dataclasses import replace

    wide = replace(nms, iou=0.99, max_det=30000)
    ref, out = _detections(reference, images, nms), _detections(backend, images, nms)
    candidates = (_detections(reference, images, wide), _detections(backend, images, wide))
    return compare_detections(ref, out, nms.conf, *tolerance, candidates=candidates)


def _quantization_report(job: ExportJob, reference: Any, backend: Any, fmt: Format) -> dict[str, Any]:
    """mAP before (PyTorch float32) and after (the INT8 file) on the val split; the drop."""
    report: dict[str, Any] = {
        "method": job.notes[-1] if job.notes else fmt.name,
        "calibration_images": len(job.calibration) - len(job.calibration.skipped),
        "calibration_split": "train",
        "decode": "float",
        "head_convs": "float" if job.options.head_float else "int8",
        "stem": job.stem_precision,
    }
    report.update(job.report)
    if not job.val_records:
        report["val"] = "no val split: mAP not measured"
        return report
    before, after = job.score(reference), job.score(backend)
    report.update(
        val_images=len(job.val_records),
        map50_95_float=round(before.map, 4), map50_95_int8=round(after.map, 4),
        map50_float=round(before.map50, 4), map50_int8=round(after.map50, 4),
        map50_95_drop=round(before.map - after.map, 4),
    )
    return report


def _latency(gpu_backend: Any, path: Path, shape: tuple, threads: int, runs: int, fmt: Format) -> tuple[float, str]:
    """Median ms per batch: the runtime's own call (runtime.timing) on CPU; the Backend call on a GPU."""
    from mnv3det.deploy.runtime.timing import latency_ms, runtime_latency

    if gpu_backend is not None:
        x = torch.rand(*shape, device=gpu_backend.device)
        return latency_ms(gpu_backend, x, runs), f"{fmt.title} {gpu_backend.device.type}"
    return runtime_latency(path, shape, threads, runs), f"{fmt.title} CPU, {threads} threads"


def export_checkpoint(weights: str | Path, config: ExportConfig | None = None, *, console: Any = None,
                      picture: np.ndarray | None = None, **fields: Any) -> ExportResult:
    """Export the model stored in checkpoint `weights` (default output: next to it, named by the format).

    The default size is the one the checkpoint was trained at; `result.notes` says so. picture: a BGR image already
    read, instead of `config.image`.
    """
    from mnv3det.core.device import select_device
    from mnv3det.deploy.runtime.sources import UnreadableImage, read_image
    from mnv3det.models.checkpoint import load_model

    config = config or ExportConfig(**fields)
    weights = Path(weights)
    if weights.suffix.lower() != ".pt":
        raise UserError(f"--weights {weights}: export reads a .pt checkpoint written by mnv3det train")
    fmt = config.check()
    fmt.writer_module()  # the missing-package message before any work
    device = str(select_device(config.device)) if fmt.accepts("device") else "cpu"
    if config.image is not None and picture is None:
        try:
            picture = read_image(Path(config.image))
        except UnreadableImage as err:
            raise UserError(f"--image {config.image}: {err}") from None
    model, ckpt = load_model(weights, device="cpu")
    trained = ckpt.train_imgsz  # from the run's TrainConfig, when it was trained
    from dataclasses import replace

    config = replace(config, device=device)
    result = export_model(model, output_path(fmt, config.output, weights, config.nms), config,
                          recipe_name=str(ckpt.train_recipe or ""), train_imgsz=trained, picture=picture,
                          console=console)
    if config.imgsz is None and trained:
        result.notes.insert(0, f"imgsz {trained}: the size {weights} was trained at (set --imgsz to change it)")
    return result
