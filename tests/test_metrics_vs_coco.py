"""Our numbers against pycocotools on COCO128 with perturbed ground-truth boxes as predictions.

1. Train split, COCO json: the reference is pycocotools reading the original json file directly;
   ours is the in-memory ground truth built from records (ids mapped back) plus the fast metrics.
2. Val split, YOLO labels through load_data: the fast metrics against COCOeval on the same records.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mnv3det.data.records import ImageRecord
from mnv3det.evaluate.coco_eval import STAT_NAMES, detections_to_coco, records_to_coco, run_cocoeval
from mnv3det.evaluate.metrics import DetectionStats


def perturbed_detections(boxes: np.ndarray, classes: np.ndarray, width: int, height: int, nc: int,
                         rng: np.random.Generator) -> np.ndarray:
    """(n, 6) xyxy/score/cls: 0-2 jittered copies of each box (10% with a wrong class) plus random false positives.

    Boxes are rounded to 3 decimals in xywh, the form the evaluator scores, so both paths see the same numbers.
    """
    rows = []
    for box, cls in zip(boxes.astype(np.float64), classes):
        w, h = box[2] - box[0], box[3] - box[1]
        for _ in range(rng.integers(0, 3)):
            x = box[0] + rng.normal(0, 0.12) * w
            y = box[1] + rng.normal(0, 0.12) * h
            c = cls if rng.random() > 0.1 else rng.integers(nc)
            rows.append([x, y, w * rng.uniform(0.75, 1.3), h * rng.uniform(0.75, 1.3), rng.random(), c])
    for _ in range(rng.integers(0, 15)):
        x, y = rng.uniform(0, width * 0.8), rng.uniform(0, height * 0.8)
        rows.append([x, y, rng.uniform(4, width - x), rng.uniform(4, height - y), 0.6 * rng.random(), rng.integers(nc)])
    det = np.array(rows, np.float64).reshape(-1, 6)
    det[:, :4] = np.round(det[:, :4], 3)
    det[:, 2:4] += det[:, :2]  # xywh -> xyxy
    return det


def fast_numbers(records: list[ImageRecord], dets: list[np.ndarray], nc: int) -> dict[str, float]:
    stats = DetectionStats(nc)
    for rec, det in zip(records, dets):
        stats.update(det[:, :4], det[:, 4], det[:, 5], rec.boxes, rec.classes, rec.crowd | rec.difficult)
    m = stats.compute()
    return {"map": m.map, "map50": m.map50, "map75": m.map75}


def test_equal_to_pycocotools_on_coco_json(coco128_dir: Path):
    json_path = coco128_dir / "annotations" / "instances_train2017.json"
    with contextlib.redirect_stdout(io.StringIO()):
        reference_gt = COCO(str(json_path))
    cat_ids = sorted(reference_gt.getCatIds())
    names = [reference_gt.cats[c]["name"] for c in cat_ids]
    index = {c: i for i, c in enumerate(cat_ids)}
    rng = np.random.default_rng(0)
    records, dets = [], []
    for img in reference_gt.dataset["images"]:
        anns = reference_gt.loadAnns(reference_gt.getAnnIds(imgIds=img["id"]))
        xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        rec = ImageRecord(
            path=Path(img["file_name"]), width=img["width"], height=img["height"],
            boxes=np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]].astype(np.float32),
            classes=np.array([index[a["category_id"]] for a in anns], np.int64),
            crowd=np.array([a["iscrowd"] for a in anns], bool), difficult=np.zeros(len(anns), bool),
            image_id=img["id"],
        )
        rec.areas = [a["area"] for a in anns]  # COCO's segmentation areas, for AP small/medium/large
        records.append(rec)
        dets.append(perturbed_detections(rec.boxes, rec.classes, rec.width, rec.height, len(cat_ids), rng))
    assert sum(r.crowd.sum() for r in records) > 0  # the split has crowd boxes, so ignoring is exercised

    results = [r for rec, det in zip(records, dets) for r in detections_to_coco(rec.image_id, det, cat_ids)]
    ours = run_cocoeval(records_to_coco(records, cat_ids, names), results)
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(reference_gt, reference_gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    reference = dict(zip(STAT_NAMES, ev.stats))
    assert 0.05 < reference["map"] < 0.95  # a mixed result, not a degenerate 0 or 1
    for name in STAT_NAMES:
        assert reference[name] > -1, name  # every number is defined on this split
        assert ours.stats[name] == pytest.approx(reference[name], abs=1e-6), name
    fast = fast_numbers(records, dets, len(cat_ids))
    for name in ("map", "map50", "map75"):
        assert fast[name] == pytest.approx(reference[name], abs=1e-6), name


def test_fast_metrics_equal_cocoeval_on_yolo_val(coco128_dir: Path):
    from mnv3det.data import load_data

    spec = load_data(coco128_dir / "coco128.yaml")
    records = spec.records("val")
    rng = np.random.default_rng(1)
    dets = [perturbed_detections(r.boxes, r.classes, r.width, r.height, len(spec.names), rng) for r in records]
    results = [r for rec, det in zip(records, dets) for r in detections_to_coco(rec.image_id, det, spec.category_ids)]
    coco = run_cocoeval(records_to_coco(records, spec.category_ids, spec.names), results)
    fast = fast_numbers(records, dets, len(spec.names))
    assert 0.05 < coco.stats["map"] < 0.95
    for name in ("map", "map50", "map75"):
        assert fast[name] == pytest.approx(coco.stats[name], abs=1e-6), name
