"""Evaluation, step 2 of 3 (infer -> score -> write): turn kept boxes into AP/AR, P/R and per-class numbers.

Boxes are rounded to BOX_DECIMALS in xywh (what a COCO results json holds) before scoring, and the same
rounded boxes feed the fast metrics (mnv3det.evaluate.metrics) and COCOeval, so the saved json reproduces the
printed numbers with any COCO tool. coco=True: AP/AR come from pycocotools on an in-memory ground truth built
from the records (any dataset format; category ids mapped back). coco=False: the fast mAP only (AP50, AP75,
AP50-95; AR and small/medium/large are NaN). P and R (YOLOv5-style, at the best-F1 confidence) always come
from the fast path.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from mnv3det.evaluate.coco_eval import STAT_NAMES, detections_to_coco, records_to_coco, run_cocoeval
from mnv3det.evaluate.infer import Inference
from mnv3det.evaluate.metrics import ConfusionMatrix, DetectionStats, FastMetrics

BOX_DECIMALS = 3  # detections are rounded like this before scoring and saving (sub-pixel)


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
    save_dir: str | None = None  # the run folder, when `mnv3det val` / `mnv3det.val` wrote one

    @property
    def fitness(self) -> float:
        """The number checkpoints are ranked by: 0.1 * mAP50 + 0.9 * mAP50-95."""
        return 0.1 * self.map50 + 0.9 * self.map

    def as_dict(self) -> dict[str, Any]:
        """Plain json-safe dict (NaN becomes None)."""
        d = asdict(self)
        d["fitness"] = self.fitness
        return _json_safe(d)

    def to_json(self, indent: int | None = None) -> str:
        """Every number (per class too) as json, as results.json holds them."""
        from mnv3det.core.tables import to_json

        return to_json(self.as_dict(), indent)

    def to_df(self) -> Any:
        """The per-class table as a pandas DataFrame (one row per class; needs pandas)."""
        from mnv3det.core.tables import to_dataframe

        columns = [f.name for f in fields(ClassResult)]
        return to_dataframe([asdict(c) for c in self.per_class], columns, "EvalResult")


@dataclass
class Scores:
    """`score`'s output: the result, plus what the write step draws and saves."""

    result: EvalResult
    fast: FastMetrics
    confusion: ConfusionMatrix
    coco_results: list[dict[str, Any]]  # COCO results-format rows (the dataset's category ids)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def round_xyxy(det: np.ndarray) -> np.ndarray:
    """xyxy -> xywh rounded to BOX_DECIMALS -> xyxy: the boxes COCOeval sees (x2 = x + w as pycocotools does)."""
    xywh = np.round(np.concatenate([det[:, :2], det[:, 2:4] - det[:, :2]], 1), BOX_DECIMALS)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)


def score(inference: Inference, spec: Any, coco: bool = True, with_json: bool = False) -> Scores:
    """Score `inference` against its records' ground truth; `with_json` also builds the COCO results rows."""
    nc = len(spec.names)
    stats, confusion = DetectionStats(nc), ConfusionMatrix(nc)
    for record, det in zip(inference.records, inference.detections):
        boxes = round_xyxy(det)
        ignore = np.asarray(record.crowd, bool) | np.asarray(record.difficult, bool)
        stats.update(boxes, det[:, 4], det[:, 5], record.boxes, record.classes, ignore)
        confusion.update(boxes, det[:, 4], det[:, 5], record.boxes, record.classes, ignore)
    fast = stats.compute()
    rows: list[dict[str, Any]] = []
    if coco or with_json:
        for record, det in zip(inference.records, inference.detections):
            rows += detections_to_coco(int(record.image_id), det, spec.category_ids, decimals=BOX_DECIMALS)
    result = _build_result(fast, inference, spec, rows if coco else None)
    return Scores(result, fast, confusion, rows)


def _build_result(fast: FastMetrics, inference: Inference, spec: Any, coco_rows: list[dict] | None) -> EvalResult:
    names, cat_ids, records = list(spec.names), list(spec.category_ids), inference.records
    ap50_cls, ap_cls = fast.ap50.copy(), fast.ap_50_95.copy()
    nan = float("nan")
    numbers = {n: nan for n in STAT_NAMES}
    numbers.update(map=fast.map, map50=fast.map50, map75=fast.map75)
    if coco_rows is not None:
        rows = [dict(r) for r in coco_rows]  # COCO.loadRes adds keys (area, id, ...) to the rows it is given
        cs = run_cocoeval(records_to_coco(records, cat_ids, names), rows, image_ids=[r.image_id for r in records])
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
        images=len(records), instances=int(fast.n_gt.sum()), detections=sum(len(d) for d in inference.detections),
        speed_ms=inference.speed_ms, source="pycocotools" if coco_rows is not None else "fast",
        fast_map50=fast.map50, fast_map=fast.map, best_conf=fast.best_conf,
    )
