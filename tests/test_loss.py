"""YOLOv5 loss and assigner: hand-computed assignments, perfect vs wrong predictions, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mnv3det.train.loss import YoloLoss, build_targets

STRIDES = torch.tensor([8.0, 16.0, 32.0])
# YOLOv5 default anchors (pixels) -> stride units, as Detect stores them.
ANCHORS_PX = torch.tensor(
    [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]], [[116, 90], [156, 198], [373, 326]]],
    dtype=torch.float32,
)


class FakeDetect(nn.Module):
    """The bits of Detect the loss reads: anchors (stride units), stride, nl, na."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchors", ANCHORS_PX / STRIDES.view(-1, 1, 1))
        self.register_buffer("stride", STRIDES.clone())
        self.nl, self.na = 3, 3


IMGSZ = 64
GRIDS = [(8, 8), (4, 4), (2, 2)]
# One 16x16-pixel box of class 1 centred at (19.2, 44.8) in a 64x64 image.
TARGET = torch.tensor([[0.0, 1.0, 0.30, 0.70, 0.25, 0.25]])


def _cells(level_targets):
    return sorted(zip(level_targets.anchor.tolist(), level_targets.gx.tolist(), level_targets.gy.tolist()))


def test_assigner_hand_computed_cells_and_anchors():
    p3, p4, p5 = build_targets(TARGET, FakeDetect().anchors, GRIDS, anchor_t=4.0)
    # P3: box 2x2 cells at (2.4, 5.6); all three anchors within ratio 4; centre in the left half of
    # its cell (x%1=0.4) -> left neighbour x=1; lower half (y%1=0.6) -> lower neighbour y=6.
    expected_cells = [(2, 5), (1, 5), (2, 6)]
    assert _cells(p3) == sorted((a, x, y) for a in range(3) for x, y in expected_cells)
    # P4: box 1x1 cells at (1.2, 2.8): anchor 2 (3.69 x 7.44 cells) is over ratio 4, the other two fit;
    # left neighbour x=0 (x%1=0.2, x>1), lower neighbour y=3.
    assert _cells(p4) == sorted((a, x, y) for a in (0, 1) for x, y in [(1, 2), (0, 2), (1, 3)])
    # P5: box 0.5 cells, the smallest anchor is 3.6 cells wide -> ratio 7.25 > 4: no match.
    assert p5.image.numel() == 0
    # Box targets are relative to the assigned cell.
    rows = {(x, y): b.tolist() for x, y, b in zip(p3.gx.tolist(), p3.gy.tolist(), p3.box)}
    assert rows[(2, 5)] == pytest.approx([0.4, 0.6, 2.0, 2.0], abs=1e-5)
    assert rows[(1, 5)] == pytest.approx([1.4, 0.6, 2.0, 2.0], abs=1e-5)
    assert rows[(2, 6)] == pytest.approx([0.4, -0.4, 2.0, 2.0], abs=1e-5)
    assert set(p3.cls.tolist()) == {1} and set(p3.image.tolist()) == {0}
    assert p3.anchor_wh[p3.anchor == 1][0].tolist() == pytest.approx([2.0, 3.75])


def test_assigner_border_cells_get_no_outside_neighbour():
    # Centre at (0.3, 0.3) cells on P3: left half but x < 1 -> no neighbour to the left/up.
    t = torch.tensor([[0.0, 0.0, 0.3 / 8, 0.3 / 8, 2.0 / 8, 2.0 / 8]])
    p3 = build_targets(t, FakeDetect().anchors, GRIDS)[0]
    assert set(zip(p3.gx.tolist(), p3.gy.tolist())) == {(0, 0)}


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p / (1 - p))


def _perfect_predictions(nc: int = 3, big: float = 20.0) -> list[torch.Tensor]:
    """Raw outputs that decode exactly to TARGET at every assigned cell and are confident elsewhere."""
    detect = FakeDetect()
    preds = [torch.full((1, 3, h, w, 5 + nc), -big) for h, w in GRIDS]
    for p, m in zip(preds, build_targets(TARGET, detect.anchors, GRIDS)):
        for i in range(m.image.numel()):
            cell = (m.image[i], m.anchor[i], m.gy[i], m.gx[i])
            xy = (m.box[i, :2] + 0.5) / 2  # pxy = 2*sigmoid - 0.5
            wh = torch.sqrt(m.box[i, 2:] / m.anchor_wh[i]) / 2  # pwh = (2*sigmoid)^2 * anchor
            p[cell][:2], p[cell][2:4] = _logit(xy), _logit(wh)
            p[cell][4] = big
            p[cell][5 + m.cls[i]] = big
    return preds


def test_perfect_prediction_has_near_zero_loss_and_wrong_ones_do_not():
    loss_fn = YoloLoss(FakeDetect(), nc=3, imgsz=IMGSZ)
    perfect = _perfect_predictions()
    total, items = loss_fn(perfect, TARGET)
    assert items.tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-5)
    assert total.item() < 1e-4

    zeros = [torch.zeros_like(p) for p in perfect]  # uninformed: every sigmoid 0.5
    _, items_zero = loss_fn(zeros, TARGET)
    assert (items_zero > 1e-3).all()

    wrong_cls = [p.clone() for p in perfect]  # right boxes, wrong class (0 instead of 1)
    for p in wrong_cls:
        p[..., 5], p[..., 6] = p[..., 6].clone(), p[..., 5].clone()
    _, items_wrong = loss_fn(wrong_cls, TARGET)
    assert items_wrong[0].item() == pytest.approx(0.0, abs=1e-5)  # boxes still right
    assert items_wrong[2].item() > 0.1  # class loss large

    shifted = [p.clone() for p in perfect]  # boxes shifted by shifting xy logits
    for p in shifted:
        p[..., 0] += 2.0
    _, items_shift = loss_fn(shifted, TARGET)
    assert items_shift[0].item() > 1e-3


def test_loss_gains_scale_like_yolov5():
    loss_fn = YoloLoss(FakeDetect(), nc=80, imgsz=320, box=0.05, obj=1.0, cls=0.5)
    assert loss_fn.box_gain == pytest.approx(0.05)
    assert loss_fn.cls_gain == pytest.approx(0.5)
    assert loss_fn.obj_gain == pytest.approx(0.25)
    assert YoloLoss(FakeDetect(), nc=8, imgsz=640).cls_gain == pytest.approx(0.05)


def test_objectness_target_is_detached_iou_and_label_smoothing_changes_cls_loss():
    detect = FakeDetect()
    perfect = _perfect_predictions()
    plain = YoloLoss(detect, nc=3, imgsz=IMGSZ)(perfect, TARGET)[1]
    smooth = YoloLoss(detect, nc=3, imgsz=IMGSZ, label_smoothing=0.1)(perfect, TARGET)[1]
    assert smooth[2] > plain[2] + 1e-3  # confident logits are penalised against 0.95 / 0.05 targets


def test_gradients_reach_all_three_outputs():
    torch.manual_seed(0)
    preds = [torch.randn(2, 3, h, w, 8, requires_grad=True) for h, w in GRIDS]
    targets = torch.cat((TARGET, torch.tensor([[1.0, 2.0, 0.5, 0.5, 0.9, 0.8]])))  # a big box reaches P5
    total, items = YoloLoss(FakeDetect(), nc=3, imgsz=IMGSZ)(preds, targets)
    total.backward()
    for p in preds:
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert p.grad[..., :4].abs().sum() > 0  # box terms, not only objectness
        assert p.grad[..., 4].abs().sum() > 0
    assert math.isfinite(total.item()) and items.shape == (3,)


def test_no_targets_gives_objectness_only():
    preds = [torch.zeros(1, 3, h, w, 8) for h, w in GRIDS]
    total, items = YoloLoss(FakeDetect(), nc=3, imgsz=IMGSZ)(preds, torch.zeros((0, 6)))
    assert items[0] == 0 and items[2] == 0 and items[1] > 0
    assert torch.isfinite(total)


def test_saturated_width_or_height_logits_keep_gradients_finite():
    # A logit of -30 makes the decoded height (2 sigmoid)^2 * anchor ~1e-26 cells: the loss is finite, but
    # torchvision's CIoU divides by the height inside atan, so without the floor the gradient was NaN (seen when
    # training mnv3-large-min at 384 on BCCD: every weight NaN after the first step).
    preds = [torch.zeros(1, 3, h, w, 8) for h, w in GRIDS]
    preds[0][..., 3] = -30.0
    preds = [p.requires_grad_() for p in preds]
    total, _ = YoloLoss(FakeDetect(), nc=3, imgsz=IMGSZ)(preds, TARGET)
    total.backward()
    assert torch.isfinite(total)
    assert all(torch.isfinite(p.grad).all() for p in preds)
    assert preds[0].grad[..., 2].abs().sum() > 0  # the width still learns
