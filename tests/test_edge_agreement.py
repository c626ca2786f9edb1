"""The detection-agreement check every export passes, on hand-made boxes."""

from __future__ import annotations

import pytest
import torch

from mnv3det.deploy.export.agreement import compare_detections


def dets(*rows):
    return torch.tensor(rows, dtype=torch.float32).view(-1, 6)


def test_identical_and_slightly_moved_boxes_agree():
    ref = [dets([0, 0, 10, 10, 0.9, 1], [20, 20, 40, 40, 0.5, 0])]
    out = [dets([20, 20, 40, 40.5, 0.52, 0], [0, 0, 10, 10, 0.9, 1])]  # order differs, one box 0.5 px taller
    a = compare_detections(ref, out, conf=0.25)
    assert a.passed and a.matched == 2 and a.unmatched == 0
    assert a.worst_iou == pytest.approx(400 / 410) and a.max_score_diff == pytest.approx(0.02)


def test_moved_box_wrong_class_and_score_gap_are_disagreements():
    ref = [dets([0, 0, 10, 10, 0.9, 1])]
    # IoU of [0,0,10,10] and [2,0,12,10] = 80 / 120 = 0.667 < 0.9
    assert compare_detections(ref, [dets([2, 0, 12, 10, 0.9, 1])], conf=0.25).unmatched == 2
    assert compare_detections(ref, [dets([0, 0, 10, 10, 0.9, 2])], conf=0.25).unmatched == 2
    assert compare_detections(ref, [dets([0, 0, 10, 10, 0.8, 1])], conf=0.25).unmatched == 2
    assert compare_detections(ref, [dets([2, 0, 12, 10, 0.9, 1])], conf=0.25, min_iou=0.6).passed


def test_a_box_near_the_threshold_may_be_missing():
    ref = [dets([0, 0, 10, 10, 0.27, 1], [20, 20, 30, 30, 0.6, 0])]
    out = [dets([20, 20, 30, 30, 0.6, 0])]
    a = compare_detections(ref, out, conf=0.25)
    assert a.passed and a.borderline == 1 and a.matched == 1
    a = compare_detections([dets([0, 0, 10, 10, 0.5, 1])], [dets()], conf=0.25)
    assert not a.passed and a.unmatched == 1 and a.exported == 0


def test_nms_keeping_the_other_of_two_twins_is_borderline():
    # Both models found boxes A and B (IoU 0.67, equal scores); NMS kept A on one side and B on the other.
    a_box, b_box = [0, 0, 10, 10, 0.6, 1], [2, 0, 12, 10, 0.6, 1]
    both = [dets(a_box, b_box)]
    a = compare_detections([dets(a_box)], [dets(b_box)], conf=0.25, candidates=(both, both))
    assert a.passed and a.borderline == 2 and a.matched == 0
    # Without B among the reference's candidates, the exported B is a moved box: a disagreement.
    a = compare_detections([dets(a_box)], [dets(b_box)], conf=0.25, candidates=([dets(a_box)], both))
    assert not a.passed and a.unmatched == 1
