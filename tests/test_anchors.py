"""Autoanchor: hand-computed recall, evolution raises recall, fitting anchors are left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mnv3det.train.anchors import anchor_fit, check_anchors, evolve_anchors

ANCHORS_PX = torch.tensor(
    [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]], [[116, 90], [156, 198], [373, 326]]],
    dtype=torch.float32,
)


class FakeModel(nn.Module):
    """A model with a detect head holding anchors in stride units and a set_anchors(pixels) method."""

    def __init__(self, anchors_px: torch.Tensor = ANCHORS_PX) -> None:
        super().__init__()
        self.detect = nn.Module()
        self.detect.register_buffer("stride", torch.tensor([8.0, 16.0, 32.0]))
        self.detect.register_buffer("anchors", anchors_px / self.detect.stride.view(-1, 1, 1))
        self.set_calls = 0

    def set_anchors(self, pixel_anchors: torch.Tensor) -> None:
        self.set_calls += 1
        self.detect.anchors = pixel_anchors / self.detect.stride.view(-1, 1, 1)


def test_anchor_fit_hand_computed():
    anchors = torch.tensor([[10.0, 10.0]])
    boxes = torch.tensor([[10.0, 10.0], [50.0, 10.0], [30.0, 30.0]])
    # closeness = min over w,h of min(r, 1/r): 1.0, 0.2 (< 1/4, not recallable), 1/3 (recallable)
    bpr, aat = anchor_fit(anchors, boxes, thr=4.0)
    assert bpr == pytest.approx(2 / 3)
    assert aat == pytest.approx(2 / 3)
    bpr5, _ = anchor_fit(anchors, boxes, thr=6.0)  # 0.2 > 1/6 -> all recallable
    assert bpr5 == pytest.approx(1.0)


def test_fitting_anchors_are_kept():
    model = FakeModel()
    wh = ANCHORS_PX.view(-1, 2).repeat(20, 1)  # boxes equal to the anchors
    report = check_anchors(model, wh)
    assert report.bpr_before == pytest.approx(1.0) and not report.changed and model.set_calls == 0
    assert "kept" in report.message


def test_poor_anchors_are_evolved_and_recall_improves():
    rng = np.random.default_rng(1)
    # Very elongated boxes (thin and wide): the default anchors cannot reach them within ratio 4.
    wh = np.concatenate([rng.normal((200, 8), (10, 1), (150, 2)), rng.normal((8, 150), (1, 10), (150, 2))])
    model = FakeModel()
    report = check_anchors(model, wh.astype(np.float32), generations=200)
    assert report.bpr_before < 0.98
    assert report.changed and model.set_calls == 1
    assert report.bpr_after > report.bpr_before
    assert report.bpr_after > 0.95
    new_px = model.detect.anchors * model.detect.stride.view(-1, 1, 1)
    assert torch.allclose(new_px, report.anchors)
    areas = report.anchors.view(-1, 2).prod(1)
    assert (areas[1:] >= areas[:-1]).all()  # small anchors go to P3, large to P5


def test_evolve_is_deterministic_and_sorted():
    rng = np.random.default_rng(0)
    wh = rng.uniform(5, 300, (400, 2))
    a = evolve_anchors(wh, 9, generations=100, seed=3)
    b = evolve_anchors(wh, 9, generations=100, seed=3)
    assert np.array_equal(a, b) and a.shape == (9, 2)
    assert (np.diff(a.prod(1)) >= 0).all()


def test_no_boxes_is_reported_not_crashing():
    report = check_anchors(FakeModel(), np.zeros((0, 2), np.float32))
    assert not report.changed and "no boxes" in report.message
