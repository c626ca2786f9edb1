"""`mnv3det detect`: run a model over images/videos and write what was asked for into runs/detect/expN.

Outputs in the run folder (each only when asked for):
    <stem>.jpg / <stem>.mp4   annotated image / video (default; `save_images=False` turns it off)
    labels/<stem>.txt         YOLO format: class cx cy w h [conf], normalised to the image (video: <stem>_<frame>.txt)
    predictions.json          one entry per box: image, frame, class, name, score, bbox xywh (pixels, COCO-style)
    crops/<class>/<stem>.jpg  every box cut out of the original image
One unreadable file is reported and skipped; the summary table counts objects per class and ms per image.

Names: every source gets one stem, unique among the run's outputs (`_Outputs.stem`): two `img.jpg` from different
folders become img and img-2, and a stem that a video's frame names (`clip_0`, `clip_1`, ...) would also produce
gets a `-k` too, so no two sources ever write the same labels/ or crops/ file. With `exist_ok` (a reused run
folder) labels/ and crops/ start empty of what earlier mnv3det runs wrote there (their manifest, `core.outputs.
RunFiles`; counted in a note), so they never mix with this run's; nothing else is removed or overwritten, and an
output folder that is, holds or lies inside a source is refused before the model is loaded. Every file is written
whole or not at all (a video under a temporary name until it is closed); a full disk is one line.
Every user string printed (paths, class names, notes) is escaped: rich must not read `[crowd]` as markup.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mnv3det.core.console import make_console
from mnv3det.core.device import select_device
from mnv3det.core.imgsz import ImgSize
from mnv3det.core.atomic import AtomicOutput
from mnv3det.core.outputs import RunFiles, disk_error, refuse_overlap
from mnv3det.core.runs import claim_run_dir
from mnv3det.deploy.runtime.annotate import crop_box, draw_detections
from mnv3det.deploy.runtime.backends import Backend, load_backend
from mnv3det.deploy.config import DetectConfig
from mnv3det.deploy.runtime.predictor import NmsSettings, held_nms_note, predict, resolve_imgsz, warmup
from mnv3det.deploy.runtime.sources import Frame, collect_sources, frame_count, is_video, iter_frames, media_in_subfolders
from mnv3det.errors import UserError

WRITABLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")  # annotated images keep these; others are written as .jpg


@dataclass
class SourceSummary:
    """What detect found in one source file."""

    path: Path
    frames: int = 0
    counts: Counter = field(default_factory=Counter)  # class index -> boxes
    ms: float = 0.0  # total preprocess + inference + NMS time over its frames
    output: Path | None = None

    @property
    def ms_per_image(self) -> float:
        return self.ms / self.frames if self.frames else 0.0


@dataclass
class DetectReport:
    save_dir: Path
    names: list[str]
    sources: list[SourceSummary]
    skipped: list[tuple[Path, str]]  # (file, reason) for every file that could not be read
    json_path: Path | None = None
    labels_dir: Path | None = None
    speed_ms: dict[str, float] = field(default_factory=dict)  # mean per image: preprocess, inference, nms
    conf: float | None = None  # the score threshold used (for the hint when nothing was found)

    @property
    def images(self) -> int:
        return sum(s.frames for s in self.sources)

    @property
    def objects(self) -> int:
        return sum(sum(s.counts.values()) for s in self.sources)

    @property
    def saved(self) -> bool:
        """Whether anything was written (--nosave alone writes nothing; the empty run folder is removed)."""
        return self.save_dir.is_dir() and any(self.save_dir.iterdir())


def _encode(path: Path, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(path.suffix or ".jpg", image)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    return data.tobytes()


def _yolo_lines(det: torch.Tensor, width: int, height: int, with_conf: bool) -> list[str]:
    """'class cx cy w h [conf]' rows, normalised by the image size."""
    lines = []
    for x1, y1, x2, y2, score, cls in det.tolist():
        row = [f"{int(cls)}", f"{(x1 + x2) / 2 / width:.6f}", f"{(y1 + y2) / 2 / height:.6f}"]
        row += [f"{(x2 - x1) / width:.6f}", f"{(y2 - y1) / height:.6f}"]
        if with_conf:
            row.append(f"{score:.5f}")
        lines.append(" ".join(row))
    return lines


def _frame_name(stem: str, index: int) -> str:
    """The output name of frame `index` of a video whose stem is `stem` (YOLOv5's `<stem>_<frame>`)."""
    return f"{stem}_{index}"


class _Outputs:
    """Writes annotated images/videos, labels, crops and json records for one run folder."""

    def __init__(self, opts: DetectConfig, save_dir: Path, names: list[str]):
        self.opts, self.save_dir, self.names = opts, save_dir, names
        self.files = RunFiles(save_dir)
        self.writers: dict[Path, tuple[AtomicOutput, cv2.VideoWriter]] = {}  # a video grows under a temporary name
        self.stems: dict[Path, str] = {}
        self.video_stems: set[str] = set()
        self.json_records: list[dict] = []
        self.labels_dir = save_dir / "labels" if opts.save_txt else None
        self.removed = 0  # files earlier mnv3det runs wrote in labels/ and crops/ (a reused run folder), removed
        for folder, asked in (("labels", opts.save_txt), ("crops", opts.save_crop)):
            if asked:
                self.removed += self.files.remove_earlier(folder)

    def _taken(self, stem: str, video: bool) -> bool:
        """True when `stem` (or, for a video, one of its frame names) could name another source's outputs."""
        if stem in self.stems.values():
            return True
        frame = re.fullmatch(r"(.+)_\d+", stem)  # an image stem that reads like a frame of a video already named
        if frame is not None and frame.group(1) in self.video_stems:
            return True
        if video:  # a video's frame names must not meet an image stem already named
            return any(re.fullmatch(rf"{re.escape(stem)}_\d+", used) for used in self.stems.values())
        return False

    def stem(self, path: Path) -> str:
        """The unique output name of a source file (see the module docstring): img, img-2, ..."""
        if path not in self.stems:
            video = is_video(path)
            stem, k = path.stem, 2
            while self._taken(stem, video):  # '-k' never reads as a frame number, so this ends
                stem, k = f"{path.stem}-{k}", k + 1
            self.stems[path] = stem
            if video:
                self.video_stems.add(stem)
        return self.stems[path]

    def write(self, frame: Frame, det: torch.Tensor) -> Path | None:
        """Save everything asked for about one frame; returns the annotated file's path (None when not saved)."""
        opts, image = self.opts, frame.image
        height, width = image.shape[:2]
        stem = self.stem(frame.path)
        tag = _frame_name(stem, frame.index) if frame.is_video else stem
        out_path = None
        if opts.save_images:
            drawn = draw_detections(image, det.numpy(), self.names, not opts.hide_conf, opts.line_width,
                                    show_labels=not opts.hide_labels)
            if frame.is_video:
                out_path = self.save_dir / f"{stem}.mp4"
                if frame.path not in self.writers:
                    self.writers[frame.path] = self._open_video(out_path, frame.fps, width, height)
                self.writers[frame.path][1].write(drawn)
            else:
                suffix = frame.path.suffix.lower()
                out_path = self.save_dir / f"{stem}{suffix if suffix in WRITABLE_SUFFIXES else '.jpg'}"
                self.files.write(out_path, _encode(out_path, drawn))
        if self.labels_dir is not None and len(det):
            self.files.write(self.labels_dir / f"{tag}.txt",
                             "\n".join(_yolo_lines(det, width, height, opts.save_conf)) + "\n")
        if opts.save_crop:
            for k, row in enumerate(det.tolist()):
                crop_dir = self.save_dir / "crops" / re.sub(r"[^\w.-]+", "_", self.names[int(row[5])])  # safe folder name
                crop = crop_box(image, row[:4])
                if crop.size:
                    self.files.write(crop_dir / f"{tag}_{k}.jpg", _encode(crop_dir / f"{tag}_{k}.jpg", crop))
        if opts.save_json:
            for x1, y1, x2, y2, score, cls in det.tolist():
                self.json_records.append(
                    {
                        "image": str(frame.path),
                        "frame": frame.index,
                        "category": int(cls),
                        "name": self.names[int(cls)],
                        "score": round(score, 5),
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],  # x, y, w, h
                    }
                )
        return out_path

    def _open_video(self, out_path: Path, fps: float, width: int, height: int) -> tuple[AtomicOutput, cv2.VideoWriter]:
        """A video writer on a temporary beside `out_path` (renamed over it by `close`, removed on failure)."""
        self.files.claim(out_path)
        staged = AtomicOutput(out_path, keep_suffix=True, durable=False)
        try:
            tmp = staged.open()
        except OSError as err:
            raise disk_error(out_path, err) from None
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            staged.__exit__(RuntimeError, None, None)
            raise UserError(f"could not open a video writer for {out_path} (mp4v codec missing in OpenCV?)")
        return staged, writer

    def close(self, failed: bool = False) -> Path | None:
        """Finish the videos (renamed into place, or removed when the run `failed`) and write predictions.json."""
        error = None
        for staged, writer in self.writers.values():
            writer.release()
            try:
                staged.__exit__(RuntimeError if failed else None, None, None)
            except OSError as err:
                error = error or disk_error(staged.path, err)
        self.writers.clear()
        if error is not None:
            raise error
        if self.opts.save_json and not failed:
            return self.files.write(self.save_dir / "predictions.json", json.dumps(self.json_records, indent=1))
        return None


def run_detect(opts: DetectConfig, console: Console | None = None, backend: Backend | None = None) -> DetectReport:
    """Detect objects in every image/frame of `opts.source`; see the module docstring for the outputs."""
    console = console or make_console()
    paths = collect_sources(opts.source)  # clear error for a missing/empty source, before loading the model
    _refuse_source_overlap(opts, paths)
    nested = media_in_subfolders(Path(opts.source))
    if nested:  # read as YOLOv5 and Ultralytics read a folder: its own files only; said, with the way to include them
        console.print(f"[yellow]note:[/] {escape(nested)}", highlight=False)
    if backend is None:
        backend = load_backend(opts.weights, select_device(opts.device), opts.threads, one_image=True)
    opts.validate(backend.names)
    size, note = resolve_imgsz(backend, opts.imgsz, opts.weights)
    if note:  # the trained size, or a static export's fixed square: said in one line
        console.print(f"[yellow]note:[/] {escape(note)}" if backend.fixed_shape else escape(note), highlight=False)
    held = held_nms_note(backend, opts.nms(), opts.weights)  # an --nms file: its own conf and iou hold
    if held:
        console.print(f"[yellow]note:[/] {escape(held)}", highlight=False)
    warmup(backend, size)

    save_dir = claim_run_dir(Path(opts.project), opts.name, exist_ok=opts.exist_ok)
    outputs = _Outputs(opts, save_dir, backend.names)
    if outputs.removed:
        console.print(f"--exist-ok: removed {outputs.removed} file(s) of an earlier run from labels/ and crops/ in "
                      f"{escape(str(save_dir))}, so they do not mix with this run's", highlight=False)
    try:
        summaries, skipped, speed_sum = _detect_frames(backend, size, opts.nms(), paths, outputs, console)
    except BaseException:
        outputs.close(failed=True)  # no half-written video is left under its final name
        raise
    json_path = outputs.close()

    if not summaries:
        if not any(save_dir.rglob("*")):
            save_dir.rmdir()  # leave no empty run folder behind
        raise UserError(
            f"none of the {len(paths)} source file(s) could be read: "
            + "; ".join(f"{p}: {reason}" for p, reason in skipped[:5])
        )
    n = sum(s.frames for s in summaries.values())
    if not any(save_dir.iterdir()):
        save_dir.rmdir()  # --nosave and nothing else asked for: no empty run folder
    return DetectReport(
        save_dir=save_dir,
        names=backend.names,
        sources=list(summaries.values()),
        skipped=skipped,
        json_path=json_path,
        labels_dir=outputs.labels_dir,
        speed_ms={k: v / n for k, v in speed_sum.items()},
        conf=opts.conf,
    )


def _refuse_source_overlap(opts: DetectConfig, paths: list[Path]) -> None:
    """The output folder may not be, hold or lie inside a source folder, nor be or hold a source file."""
    out = Path(opts.project) / opts.name
    source = Path(str(opts.source))
    folders = [source] if source.is_dir() else []
    refuse_overlap(out, folders)
    refuse_overlap(out, sorted({p.parent for p in paths if isinstance(p, Path)} - set(folders)), inside=False)


def _detect_frames(
    backend: Backend, size: ImgSize, nms: NmsSettings, paths: list[Path], outputs: "_Outputs", console: Console
) -> tuple[dict[Path, SourceSummary], list[tuple[Path, str]], Counter]:
    """Every frame through the prediction path and into `outputs`; per-source summaries, skipped files, ms sums."""
    summaries: dict[Path, SourceSummary] = {}
    skipped: list[tuple[Path, str]] = []
    speed_sum: Counter = Counter()
    progress = Progress(
        TextColumn("[bold]detect"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.description}"), console=console, transient=True,
    )
    with progress:
        task = progress.add_task("", total=sum(frame_count(p) for p in paths))
        for frame in iter_frames(paths):
            progress.update(task, description=frame.path.name)
            progress.advance(task)
            if frame.error is not None:
                skipped.append((frame.path, frame.error))
                console.print(f"[yellow]skipped[/] {escape(f'{frame.path}: {frame.error}')}", highlight=False)
                continue
            result = predict(backend, [frame.image], imgsz=size, nms=nms)
            det = result.detections[0]
            summary = summaries.setdefault(frame.path, SourceSummary(frame.path))
            summary.frames += 1
            summary.ms += sum(result.speed_ms.values())
            summary.counts.update(int(c) for c in det[:, 5].tolist())
            speed_sum.update(result.speed_ms)
            summary.output = outputs.write(frame, det) or summary.output
    return summaries, skipped, speed_sum


def print_detect_report(report: DetectReport, console: Console, max_rows: int = 50) -> None:
    """A rich table: one row per source (frames, objects per class, ms per image), then totals and where files are."""
    table = Table(title="detect", title_justify="left")
    table.add_column("source", overflow="fold")
    table.add_column("frames", justify="right")
    table.add_column("objects per class", overflow="fold")
    table.add_column("ms/img", justify="right")

    def fmt(counts: Counter) -> str:  # class names are the user's text: escaped, never read as markup
        return escape(", ".join(f"{n} {report.names[c]}" for c, n in counts.most_common())) or "-"

    for s in report.sources[:max_rows]:
        table.add_row(escape(s.path.name), str(s.frames), fmt(s.counts), f"{s.ms_per_image:.1f}")
    if len(report.sources) > max_rows:
        table.add_row(f"... {len(report.sources) - max_rows} more", "", "", "")
    total = Counter()
    for s in report.sources:
        total.update(s.counts)
    table.add_section()
    mean_ms = sum(report.speed_ms.values())
    table.add_row("[bold]all", str(report.images), fmt(total), f"{mean_ms:.1f}")
    console.print(table)
    sp = report.speed_ms
    console.print(
        f"speed per image: {sp.get('preprocess', 0):.1f} ms preprocess, {sp.get('inference', 0):.1f} ms inference, "
        f"{sp.get('nms', 0):.1f} ms NMS",
        highlight=False,
    )
    if report.skipped:
        console.print(f"[yellow]{len(report.skipped)} file(s) skipped:[/]", highlight=False)
        for path, reason in report.skipped:
            console.print(escape(f"  {path}: {reason}"), highlight=False)
    if report.objects == 0:
        at = f" at --conf {report.conf:g}" if report.conf is not None else ""
        lower = f" (e.g. --conf {max(round(report.conf / 2.5, 2), 0.01):g})" if report.conf else ""
        console.print(f"[yellow]no objects found[/] in {report.images} image(s){at}: try a lower --conf{lower}; "
                      "a model trained for few epochs scores low", highlight=False)
    if report.saved:
        console.print(f"results saved to [bold]{escape(str(report.save_dir))}[/]", highlight=False)
    else:
        console.print("no files written (--nosave, and nothing found to keep as labels or crops)", highlight=False)
    if report.labels_dir is not None:
        console.print(escape(f"labels: {report.labels_dir}"), highlight=False)
    if report.json_path is not None:
        console.print(escape(f"json: {report.json_path}"), highlight=False)
