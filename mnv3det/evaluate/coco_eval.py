"""pycocotools for any dataset format: records -> in-memory COCO ground truth, detections -> COCO results.

YOLO txt and VOC xml datasets have no COCO json; we build one in memory from the checked records
(class index c -> `category_ids[c]`, so a COCO json dataset gets its own ids 1..90 back, and the
saved results json works with any COCO tool). Crowd and VOC-difficult boxes become `iscrowd=1`,
which COCOeval treats as regions to ignore. pycocotools prints progress to stdout; all of it is
captured and returned as text instead of reaching the user's terminal.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# Order of COCOeval.stats, named.
STAT_NAMES = (
    "map",
    "map50",
    "map75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)


def records_to_coco(records: Iterable[Any], category_ids: Sequence[int], names: Sequence[str]) -> COCO:
    """Build a pycocotools COCO ground truth from ImageRecords (xyxy pixels, contiguous classes).

    Area is the box area unless a record carries per-box `areas` (e.g. COCO's segmentation areas);
    it only matters for AP small/medium/large.
    """
    images, annotations = [], []
    ann_id = 1  # COCOeval treats id 0 as "unmatched", so ids start at 1
    seen: set[int] = set()
    for rec in records:
        image_id = int(rec.image_id)
        if image_id in seen:
            raise ValueError(f"duplicate image_id {image_id} ({rec.path}); evaluation needs unique ids per image")
        seen.add(image_id)
        images.append({"id": image_id, "width": int(rec.width), "height": int(rec.height), "file_name": str(rec.path)})
        boxes = np.asarray(rec.boxes, np.float64).reshape(-1, 4)
        ignore = np.zeros(len(boxes), bool)
        for flag in ("crowd", "difficult"):
            value = getattr(rec, flag, None)
            if value is not None and len(value):
                ignore |= np.asarray(value, bool)
        areas = getattr(rec, "areas", None)
        for j, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": int(category_ids[int(rec.classes[j])]),
                    "bbox": [x1, y1, w, h],
                    "area": float(areas[j]) if areas is not None else w * h,
                    "iscrowd": int(ignore[j]),
                }
            )
            ann_id += 1
    categories = [{"id": int(cid), "name": str(name)} for cid, name in zip(category_ids, names)]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def detections_to_coco(
    image_id: int, detections: np.ndarray, category_ids: Sequence[int], decimals: int = 3
) -> list[dict[str, Any]]:
    """One image's detections (n, 6) = (x1, y1, x2, y2, score, cls) in original pixels -> COCO result dicts.

    Boxes become [x, y, w, h] rounded to `decimals` (3: well below a pixel, keeps the json small);
    the evaluator scores exactly these rounded boxes, so the saved json reproduces its numbers.
    """
    det = np.asarray(detections, np.float64).reshape(-1, 6)
    xywh = np.round(np.concatenate([det[:, :2], det[:, 2:4] - det[:, :2]], 1), decimals)
    return [
        {
            "image_id": int(image_id),
            "category_id": int(category_ids[int(c)]),
            "bbox": box,
            "score": float(s),
        }
        for box, s, c in zip(xywh.tolist(), det[:, 4].tolist(), det[:, 5].tolist())
    ]


def coco_results_to_xyxy(results: Sequence[dict[str, Any]]) -> np.ndarray:
    """COCO result dicts -> (n, 4) float64 xyxy, the exact boxes COCOeval will score."""
    if not results:
        return np.zeros((0, 4))
    xywh = np.array([r["bbox"] for r in results], np.float64)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)


@dataclass
class CocoStats:
    """COCOeval's numbers: `stats` by STAT_NAMES, per category AP50 and AP50-95 (NaN without ground truth)."""

    stats: dict[str, float]
    category_ids: list[int]
    ap50: np.ndarray  # (K,) in the order of category_ids
    ap: np.ndarray  # (K,)
    log: str  # everything pycocotools printed


def run_cocoeval(coco_gt: COCO, results: list[dict[str, Any]], image_ids: Sequence[int] | None = None) -> CocoStats:
    """COCOeval (bbox) over `image_ids` (default: all images of coco_gt), output captured.

    Numbers COCOeval leaves undefined (-1: no ground truth in that area range) are NaN. No detections at
    all gives 0 for every AP/AR (pycocotools cannot load an empty result list).
    """
    cat_ids = sorted(coco_gt.getCatIds())
    log = io.StringIO()
    if not results:
        present = np.array([len(coco_gt.getAnnIds(catIds=[c], iscrowd=False)) > 0 for c in cat_ids], bool)
        zeros = np.where(present, 0.0, np.nan)
        return CocoStats({n: 0.0 for n in STAT_NAMES}, cat_ids, zeros, zeros.copy(), "")
    with contextlib.redirect_stdout(log):
        coco_dt = coco_gt.loadRes(list(results))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # (T, R, K, A, M); area 'all' = 0, maxDets 100 = -1
    ap50 = np.full(len(ev.params.catIds), np.nan)
    ap = np.full(len(ev.params.catIds), np.nan)
    for k in range(len(ev.params.catIds)):
        p = precision[:, :, k, 0, -1]
        if (p > -1).any():
            ap[k] = float(p[p > -1].mean())
            p50 = p[0]
            ap50[k] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else np.nan
    # COCOeval writes -1 when a number is undefined (e.g. no large objects in the split): NaN, shown as "-".
    stats = {n: float(v) if v > -1 else float("nan") for n, v in zip(STAT_NAMES, ev.stats)}
    return CocoStats(stats, list(ev.params.catIds), ap50, ap, log.getvalue())
