"""`mnv3det benchmark`: export a checkpoint to every available format, score and time each, against yolov5n.

For each format (PyTorch, TorchScript, ONNX, ONNX INT8, OpenVINO, OpenVINO INT8, ncnn, LiteRT, LiteRT INT8; those
whose packages are installed, or the ones asked for):
- export at the trained size, static batch 1, verified against PyTorch as `export` does (one pipeline); with
  `nms`, also each format's end-to-end file (`export --nms`, rows "onnx+nms"), whose latency includes its NMS;
- mAP50-95 and mAP50 on the val split through `val`'s evaluator (the fast COCO-matching mAP; INT8 rows reuse the
  figures their export measured on the same split);
- latency: the runtime's own forward pass (batch 1, `threads` threads) in a fresh process per format
  (`deploy/runtime/timing.py`), `rounds` rounds taken in turn over all formats, the median of the round medians.

The reference is yolov5n (our recipe: YOLOv5 v6.0's yolov5n graph, built untrained with nc from the data; latency
does not depend on the weights), exported to the same runtimes and timed in the same rounds; every row gets the
ratio of its latency to yolov5n's fastest format. Results: a rich table, `benchmark.csv` and `benchmark.json` in
the run folder (runs/benchmark/exp), and the JSON alone with --json.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mnv3det.deploy.config import ExportConfig
from mnv3det.deploy.runtime.timing import time_in_subprocess
from mnv3det.errors import UserError, option

REFERENCE = "yolov5n"
REFERENCE_CALIB_IMAGES = 32  # yolov5n is untrained: its INT8 files exist to be timed, not scored
NMS_SUFFIX = "+nms"  # a row of an end-to-end file ("onnx+nms"): the NMS it holds is timed with it


def timed_formats() -> list[str]:
    """Every format `benchmark` can time, in table order (deploy/formats.py `timed`)."""
    from mnv3det.deploy.formats import FORMATS

    return [f.name for f in FORMATS.values() if f.timed]


def reference_formats() -> list[str]:
    """yolov5n's candidates for "fastest" (deploy/formats.py `reference`)."""
    from mnv3det.deploy.formats import FORMATS

    return [f.name for f in FORMATS.values() if f.reference]


@dataclass
class BenchRow:
    """One (model, format) of the table."""

    model: str  # the checkpoint's file name (e.g. "best.pt") or "yolov5n"
    format: str
    path: str = ""
    size_mb: float | None = None
    map50_95: float | None = None
    map50: float | None = None
    latency_ms: float | None = None
    rounds_ms: list[float] = field(default_factory=list)
    ratio: float | None = None  # latency / yolov5n's fastest latency
    note: str = ""


@dataclass
class BenchReport:
    weights: str
    data: str
    imgsz: tuple[int, int]
    threads: int
    runs: int
    rounds: int
    rows: list[BenchRow]
    reference_best: str = ""  # yolov5n's fastest format
    save_dir: str = ""  # the run folder (benchmark.csv, benchmark.json, the exported files)
    val_images: int = 0  # val images the mAP columns were scored on
    val_images_total: int = 0  # val images the data has (more than val_images: --max-images took a subset)

    @property
    def subset(self) -> bool:
        """True when the mAP columns come from a subset of the val images (--max-images)."""
        return self.val_images < self.val_images_total

    def scored_on(self) -> str:
        """'mAP on 448 val images', or 'mAP on a subset: 50 of 448 val images (--max-images)'."""
        if self.subset:
            return f"mAP on a subset: {self.val_images} of {self.val_images_total} val images ({option('max_images')})"
        return f"mAP on {self.val_images} val images"

    def as_dict(self) -> dict:
        return {**asdict(self), "subset": self.subset}

    def to_json(self, indent: int | None = None) -> str:
        """The report as json (what `mnv3det benchmark --json` prints)."""
        from mnv3det.core.tables import to_json

        return to_json(self.as_dict(), indent)

    def to_df(self) -> Any:
        """One row per model and format (the table `mnv3det benchmark` prints) as a pandas DataFrame."""
        from mnv3det.core.tables import to_dataframe

        return to_dataframe([asdict(r) for r in self.rows], [f.name for f in fields(BenchRow)], "BenchReport")


def available_formats() -> list[str]:
    """The timed formats whose packages are installed here."""
    from mnv3det.deploy.formats import FORMATS

    def ok(name: str) -> bool:
        fmt = FORMATS[name]
        return all(importlib.util.find_spec(m) is not None for m, _ in (*fmt.packages, *fmt.runtime_packages))

    return [f for f in timed_formats() if ok(f)]


def choose_formats(requested: list[str] | None) -> list[str]:
    """The formats to run: all available ones, or `requested` (each known, each installed; clear errors)."""
    from mnv3det.core.extras import require
    from mnv3det.deploy.formats import find_format

    available, timed = available_formats(), timed_formats()
    if not requested:
        return available
    names = []
    for name in requested:
        fmt = find_format(name)  # aliases: tflite -> litert
        name = fmt.name if fmt is not None else name
        if name not in timed:
            raise UserError(f"--formats {name!r} is not a format; use some of {', '.join(timed)}")
        if name not in available:  # one line naming the extra
            require((*fmt.packages, *fmt.runtime_packages), f"--formats {name}")
        names.append(name)
    return [f for f in timed if f in names]


def export_one(model: Any, fmt: str, folder: Path, stem: str, imgsz: tuple[int, int], data: Any, calib: int,
               threads: int, verify: bool, console: Any, nms: bool = False, val_images: int | None = None
               ) -> tuple[Path, dict[str, Any]]:
    """Write `model` as `fmt` under `folder` (static, batch 1; `nms`: end-to-end) through the one export pipeline;
    (path, INT8 figures or {}); `val_images`: the INT8 figures on the first N val images only."""
    from mnv3det.deploy.config import ExportConfig
    from mnv3det.deploy.export.pipeline import export_model
    from mnv3det.deploy.formats import FORMATS

    record = FORMATS[fmt]
    if record.writer is None:
        raise ValueError("the checkpoint itself is the pytorch row")
    int8 = {"calib_images": calib, **({} if verify else {"int8_max_drop": 0})}  # untrained: plain quantization
    config = ExportConfig(format=fmt, imgsz=imgsz, dynamic=False if record.dynamic else None, data=data,
                          threads=threads, runs=0, verify=verify, nms=nms, val_images=val_images,
                          **{k: v for k, v in int8.items() if record.accepts(k)})
    result = export_model(model, record.output_for(folder / f"{stem}.pt", nms), config, console=console)
    if verify and not result.passed:
        raise RuntimeError(f"{fmt} export differs from PyTorch: {result.agreement.summary()}")
    return result.path, result.quantization or {}


def score(path: Path, spec: Any, records: list, imgsz: tuple[int, int], threads: int) -> tuple[float, float]:
    """(mAP50-95, mAP50) of the file at `path` on `records` (fast COCO-matching mAP, val's defaults otherwise)."""
    from mnv3det.deploy.runtime.backends import load_backend
    from mnv3det.evaluate.config import EvalConfig
    from mnv3det.evaluate.evaluator import evaluate

    backend = load_backend(path, "cpu", threads)
    result = evaluate(backend, records, spec, EvalConfig(imgsz=imgsz[0], coco=False, workers=0), progress=False)
    return result.map, result.map50


def time_rounds(jobs: list[tuple[BenchRow, str, Path]], imgsz: tuple[int, int], threads: int, runs: int,
                rounds: int, progress: Any = None) -> None:
    """Fill each row's latency: `rounds` rounds over all jobs in turn, each job in a fresh process per round."""
    for r in range(rounds):
        for row, fmt, path in jobs:
            if progress:
                progress(f"timing {row.model} {fmt} (round {r + 1}/{rounds})")
            out = time_in_subprocess(fmt, path, imgsz, threads, runs)
            if "error" in out:
                row.note = row.note or f"timing failed: {out['error']}"
                continue
            row.rounds_ms.append(round(out["median_ms"], 3))
    for row, _, _ in jobs:
        row.latency_ms = statistics.median(row.rounds_ms) if row.rounds_ms else None


def write_outputs(report: BenchReport, run_dir: Path) -> None:
    """benchmark.json (everything) and benchmark.csv (one line per row) in the run folder."""
    (run_dir / "benchmark.json").write_text(json.dumps(report.as_dict(), indent=2))
    columns = ["model", "format", "size_mb", "map50_95", "map50", "latency_ms", "ratio", "path", "note"]
    with (run_dir / "benchmark.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        for row in report.rows:
            writer.writerow(asdict(row))


@dataclass
class BenchOptions:
    """The options of `mnv3det benchmark` (defaults live here)."""

    weights: Path
    data: str | None = None  # None: the demo set
    formats: list[str] | None = None  # None: every available format
    imgsz: Any = None  # None: the size the checkpoint was trained at (else 640)
    threads: int = 2  # runtime threads for the latency figures (2: the setting, a 2-core CPU)
    runs: int = 50  # timed calls per round
    rounds: int = 3  # rounds taken in turn over all formats; the median of the round medians is reported
    calib_images: int = ExportConfig.calib_images  # INT8 calibration images of the train split
    nms: bool = False  # also export and time end-to-end files (`export --nms`) beside the raw ones: "onnx+nms" rows
    max_images: int | None = None  # score on the first N val images only (a quick answer); None: all of them
    reference: bool = True  # time yolov5n too (the ratio column)
    project: Path = Path("runs/benchmark")
    name: str = "exp"
    exist_ok: bool = False


def _export_rows(model: Any, label: str, formats: list[str], folder: Path, opts: BenchOptions, imgsz: tuple,
                 verify: bool, say: Any, stem: str | None = None) -> list[tuple[BenchRow, str, Path, dict]]:
    """Export `model` to each format (a failure becomes the row's note); (row, format, path, INT8 figures).
    label: the model's name in the rows; stem: the exported files' stem (default: label)."""
    from mnv3det.deploy.formats import FORMATS

    out = []
    for fmt in with_nms_rows(formats) if opts.nms else formats:
        row = BenchRow(label, fmt)
        name, nms = fmt.removesuffix(NMS_SUFFIX), fmt.endswith(NMS_SUFFIX)
        try:
            if FORMATS[name].writer is None:
                path, quant = Path(opts.weights), {}
            else:
                say(f"exporting {label} to {fmt}")
                calib = opts.calib_images if verify else REFERENCE_CALIB_IMAGES
                path, quant = export_one(model, name, folder, stem or label, imgsz, opts.data, calib, opts.threads,
                                         verify, None, nms, opts.max_images)
        except UserError:
            raise
        except Exception as err:  # one runtime failing must not cost the others' figures
            row.note = f"export failed: {type(err).__name__}: {str(err)[:160]}"
            out.append((row, fmt, Path(), {}))
            continue
        row.path, row.size_mb = str(path), round(_size_mb(path), 3)
        out.append((row, fmt, path, quant))
    return out


def _size_mb(path: Path) -> float:
    from mnv3det.deploy.export.pipeline import size_mb

    return size_mb(path)


def with_nms_rows(formats: list[str]) -> list[str]:
    """`formats` with an end-to-end row ("onnx+nms") after each format that can hold NMS."""
    from mnv3det.deploy.formats import FORMATS

    return [r for f in formats for r in ([f, f + NMS_SUFFIX] if FORMATS[f].end_to_end else [f])]


def model_label(weights: Path) -> tuple[str, str]:
    """(the name rows give the user's model: its file name, the stem of its exports); a stem that would collide with
    the reference's files gets a suffix."""
    stem = weights.stem if weights.stem != REFERENCE else f"{weights.stem}_yours"
    return weights.name, stem


def check_options(opts: BenchOptions) -> list[str]:
    """The formats to run; every name, count and path checked first, without torch (a usage error in a moment)."""
    from mnv3det.core.near_files import missing_checkpoint
    from mnv3det.data.locate import check_data_path

    formats = choose_formats(opts.formats)
    for name, value in (("runs", opts.runs), ("rounds", opts.rounds), ("threads", opts.threads),
                        ("max_images", opts.max_images)):
        if value is not None and value < 1:
            raise UserError(f"{option(name, value)}: must be 1 or more")
    if not Path(opts.weights).is_file():
        raise missing_checkpoint(opts.weights)
    check_data_path(opts.data)
    return formats


def run_benchmark(opts: BenchOptions, say: Any = print) -> tuple[BenchReport, Path]:
    """Export, score and time; see the module docstring. Returns the report and the run folder."""
    formats = check_options(opts)
    from mnv3det.models.checkpoint import load_model
    from mnv3det.core.imgsz import choose_imgsz
    from mnv3det.core.runs import claim_run_dir
    from mnv3det.data import load_data
    from mnv3det.models import build_model

    model, ckpt = load_model(opts.weights, device="cpu")
    imgsz = choose_imgsz(opts.imgsz, ckpt.train_imgsz, int(max(int(s) for s in model.stride))).hw
    spec = load_data(opts.data)
    if "val" not in spec.splits:
        raise UserError(f"--data {spec.source} has no val split to score the formats on; add one")
    if model.nc != spec.nc:
        raise UserError(f"{opts.weights} predicts {model.nc} classes but {spec.source} has {spec.nc}; "
                        "benchmark it on the data it was trained for (--data)")
    records = spec.records("val")
    total = len(records)
    records = records[: opts.max_images]
    if len(records) < total:
        say(f"{option('max_images', opts.max_images)}: scoring on a subset, {len(records)} of {total} val images")
    run_dir = claim_run_dir(Path(opts.project), opts.name, opts.exist_ok)
    folder = run_dir / "weights"
    folder.mkdir(exist_ok=True)

    label, stem = model_label(Path(opts.weights))
    rows = _export_rows(model, label, formats, folder, opts, imgsz, True, say, stem=stem)
    for row, fmt, path, quant in rows:
        if row.note:
            continue
        if quant.get("map50_95_int8") is not None:  # measured by the export on the same split and input
            row.map50_95, row.map50 = quant["map50_95_int8"], quant["map50_int8"]
        else:
            say(f"scoring {fmt} on {len(records)} val images")
            row.map50_95, row.map50 = (round(v, 4) for v in score(path, spec, records, imgsz, opts.threads))
            if fmt.endswith(NMS_SUFFIX):
                row.note = "mAP at the conf the file holds (export --conf), not val's 0.001"
    ref_rows = []
    if opts.reference:
        reference = build_model(REFERENCE, nc=spec.nc).eval()
        ref_formats = [f for f in reference_formats() if f in formats] or ["onnx"]
        ref_rows = _export_rows(reference, REFERENCE, ref_formats, folder, opts, imgsz, False, say)
    jobs = [(row, fmt, path) for row, fmt, path, _ in rows + ref_rows if row.path]  # exported (a failure has none)
    time_rounds(jobs, imgsz, opts.threads, opts.runs, opts.rounds, say)

    all_rows = [r for r, *_ in rows + ref_rows]
    timed_ref = [r for r, *_ in ref_rows if r.latency_ms]
    best = min(timed_ref, key=lambda r: r.latency_ms) if timed_ref else None
    for row in all_rows:
        if best and row.latency_ms:
            row.ratio = round(row.latency_ms / best.latency_ms, 3)
        row.latency_ms = round(row.latency_ms, 3) if row.latency_ms else None
    report = BenchReport(str(opts.weights), str(spec.source), imgsz, opts.threads, opts.runs, opts.rounds, all_rows,
                         best.format if best else "", str(run_dir), len(records), total)
    write_outputs(report, run_dir)
    return report, run_dir
