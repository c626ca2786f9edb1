"""Evaluation: run a detector over a dataset split and score it (pycocotools, or the fast in-process mAP).

    result = evaluate(model_or_backend, spec.records("val"), spec, imgsz=640, batch_size=32, device="cpu")

`model_or_backend` is a plain `DetectionModel` (the trainer passes its EMA model each epoch; its
train/eval mode is restored afterwards) or a `Backend` from `load_backend` (a .pt checkpoint, an
ONNX or TorchScript export). Dynamic models get rectangular batches (less padding, the usual
YOLOv5 validation); a static export (`fixed_shape` set) gets square letterboxed batches of its size.

Per image: uint8 batch / 255 -> forward -> NMS (conf 0.001, IoU 0.6, max 300; no time limit) ->
boxes scaled back to the original pixels -> rounded to 3 decimals as COCO results. Those same
boxes feed both the fast metrics (mnv3det.evaluate.metrics) and COCOeval, and are what `save_json`
writes, so the saved json reproduces the printed numbers with any COCO tool.

coco=True: AP/AR numbers come from pycocotools' COCOeval on an in-memory COCO ground truth built
from the records (any dataset format; category ids mapped back). coco=False: the fast mAP only
(AP50, AP75, AP50-95; AR and small/medium/large are NaN). P and R (YOLOv5-style, at the best-F1
confidence) always come from the fast path. See metrics.py for how the fast numbers differ.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mnv3det.evaluate.coco_eval import STAT_NAMES, detections_to_coco, records_to_coco, run_cocoeval
from mnv3det.evaluate.metrics import CURVE_POINTS, ConfusionMatrix, DetectionStats, FastMetrics
from mnv3det.core.postprocess import non_max_suppression, scale_boxes
from mnv3det.errors import UserError

BOX_DECIMALS = 3  # detections are rounded like this before scoring and saving (sub-pixel)
MOSAIC_BATCHES = 3  # validation batches drawn as ground-truth / prediction mosaics


@dataclass
class ClassResult:
    """One class's numbers (ap50/ap are NaN for a class without ground truth in the split)."""

    name: str
    category_id: int
    images: int
    instances: int
    precision: float
    recall: float
    ap50: float
    ap: float


@dataclass
class EvalResult:
    """What `evaluate` measured. AP numbers are 0..1; NaN where not computed (AR etc. with coco=False)."""

    map50: float
    map: float  # AP50-95
    map75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar1: float
    ar10: float
    ar100: float
    precision: float  # mean over classes with ground truth, at the best-F1 confidence
    recall: float
    per_class: list[ClassResult]
    images: int
    instances: int
    detections: int
    speed_ms: dict[str, float]  # per image: preprocess, inference, nms
    source: str  # "pycocotools" or "fast"
    fast_map50: float  # the fast path's numbers, kept for comparison when source is pycocotools
    fast_map: float
    best_conf: float  # the confidence where P and R were read
    json_path: str | None = None
    plots: list[str] = field(default_factory=list)

    @property
    def fitness(self) -> float:
        """The number checkpoints are ranked by: 0.1 * mAP50 + 0.9 * mAP50-95."""
        return 0.1 * self.map50 + 0.9 * self.map

    def as_dict(self) -> dict[str, Any]:
        """Plain json-safe dict (NaN becomes None)."""
        d = asdict(self)
        d["fitness"] = self.fitness
        return _json_safe(d)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _as_backend(model_or_backend: Any, names: list[str], device: torch.device | str | None):
    """A Backend for a plain nn.Module (wrapped), or the backend itself."""
    if isinstance(model_or_backend, torch.nn.Module):
        from mnv3det.deploy.backends import TorchBackend

        dev = torch.device(device) if device is not None else next(model_or_backend.parameters()).device
        return TorchBackend(model_or_backend, names=names, device=dev)
    for attr in ("names", "stride", "fixed_shape", "device"):
        if not hasattr(model_or_backend, attr):
            raise TypeError(f"evaluate() needs an nn.Module or a Backend; {type(model_or_backend).__name__} has no {attr!r}")
    return model_or_backend


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _round_xyxy(det: np.ndarray) -> np.ndarray:
    """xyxy -> xywh rounded to BOX_DECIMALS -> xyxy: the boxes COCOeval sees (x2 = x + w as pycocotools does)."""
    xywh = np.round(np.concatenate([det[:, :2], det[:, 2:4] - det[:, :2]], 1), BOX_DECIMALS)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)


def make_eval_loader(
    records: Sequence[Any],
    *,
    imgsz: int,
    batch_size: int,
    stride: int,
    workers: int = 2,
    fixed_shape: tuple[int, int, int, int] | None = None,
) -> Any:
    """The validation loader `evaluate` runs on: rect batches, or for a static export (fixed_shape) square
    batches of its own size and a multiple of its batch. Build it once to reuse it across epochs."""
    from mnv3det.data import create_dataloader

    rect = fixed_shape is None
    if fixed_shape is not None:
        b, _, h, w = fixed_shape
        if h != w:
            raise UserError(
                f"this model was exported for {h}x{w} inputs; evaluation letterboxes to squares, "
                "so export it square (--imgsz N) or with --dynamic"
            )
        imgsz, batch_size = h, b * max(1, batch_size // b)
    return create_dataloader(
        list(records), imgsz=imgsz, batch_size=batch_size, augment=False, rect=rect,
        stride=stride, workers=workers, shuffle=False,
    )


def evaluate(
    model_or_backend: Any,
    records: Sequence[Any],
    spec: Any,
    *,
    imgsz: int = 640,
    batch_size: int = 32,
    conf: float = 0.001,
    iou: float = 0.6,
    max_det: int = 300,
    multi_label: bool = False,
    device: torch.device | str | None = None,
    coco: bool = True,
    plots_dir: str | Path | None = None,
    save_json: str | Path | None = None,
    progress: bool = True,
    workers: int = 2,
    loader: Any = None,
) -> EvalResult:
    """Run `model_or_backend` over `records` and score the detections (see the module docstring).

    spec: the DataSpec the records came from (names, category_ids). plots_dir: write PR/F1 curves,
    the confusion matrix and validation mosaics there. save_json: write the COCO results json there.
    loader: optionally a validation DataLoader over these records built once and reused (augment=False;
    rect batches for dynamic models), so the trainer does not start new workers every epoch.
    """
    records = list(records)
    if not records:
        raise UserError("nothing to evaluate: the split has no images")
    names = list(spec.names)
    nc = len(names)
    module = model_or_backend if isinstance(model_or_backend, torch.nn.Module) else None
    predicted = getattr(module, "nc", None) if module is not None else len(getattr(model_or_backend, "names", []))
    if predicted and int(predicted) != nc:
        raise UserError(
            f"the model predicts {predicted} classes but the dataset has {nc} "
            f"({', '.join(names[:5])}{', ...' if nc > 5 else ''}); evaluate it on the data it was trained for"
        )
    was_training = module.training if module is not None else False
    backend = _as_backend(model_or_backend, names, device)  # puts a module in eval mode; restored below
    if loader is None:
        loader = make_eval_loader(records, imgsz=imgsz, batch_size=batch_size, stride=int(backend.stride),
                                  workers=workers, fixed_shape=backend.fixed_shape)
    by_path = {str(r.path): r for r in records}  # the loader may re-order (rect): find ground truth by path
    plots_path = Path(plots_dir) if plots_dir is not None else None
    if plots_path is not None:
        plots_path.mkdir(parents=True, exist_ok=True)

    stats = DetectionStats(nc)
    confusion = ConfusionMatrix(nc)
    kept: list[tuple[int, np.ndarray]] = []  # (image_id, (n, 6) original pixels, unrounded)
    times = np.zeros(3)  # preprocess, inference, nms (seconds)
    n_done = 0
    seen: dict[int, Any] = {}  # image_id -> record, in evaluation order
    plot_files: list[str] = []
    try:
        with _progress_bar(progress, len(loader)) as advance:
            for batch_index, (images, targets, paths, shapes) in enumerate(loader):
                t0 = time.perf_counter()
                x = images.to(backend.device, non_blocking=True).float() / 255.0  # uint8 -> 0..1
                _sync(x.device)
                t1 = time.perf_counter()
                pred = backend(x)
                if isinstance(pred, (list, tuple)):  # tolerate (pred, extras) outputs
                    pred = pred[0]
                _sync(x.device)
                t2 = time.perf_counter()
                dets = non_max_suppression(pred, conf, iou, max_det=max_det, multi_label=multi_label)
                _sync(x.device)
                times += (t1 - t0, t2 - t1, time.perf_counter() - t2)
                n_done += len(paths)

                for det, path, (orig_hw, ratio_pad) in zip(dets, paths, shapes):
                    rec = by_path[str(path)]
                    if rec.image_id in seen:  # the loader substituted an undecodable image: score each image once
                        continue
                    seen[rec.image_id] = rec
                    det = det.detach().cpu().double()
                    det[:, :4] = scale_boxes(det[:, :4], tuple(x.shape[2:]), tuple(orig_hw), ratio_pad)
                    det_np = det.numpy()
                    kept.append((int(rec.image_id), det_np))
                    boxes = _round_xyxy(det_np)
                    ignore = np.asarray(rec.crowd, bool) | np.asarray(rec.difficult, bool)
                    stats.update(boxes, det_np[:, 4], det_np[:, 5], rec.boxes, rec.classes, ignore)
                    confusion.update(boxes, det_np[:, 4], det_np[:, 5], rec.boxes, rec.classes, ignore)

                if plots_path is not None and batch_index < MOSAIC_BATCHES:
                    plot_files += _plot_batch(images, targets, dets, names, plots_path, batch_index)
                advance()
    finally:
        if module is not None:
            module.train(was_training)

    if len(seen) < len(records):
        missing = [str(r.path) for r in records if r.image_id not in seen]
        warnings.warn(
            f"{len(missing)} image(s) could not be read during evaluation and were left out of the metrics "
            f"(first: {missing[0]}); run `mnv3det data check` on the dataset",
            stacklevel=2,
        )
    fast = stats.compute()
    results: list[dict[str, Any]] = []
    if coco or save_json is not None:
        for image_id, det_np in kept:
            results += detections_to_coco(image_id, det_np, spec.category_ids, decimals=BOX_DECIMALS)
    json_path = None
    if save_json is not None:
        json_path = Path(save_json)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results))
    if plots_path is not None:
        plot_files += _plot_metrics(fast, confusion, names, plots_path)

    speed = {k: 1000 * float(v) / max(n_done, 1) for k, v in zip(("preprocess", "inference", "nms"), times)}
    return _build_result(fast, list(seen.values()), spec, coco, results, speed, sum(len(d) for _, d in kept),
                         str(json_path) if json_path else None, plot_files)


def _build_result(
    fast: FastMetrics,
    records: list[Any],
    spec: Any,
    coco: bool,
    results: list[dict[str, Any]],
    speed: dict[str, float],
    n_det: int,
    json_path: str | None,
    plot_files: list[str],
) -> EvalResult:
    names, cat_ids = list(spec.names), list(spec.category_ids)
    ap50_cls, ap_cls = fast.ap50.copy(), fast.ap_50_95.copy()
    nan = float("nan")
    numbers = {n: nan for n in STAT_NAMES}
    numbers.update(map=fast.map, map50=fast.map50, map75=fast.map75)
    if coco:
        coco_gt = records_to_coco(records, cat_ids, names)
        cs = run_cocoeval(coco_gt, results, image_ids=[r.image_id for r in records])
        numbers = dict(cs.stats)
        index = {cid: k for k, cid in enumerate(cs.category_ids)}
        ap50_cls = np.array([cs.ap50[index[c]] if c in index else nan for c in cat_ids])
        ap_cls = np.array([cs.ap[index[c]] if c in index else nan for c in cat_ids])
    per_class = [
        ClassResult(
            name=names[c], category_id=int(cat_ids[c]), images=int(fast.n_images[c]), instances=int(fast.n_gt[c]),
            precision=float(fast.precision[c]), recall=float(fast.recall[c]),
            ap50=float(ap50_cls[c]) if fast.present[c] else nan, ap=float(ap_cls[c]) if fast.present[c] else nan,
        )
        for c in range(len(names))
    ]
    return EvalResult(
        map50=numbers["map50"], map=numbers["map"], map75=numbers["map75"],
        ap_small=numbers["ap_small"], ap_medium=numbers["ap_medium"], ap_large=numbers["ap_large"],
        ar1=numbers["ar1"], ar10=numbers["ar10"], ar100=numbers["ar100"],
        precision=fast.mp, recall=fast.mr, per_class=per_class,
        images=len(records), instances=int(fast.n_gt.sum()), detections=n_det, speed_ms=speed,
        source="pycocotools" if coco else "fast", fast_map50=fast.map50, fast_map=fast.map,
        best_conf=fast.best_conf, json_path=json_path, plots=plot_files,
    )


class _progress_bar:
    """A rich progress bar over batches (or nothing); `with ... as advance: advance()` per batch."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self._progress = enabled, total, None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("[bold]val"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  transient=True)
        self._progress.start()
        task = self._progress.add_task("val", total=self.total)
        return lambda: self._progress.advance(task)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()


def _plot_batch(images: torch.Tensor, targets: torch.Tensor, dets: list[torch.Tensor], names: list[str],
                folder: Path, index: int) -> list[str]:
    """Mosaics of one batch in letterboxed pixels: ground truth (from the loader's targets) and predictions."""
    from mnv3det.evaluate.plots import plot_image_mosaic

    imgs = images.cpu().numpy()
    h, w = imgs.shape[2:]
    t = targets.cpu().numpy().astype(np.float64)  # (M, 6) img_idx, cls, cx, cy, w, h normalised
    gt = []
    for i in range(len(imgs)):
        rows = t[t[:, 0] == i]
        cx, cy, bw, bh = rows[:, 2] * w, rows[:, 3] * h, rows[:, 4] * w, rows[:, 5] * h
        gt.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, rows[:, 1]], 1))
    preds = [d[d[:, 4] > 0.25].cpu().numpy() for d in dets]  # drawing 300 low-score boxes hides the image
    return [
        str(plot_image_mosaic(imgs, gt, names, folder / f"val_batch{index}_labels.jpg")),
        str(plot_image_mosaic(imgs, preds, names, folder / f"val_batch{index}_pred.jpg")),
    ]


def _plot_metrics(fast: FastMetrics, confusion: ConfusionMatrix, names: list[str], folder: Path) -> list[str]:
    """PR curves, F1/P/R-confidence curves and the normalised confusion matrix."""
    from mnv3det.evaluate.plots import plot_confusion_matrix, plot_metric_curve, plot_pr_curves

    ap50 = np.where(fast.present, fast.ap50, np.nan)
    return [
        str(plot_pr_curves(CURVE_POINTS, fast.pr_curve, ap50, names, folder / "PR_curve.png")),
        str(plot_metric_curve(CURVE_POINTS, fast.f1_curve, names, folder / "F1_curve.png", "F1")),
        str(plot_metric_curve(CURVE_POINTS, fast.p_curve, names, folder / "P_curve.png", "Precision")),
        str(plot_metric_curve(CURVE_POINTS, fast.r_curve, names, folder / "R_curve.png", "Recall")),
        str(plot_confusion_matrix(confusion.normalized(), names, folder / "confusion_matrix.png")),
    ]
