"""Export to a static format (registry.py, `ExportFormat.edge`), then verify it against PyTorch on real images, after NMS.

Steps of `export_edge`:
1. The fused float32 model is written to a static ONNX file in a temporary folder (onnx.write_onnx); the
   OpenVINO formats convert that file, ONNX INT8 quantizes it, ncnn traces the model itself (pnnx).
2. INT8 formats calibrate on `calib_images` images of the training split of `data` (deploy/calibrate.py,
   default the demo set), with the Detect decode kept in float (see onnx_int8.py).
3. The format's module writes its file or folder into a staging path beside the output; it replaces the output
   only once written, so an interrupted export never leaves half a model where a good one was.
4. Verification, with the runtime that will run the file (deploy/runtime/registry.py), through the one prediction path (`predict`, letterbox -> forward -> NMS -> scale back):
   - float formats: the raw output on a letterboxed image within 1e-4 abs + 1e-4 rel of PyTorch (as for ONNX),
     and the detections after NMS on real images agree (deploy/agreement.py: IoU >= 0.9, score within 0.05);
   - INT8 formats: mAP50-95 and mAP50 of PyTorch (float32, the same square input) and of the INT8 file on the
     val split, printed and stored in the file's metadata (`quantization`); detections compared at IoU >= 0.5
     and score within 0.15, reported only.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from rich.markup import escape

from mnv3det.core.atomic import AtomicOutput, remove_stale, unwritable
from mnv3det.deploy.export.agreement import FLOAT_TOLERANCE, INT8_TOLERANCE, Agreement, compare_detections
from mnv3det.deploy.runtime.metadata import export_metadata
from mnv3det.deploy.export.calibrate import CHUNK_BYTES
from mnv3det.deploy.export.pipeline import interrupted_line, require_export_memory
from mnv3det.deploy.runtime.registry import runtime_for
from mnv3det.deploy.export.registry import ExportFormat
from mnv3det.errors import Interrupted, UserError

VERIFY_IMAGES = 8  # val images the detections are compared on
VERIFY_CONF = 0.25  # detect's default threshold
RAW_TOLERANCE = 1e-4  # as for ONNX/TorchScript in export.py


@dataclass
class Int8Options:
    """How INT8 formats are calibrated and what they keep in float."""

    calib_images: int = 300
    max_drop: float | None = 0.01  # nncf accuracy control: most mAP50-95 to lose (absolute); None: plain quantize
    head_float: bool = True  # also keep the Detect 1x1 convs in float (their int8 logits cost mAP)
    stem_float: bool = True  # onnx-int8: keep the first row (the conv on the 3-channel image) float, faster there
    reduce_range: bool = False  # ORT: 7-bit weights, for CPUs without VNNI
    val_images: int | None = None  # score (and accuracy-control) on the first N val images only; None: all


@dataclass
class ExportJob:
    """What a format module's `export(job, out)` gets."""

    model: torch.nn.Module  # fused, float32, eval, on CPU
    onnx_path: Path  # the same model as a verified static float32 ONNX file
    shape: tuple[int, int, int, int]  # (B, 3, H, W)
    stem: str  # file name stem inside folder formats ("best")
    meta: dict[str, Any]  # export metadata (runtime/metadata.py export_metadata + "format")
    options: Int8Options
    calibration: Any = None  # a CalibrationSet for INT8 formats
    val_spec: Any = None  # DataSpec and records of the val split, when the data has one
    val_records: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stem_precision: str = "int8"  # "float" when the format kept the first row (the conv on the image) in float
    report: dict[str, Any] = field(default_factory=dict)  # format-specific entries for the quantization report
    console: Any = None  # where progress goes (None: silent)

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
        """EvalResult (fast mAP) of `backend` on the val records (or `records`), square inputs of the export size."""
        from mnv3det.evaluate.config import EvalConfig
        from mnv3det.evaluate.evaluator import evaluate

        config = EvalConfig(imgsz=self.shape[2], batch=1, coco=False, workers=0)
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
class EdgeExportResult:
    """What an edge export wrote and how it compared with PyTorch."""

    path: Path
    format: str
    runtime: str
    imgsz: tuple[int, int]
    batch: int
    size_mb: float
    int8: bool
    agreement: Agreement
    verify_images: int  # images the detections were compared on
    verify_source: str  # "val split of DATA", an image path or "synthetic scene"
    max_abs_diff: float | None = None  # float formats: raw output vs PyTorch
    max_excess: float | None = None  # <= 0: within RAW_TOLERANCE
    quantization: dict[str, Any] | None = None  # INT8: calibration and mAP before/after (also in the metadata)
    latency_ms: float | None = None
    latency_engine: str = ""
    notes: list[str] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)  # what was checked without running the file (Core ML)
    unverified: bool = False  # True when this machine cannot run the file: no comparison with PyTorch was made
    # Shared with ExportResult so callers can treat both alike.
    dynamic: bool = False
    half: bool = False
    tolerance: float = RAW_TOLERANCE

    @property
    def passed(self) -> bool:
        if self.int8:
            return True  # judged by the mAP drop, which is printed and stored
        return self.agreement.passed and (self.max_excess is None or self.max_excess <= 0)

    def to_json(self, indent: int | None = None) -> str:
        """The result as json (what `mnv3det export --format FMT --json` prints)."""
        from mnv3det.core.tables import to_json

        return to_json(self.as_dict(), indent)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(path=str(self.path), passed=self.passed, agreement=self.agreement.as_dict())
        return out


def _verification_images(data: Any, image: np.ndarray | None, val_records: list) -> tuple[list[np.ndarray], str]:
    from mnv3det.deploy.export.pipeline import synthetic_image
    from mnv3det.deploy.runtime.sources import UnreadableImage, read_image

    if image is not None:
        return [image], "--image"
    pictures = []
    for record in val_records[:VERIFY_IMAGES]:
        try:
            pictures.append(read_image(record.path))
        except UnreadableImage:
            continue
    if pictures:
        return pictures, f"{len(pictures)} val images of {data or 'the demo set'}"
    return [synthetic_image()], "synthetic scene"


def _square_torch(model: torch.nn.Module, names: list[str], shape: tuple[int, int, int, int]) -> Any:
    """PyTorch float32 as a static-shape Backend, so the reference sees exactly the exported input."""
    from mnv3det.deploy.runtime.backends import TorchBackend

    backend = TorchBackend(model, names=names, device=torch.device("cpu"))
    backend.fixed_shape = shape
    return backend


def _detections(backend: Any, images: list[np.ndarray], conf: float, iou: float = 0.45) -> list[torch.Tensor]:
    from mnv3det.deploy.runtime.predictor import predict

    max_det = 300 if iou < 0.9 else 30000  # candidates (NMS at IoU 0.99) are not capped
    return [predict(backend, [im], conf=conf, iou=iou, max_det=max_det).detections[0] for im in images]


def agreement_with(
    reference: Any, backend: Any, images: list[np.ndarray], tolerance: tuple[float, float], conf: float = VERIFY_CONF
) -> Agreement:
    """Detections of `backend` vs `reference` after NMS at detect's defaults (candidates: NMS at IoU 0.99)."""
    ref, out = _detections(reference, images, conf), _detections(backend, images, conf)
    candidates = (_detections(reference, images, conf, 0.99), _detections(backend, images, conf, 0.99))
    return compare_detections(ref, out, conf, *tolerance, candidates=candidates)


def _raw_diff(module: Any, backend: Any, image: np.ndarray, shape: tuple) -> tuple[float, float]:
    """(max |diff|, max excess over RAW_TOLERANCE) of the raw outputs on `image` letterboxed to `shape`."""
    from mnv3det.deploy.export.pipeline import _compare
    from mnv3det.deploy.runtime.predictor import letterbox_images

    batch, _ = letterbox_images([image] * shape[0], shape[2:], int(backend.stride), auto=False)
    x = batch.float() / 255
    with torch.no_grad():
        reference = module(x)
    abs_diff, _, excess = _compare(backend(x).float().cpu(), reference, RAW_TOLERANCE)
    return abs_diff, excess


def _latency(runtime: Any, path: Path, shape: tuple, threads: int | None, runs: int) -> tuple[float, str]:
    from mnv3det.core.threads import resolve_threads

    threads = resolve_threads(threads)
    run, fixed = runtime.runner(path, threads)
    x = np.random.default_rng(0).random(fixed or shape, dtype=np.float32)
    for _ in range(2):
        run(x)
    times = []
    for _ in range(max(runs, 1)):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), f"{threads} threads"


def _quantization_report(job: ExportJob, reference: Any, backend: Any, fmt: ExportFormat) -> dict[str, Any]:
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


def _write(model: torch.nn.Module, fmt: ExportFormat, module: Any, out: Path, output: Path, scratch: Path,
           shape: tuple[int, int, int, int], meta: dict[str, Any], options: Int8Options, data: Any, verify: bool,
           say: Any, console: Any = None) -> ExportJob:
    """Steps 1-3 of the module doc into `out` (the staged file or folder that becomes `output`); scratch: a folder
    for the fp32 ONNX."""
    from mnv3det.deploy.export.onnx import write_onnx

    val_spec, val_records = None, []
    if verify and (fmt.int8 or data is not None):
        from mnv3det.data import load_data

        val_spec = load_data(data)
        val_records = val_spec.records("val") if "val" in val_spec.splits else []
        val_records = val_records[: options.val_images]  # benchmark --max-images: a subset, said in its table
    onnx_path = scratch / "fp32.onnx"
    write_onnx(model, torch.zeros(shape), onnx_path, meta)
    stem = output.name.removesuffix(fmt.folder_suffix) if fmt.folder_suffix else output.stem
    job = ExportJob(model, onnx_path, shape, stem, meta, options, val_spec=val_spec, val_records=val_records,
                    console=console)
    if fmt.int8:
        from mnv3det.deploy.export.calibrate import calibration_set

        job.calibration = calibration_set(data, shape, max(int(s) for s in model.stride), options.calib_images)
        job.val_spec = val_spec or job.calibration.spec
        say(f"INT8: calibrating on {len(job.calibration)} images of the training split of "
            f"{escape(str(job.val_spec.source))}")
    module.export(job, out)
    if job.calibration is not None and job.calibration.skipped:
        say(f"[yellow]{len(job.calibration.skipped)} calibration image(s) could not be read and were skipped[/]")
    return job


def export_edge(
    model: torch.nn.Module,
    output: str | Path,
    fmt: ExportFormat,
    *,
    imgsz: tuple[int, int],
    batch: int = 1,
    data: str | Path | None = None,
    image: np.ndarray | None = None,
    int8: Int8Options | None = None,
    recipe_name: str = "",
    train_imgsz: int | None = None,
    threads: int | None = None,
    latency_runs: int = 10,
    console: Any = None,
    verify: bool = True,
) -> EdgeExportResult:
    """Export `model` (not changed) to `fmt` at `output` and verify it; see the module docstring.

    verify=False skips the comparison with PyTorch and the mAP on val (a file written only to be timed, such as
    the untrained yolov5n reference of `mnv3det benchmark`); the result's agreement is then empty.
    """
    module = fmt.load()  # one clear line naming the extra when a package is missing
    options = int8 or Int8Options()
    say = console.print if console is not None else (lambda *a, **k: None)
    strides = [int(s) for s in model.stride]
    names = list(getattr(model, "names", None) or [str(i) for i in range(model.nc)])
    model = copy.deepcopy(model).cpu().float().eval()
    model.fuse()
    for p in model.parameters():
        p.requires_grad_(False)
    shape = (batch, 3, *imgsz)
    meta = {**export_metadata(names, strides, imgsz, batch, False, False, recipe_name, train_imgsz), "format": fmt.name}
    output = Path(output)
    if fmt.file_suffix and output.suffix != fmt.file_suffix:
        output = output.with_suffix(fmt.file_suffix)
    calibration = CHUNK_BYTES if fmt.int8 else 0  # the most a calibrator's chunk of activations takes
    require_export_memory(model, shape, f"export --format {fmt.name} at {imgsz[0]}x{imgsz[1]}", calibration)
    # Staged beside `output` under a temporary name and renamed over it once written (core/atomic.py); made
    # now, so an unwritable folder is a one-line error before any work.
    staged = AtomicOutput(output, folder=fmt.folder_suffix is not None, keep_suffix=True)
    try:
        remove_stale(output)
        staged.open()
    except OSError as err:
        raise unwritable(output, err) from None

    try:
        with staged as out, tempfile.TemporaryDirectory(prefix=".mnv3det-export-", dir=output.parent) as tmp:
            job = _write(model, fmt, module, out, output, Path(tmp), shape, meta, options, data, verify, say, console)
    except KeyboardInterrupt:
        raise Interrupted(interrupted_line(output)) from None
    except OSError as err:  # a full disk while writing, the folder removed meanwhile
        raise unwritable(output, err) from None
    val_records = job.val_records

    runtime = runtime_for(output).load()  # the runtime `detect`/`val` will open the file with
    if not runtime.runs_here():  # Core ML off macOS: the module's own checks (job.report), no numbers
        return EdgeExportResult(
            path=output, format=fmt.name, runtime=fmt.runtime, imgsz=tuple(imgsz), batch=batch,
            size_mb=_size_mb(output), int8=fmt.int8, agreement=compare_detections([], [], VERIFY_CONF),
            verify_images=0, verify_source=f"not run: {fmt.runtime} predicts on macOS/iOS only", notes=job.notes,
            checks=dict(job.report), unverified=True,
        )
    backend = runtime.Backend(output, "cpu", threads)
    result = EdgeExportResult(
        path=output, format=fmt.name, runtime=fmt.runtime, imgsz=tuple(imgsz), batch=batch, size_mb=_size_mb(output),
        int8=fmt.int8, agreement=compare_detections([], [], VERIFY_CONF), verify_images=0, verify_source="not verified",
        notes=job.notes,
    )
    if verify:
        reference = _square_torch(model, names, shape)
        pictures, result.verify_source = _verification_images(data, image, val_records)
        result.verify_images = len(pictures)
        say(f"verifying against PyTorch on {len(pictures)} image(s)", highlight=False)
        result.agreement = agreement_with(reference, backend, pictures, INT8_TOLERANCE if fmt.int8 else FLOAT_TOLERANCE)
        if fmt.int8:
            if job.val_records:
                say(f"INT8: mAP of PyTorch and of {output.name} on {len(job.val_records)} val images", highlight=False)
            result.quantization = _quantization_report(job, reference, backend, fmt)
            module.update_metadata(output, {**meta, "quantization": result.quantization})
        else:
            result.max_abs_diff, result.max_excess = _raw_diff(model, backend, pictures[0], shape)
    del backend  # release the runtime (its threads) before timing a fresh one
    if latency_runs > 0:
        say(f"timing {output.name} ({latency_runs} runs)", highlight=False)
        result.latency_ms, result.latency_engine = _latency(runtime, output, shape, threads, latency_runs)
        result.latency_engine = f"{fmt.runtime} CPU, {result.latency_engine}"
    return result


def _size_mb(path: Path) -> float:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 2**20


def export_edge_checkpoint(
    weights: str | Path,
    fmt: ExportFormat,
    *,
    imgsz: Any = None,
    batch: int = 1,
    output: str | Path | None = None,
    image: str | Path | np.ndarray | None = None,
    data: str | Path | None = None,
    int8: Int8Options | None = None,
    runs: int = 10,
    threads: int | None = None,
    console: Any = None,
) -> EdgeExportResult:
    """`mnv3det export --format FMT` for a .pt checkpoint: static input at `imgsz` (default: the trained size)."""
    from mnv3det.core.checkpoint import load_model
    from mnv3det.core.imgsz import choose_imgsz
    from mnv3det.deploy.runtime.sources import UnreadableImage, read_image

    weights = Path(weights)
    if weights.suffix.lower() != ".pt":
        raise UserError(f"--weights {weights}: export reads a .pt checkpoint written by mnv3det train")
    if batch < 1:
        raise UserError(f"--batch {batch}: must be 1 or more")
    fmt.load()  # the missing-package message before any work
    picture = image if isinstance(image, np.ndarray) else None  # an image file, or one already read (BGR)
    if image is not None and picture is None:
        try:
            picture = read_image(Path(image))
        except UnreadableImage as err:
            raise UserError(f"--image {image}: {err}") from None
    model, ckpt = load_model(weights, device="cpu")
    trained = ckpt.train_imgsz
    size = choose_imgsz(imgsz, trained, int(max(int(s) for s in model.stride)))
    if imgsz is None and trained and console is not None:
        console.print(escape(f"imgsz {trained}: the size {weights} was trained at (set --imgsz to change it)"))
    return export_edge(
        model, Path(output) if output else fmt.output_for(weights), fmt, imgsz=size.hw, batch=batch, data=data,
        image=picture, int8=int8, recipe_name=str(ckpt.train_recipe or ""), train_imgsz=trained, threads=threads,
        latency_runs=runs, console=console,
    )
