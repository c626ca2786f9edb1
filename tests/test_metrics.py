"""Hand-made cases where AP is known by construction, checked on both paths (fast metrics and pycocotools)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnv3det.data.records import ImageRecord
from mnv3det.evaluate.coco_eval import detections_to_coco, records_to_coco, run_cocoeval
from mnv3det.evaluate.metrics import ConfusionMatrix, DetectionStats, cap_per_class, match_detections

NAMES = ["cat", "dog", "bird"]
CAT_IDS = [3, 7, 11]  # dataset ids that are not 0..nc-1, to check the mapping back


def record(i: int, boxes, classes, crowd=None) -> ImageRecord:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return ImageRecord(
        path=Path(f"img{i}.jpg"), width=640, height=480, boxes=boxes, classes=np.asarray(classes, np.int64),
        crowd=np.zeros(n, bool) if crowd is None else np.asarray(crowd, bool), difficult=np.zeros(n, bool),
        image_id=i + 1,
    )


def both_paths(records: list[ImageRecord], dets: list[np.ndarray]) -> tuple[dict[str, float], dict[str, float]]:
    """(fast, coco) numbers for per-image detections (n, 6) = x1, y1, x2, y2, score, cls."""
    stats = DetectionStats(len(NAMES))
    results = []
    for rec, det in zip(records, dets):
        det = np.asarray(det, np.float64).reshape(-1, 6)
        stats.update(det[:, :4], det[:, 4], det[:, 5], rec.boxes, rec.classes, rec.crowd | rec.difficult)
        results += detections_to_coco(rec.image_id, det, CAT_IDS)
    fast = stats.compute()
    coco = run_cocoeval(records_to_coco(records, CAT_IDS, NAMES), results)
    fast_d = {"map": fast.map, "map50": fast.map50, "map75": fast.map75}
    return fast_d, coco.stats


def test_perfect_predictions_give_one():
    recs = [record(0, [[10, 10, 100, 120], [200, 50, 300, 200]], [0, 1]), record(1, [[50, 60, 400, 300]], [2])]
    dets = [np.c_[r.boxes, np.full(len(r.boxes), 0.9), r.classes] for r in recs]
    fast, coco = both_paths(recs, dets)
    for d in (fast, coco):
        assert d["map"] == pytest.approx(1.0)
        assert d["map50"] == pytest.approx(1.0)
    assert coco["ar100"] == pytest.approx(1.0)


def test_shifted_box_gives_iou_determined_ap():
    # 100x100 box shifted 16 px: IoU = 84*100 / (2*100*100 - 84*100) = 84/116 = 0.724 -> matched at IoU
    # thresholds 0.50..0.70 (5 of 10), so AP50 = 1, AP75 = 0 and AP50-95 = 0.5.
    recs = [record(0, [[100, 100, 200, 200]], [0])]
    dets = [np.array([[116, 100, 216, 200, 0.8, 0]])]
    fast, coco = both_paths(recs, dets)
    for d in (fast, coco):
        assert d["map50"] == pytest.approx(1.0)
        assert d["map75"] == pytest.approx(0.0)
        assert d["map"] == pytest.approx(0.5)


def test_missing_class_counts_zero_and_absent_class_is_left_out():
    # class 0 found perfectly, class 1 never predicted (AP 0), class 2 has no ground truth but a false
    # positive: it is not part of the mean (COCO skips classes without ground truth). mAP = (1 + 0) / 2.
    recs = [record(0, [[10, 10, 110, 110], [300, 300, 400, 420]], [0, 1])]
    dets = [np.array([[10, 10, 110, 110, 0.9, 0], [20, 20, 60, 60, 0.95, 2]])]
    fast, coco = both_paths(recs, dets)
    for d in (fast, coco):
        assert d["map50"] == pytest.approx(0.5)
        assert d["map"] == pytest.approx(0.5)


def test_duplicate_and_false_positive_ranking():
    recs = [record(0, [[10, 10, 110, 110]], [0])]
    # Two near-copies of one box (IoU 0.96 and 1.0): the higher score takes the box, the other is a false
    # positive ranked below it, so precision is 1 until full recall: AP = 1.
    near_copies = [np.array([[10, 10, 110, 110, 0.6, 0], [12, 10, 112, 110, 0.9, 0]])]
    for d in both_paths(recs, near_copies):
        assert d["map"] == pytest.approx(1.0)
    # A false positive ranked above the only true positive: precision 1/2 at full recall, AP = 0.5.
    fp_first = [np.array([[10, 10, 110, 110, 0.9, 0], [300, 300, 350, 350, 0.95, 0]])]
    for d in both_paths(recs, fp_first):
        assert d["map50"] == pytest.approx(0.5)


def test_detection_on_crowd_region_is_ignored_not_false():
    recs = [record(0, [[10, 10, 110, 110], [300, 100, 600, 400]], [0, 0], crowd=[False, True])]
    dets = [np.array([[10, 10, 110, 110, 0.5, 0], [350, 150, 450, 250, 0.9, 0], [360, 160, 440, 240, 0.8, 0]])]
    fast, coco = both_paths(recs, dets)
    for d in (fast, coco):  # two detections inside the crowd box, ranked first, change nothing
        assert d["map"] == pytest.approx(1.0)
    correct, ignored = match_detections(
        dets[0][:, :4], dets[0][:, 4], dets[0][:, 5].astype(int), recs[0].boxes.astype(float), recs[0].classes,
        recs[0].crowd,
    )
    assert correct[:, 0].tolist() == [True, False, False]
    assert ignored[:, 0].tolist() == [False, True, True]


def test_no_detections_at_all():
    recs = [record(0, [[10, 10, 110, 110]], [0])]
    fast, coco = both_paths(recs, [np.zeros((0, 6))])
    assert fast["map"] == 0.0 and coco["map"] == 0.0


def test_category_ids_are_mapped_back():
    rec = record(0, [[10, 10, 110, 110]], [2])
    gt = records_to_coco([rec], CAT_IDS, NAMES)
    assert gt.dataset["annotations"][0]["category_id"] == 11
    assert gt.dataset["annotations"][0]["bbox"] == pytest.approx([10, 10, 100, 100])
    res = detections_to_coco(5, np.array([[10.12345, 10, 110, 110.5, 0.5, 1]]), CAT_IDS)
    assert res == [{"image_id": 5, "category_id": 7, "bbox": [10.123, 10.0, 99.877, 100.5], "score": 0.5}]


def test_cap_per_class_keeps_top_scores_of_each_class():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.8])
    classes = np.array([0, 0, 0, 1, 1, 1])
    keep = cap_per_class(scores, classes, 2)
    assert keep.tolist() == [False, True, True, True, False, True]


def test_confusion_matrix_counts():
    cm = ConfusionMatrix(nc=2, conf=0.25, iou=0.45)
    gt = np.array([[0, 0, 100, 100], [200, 200, 300, 300], [400, 400, 500, 500]], float)
    gt_cls = np.array([0, 1, 1])
    det = np.array([[0, 0, 100, 100], [200, 200, 300, 300], [600, 600, 700, 700], [400, 400, 500, 500]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.1])  # the last is under conf: box 3 is missed
    det_cls = np.array([0, 0, 1, 1])  # box 2 (a 1) predicted as 0; an extra 1 on background
    cm.update(det, scores, det_cls, gt, gt_cls)
    expected = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 0]])  # [predicted, true], index 2 = background
    assert (cm.matrix == expected).all()
    norm = cm.normalized()
    assert norm[:, 1].sum() == pytest.approx(1.0) and norm[:, 2].sum() == pytest.approx(1.0)
