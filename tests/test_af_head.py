"""The anchor-free head (AFDetect), its task-aligned assigner and its loss, on hand-computed cases, and an
end-to-end tiny run through train, val, the prediction path and an ONNX export."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F
from torchvision.ops import box_iou

from mnv3det.core.postprocess import has_objectness, non_max_suppression
from mnv3det.models import build_model
from mnv3det.models.af_head import AFDetect
from mnv3det.train.af_loss import AnchorFreeLoss, distribution_focal, varifocal
from mnv3det.errors import UserError
from mnv3det.train.assign import SimOTAAssigner, TaskAlignedAssigner, make_assigner
from mnv3det.train.config import TrainConfig, validate


def _head(nc: int = 2, bins: int = 16, ch: tuple[int, ...] = (8,), strides: tuple[float, ...] = (8.0,)) -> AFDetect:
    head = AFDetect(nc, bins, 1, 3, "relu", ch=list(ch))
    head.set_strides(torch.tensor(strides))
    return head


# --- head ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["mnv3-small-min-af", "mnv3-small-af", "yolov5n-af"])
def test_af_recipes_build_with_their_output_shapes(recipe):
    model = build_model(recipe, nc=3)
    assert model.anchor_free and "anchors" not in model.recipe
    raw = model(torch.zeros(2, 3, 128, 128))  # train mode: per level (B, 4 * bins + nc, H, W)
    assert [tuple(r.shape) for r in raw] == [(2, 4 * 16 + 3, 128 // s, 128 // s) for s in (8, 16, 32)]
    model.eval()
    out = model(torch.zeros(2, 3, 128, 96))  # eval: (B, N, 4 + nc), one row per cell of every level
    cells = sum((128 // s) * (96 // s) for s in (8, 16, 32))
    assert tuple(out.shape) == (2, cells, 4 + 3)
    assert not has_objectness(out.shape[-1], 3)
    out = out.detach()
    assert float(out[..., 4:].min()) >= 0 and float(out[..., 4:].max()) <= 1  # class scores after sigmoid


def test_decode_puts_each_box_around_its_cell_centre():
    """Side logits that pick bin 2 for left/top and bin 1 for right/bottom: a 3 x 3-stride box, offset from the
    cell centre by (1 - 2) / 2 strides."""
    head = _head(nc=1, bins=4)
    raw = torch.full((1, 4 * 4 + 1, 2, 2), -30.0)
    for side, bin_ in enumerate((2, 2, 1, 1)):
        raw[:, side * 4 + bin_] = 30.0  # softmax ~ one-hot on that bin
    out = head.decode([raw])  # (1, 4, 5)
    centres = torch.tensor([[4.0, 4.0], [12.0, 4.0], [4.0, 12.0], [12.0, 12.0]])  # row-major cells, stride 8
    expected_c = centres + (1 - 2) / 2 * 8
    assert torch.allclose(out[0, :, :2], expected_c, atol=1e-3)
    assert torch.allclose(out[0, :, 2:4], torch.full((4, 2), 3 * 8.0), atol=1e-3)


def test_a_recipe_with_anchors_for_the_anchor_free_head_is_refused():
    from mnv3det.models.recipes import load_recipe

    recipe, _ = load_recipe("mnv3-small-min-af")
    recipe["anchors"] = [[10, 13, 16, 30, 33, 23]] * 3
    with pytest.raises(UserError, match="uses no anchors"):
        build_model(recipe)


# --- assigner --------------------------------------------------------------------------------------------------
def _grid(h: int, w: int, stride: float) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return torch.stack((xs.flatten(), ys.flatten()), 1) * stride, torch.full((h * w,), stride)


def test_the_best_aligned_point_inside_the_box_is_the_positive():
    """4 x 4 cells of stride 8 (points at 4, 12, 20, 28). Box (8, 8, 24, 24) holds points 5, 6, 9, 10; the
    prediction at point 5 is the box itself (IoU 1), the others are off: with k = 1, point 5 alone is positive,
    and its class target is the best IoU, 1."""
    points, strides = _grid(4, 4, 8.0)
    gt = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    pred = torch.cat((points - 6, points + 6), 1)  # 12 x 12 boxes around each point
    pred[5] = gt[0]
    scores = torch.full((16, 2), 0.5)
    a = TaskAlignedAssigner(topk=1, center_radius=0)(scores, pred, points, strides, gt, torch.tensor([1]))
    assert a.fg.nonzero().flatten().tolist() == [5]
    assert a.scores[5].tolist() == pytest.approx([0.0, 1.0])
    assert float(a.scores.sum()) == pytest.approx(1.0)
    assert a.boxes[5].tolist() == gt[0].tolist()


def test_points_outside_the_box_are_never_positive_and_k_limits_the_count():
    points, strides = _grid(4, 4, 8.0)
    gt = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    pred = torch.cat((points - 8, points + 8), 1)
    a = TaskAlignedAssigner(topk=13, center_radius=0)(torch.full((16, 1), 0.5), pred, points, strides, gt,
                                                      torch.tensor([0]))
    assert sorted(a.fg.nonzero().flatten().tolist()) == [5, 6, 9, 10]  # the four points inside, k = 13 or not
    a2 = TaskAlignedAssigner(topk=2, center_radius=0)(torch.full((16, 1), 0.5), pred, points, strides, gt,
                                                      torch.tensor([0]))
    assert int(a2.fg.sum()) == 2


def test_a_box_smaller_than_a_cell_gets_the_points_near_its_centre():
    """A 2 x 2 box between point centres holds no point; the centre radius (1 stride) gives it the 4 nearest."""
    points, strides = _grid(4, 4, 8.0)
    gt = torch.tensor([[15.0, 15.0, 17.0, 17.0]])
    pred = torch.cat((points - 4, points + 4), 1)
    assigner = TaskAlignedAssigner(topk=13)
    assert int(assigner.candidates(points, strides, gt).sum()) == 4
    inside_only = TaskAlignedAssigner(topk=13, center_radius=0)
    assert int(inside_only(torch.full((16, 1), 0.5), pred, points, strides, gt, torch.tensor([0])).fg.sum()) == 0
    assert sorted(assigner(torch.full((16, 1), 0.5), pred, points, strides, gt,
                           torch.tensor([0])).fg.nonzero().flatten().tolist()) == [5, 6, 9, 10]


def test_a_point_two_boxes_want_goes_to_the_one_it_overlaps_most():
    points, strides = _grid(4, 4, 8.0)
    gt = torch.tensor([[0.0, 0.0, 24.0, 24.0], [8.0, 8.0, 32.0, 32.0]])
    pred = torch.cat((points - 8, points + 8), 1)
    pred[10] = torch.tensor([9.0, 9.0, 31.0, 31.0])  # point (20, 20): IoU 0.84 with box 1, 0.36 with box 0
    a = TaskAlignedAssigner(topk=16, center_radius=0)(torch.full((16, 2), 0.5), pred, points, strides, gt,
                                                      torch.tensor([0, 1]))
    assert bool(a.fg[10]) and int(a.gt_index[10]) == 1 and float(a.scores[10, 1]) > 0 and float(a.scores[10, 0]) == 0


def test_simota_takes_a_dynamic_number_of_the_cheapest_points_with_their_iou_as_target():
    """Box (8, 8, 24, 24) holds points 5, 6, 9, 10. Predictions: point 5 is the box (IoU 1), point 6 is
    (8, 8, 24, 20) (IoU 0.75), points 9 and 10 are 12 x 12 boxes around (12, 20) and (20, 20) (IoU 100 / 300 each).
    k = floor(1 + 0.75 + 1/3 + 1/3) = 2, and with equal scores the cost ranks by IoU: points 5 and 6 are positive,
    with class targets 1 and 0.75."""
    points, strides = _grid(4, 4, 8.0)
    gt = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    pred = torch.cat((points - 6, points + 6), 1)
    pred[5] = gt[0]
    pred[6] = torch.tensor([8.0, 8.0, 24.0, 20.0])
    a = SimOTAAssigner(center_radius=0)(torch.full((16, 2), 0.5), pred, points, strides, gt, torch.tensor([1]))
    assert sorted(a.fg.nonzero().flatten().tolist()) == [5, 6]
    assert a.scores[5].tolist() == pytest.approx([0.0, 1.0]) and a.scores[6].tolist() == pytest.approx([0.0, 0.75])
    assert float(a.scores.sum()) == pytest.approx(1.75)


def test_simota_gives_a_point_two_boxes_want_to_the_cheaper_one():
    points, strides = _grid(4, 4, 8.0)
    gt = torch.tensor([[0.0, 0.0, 24.0, 24.0], [8.0, 8.0, 32.0, 32.0]])
    pred = torch.cat((points - 8, points + 8), 1)
    pred[10] = torch.tensor([9.0, 9.0, 31.0, 31.0])  # IoU 0.84 with box 1, 0.36 with box 0: cheaper for box 1
    a = SimOTAAssigner(center_radius=0)(torch.full((16, 2), 0.5), pred, points, strides, gt, torch.tensor([0, 1]))
    assert bool(a.fg[10]) and int(a.gt_index[10]) == 1 and float(a.scores[10, 0]) == 0
    assert float(a.scores[10, 1]) == pytest.approx(float(box_iou(gt[1:], pred[10:11])))


def test_the_assigner_is_a_hyp_key_and_a_wrong_name_is_one_clear_error():
    assert isinstance(make_assigner("simota"), SimOTAAssigner)
    assert make_assigner("tal", 5) == TaskAlignedAssigner(topk=5)
    with pytest.raises(UserError, match="af_assigner must be one of tal, simota"):
        validate(TrainConfig(af_assigner="ota"), "hyp.yaml")


# --- loss ------------------------------------------------------------------------------------------------------
def test_varifocal_and_dfl_match_their_formulas():
    logits = torch.tensor([0.3, -1.2])
    q = torch.tensor([0.8, 0.0])
    p = logits.sigmoid()
    expected = torch.stack((-0.8 * (0.8 * p[0].log() + 0.2 * (1 - p[0]).log()),  # positive: q * BCE(p, q)
                            -0.75 * p[1] ** 2 * (1 - p[1]).log()))  # negative: alpha p^gamma * BCE(p, 0)
    assert torch.allclose(varifocal(logits, q), expected, atol=1e-6)
    bins = torch.tensor([[0.1, 0.5, 2.0, 0.3]])
    ce = -F.log_softmax(bins, 1)[0]
    assert float(distribution_focal(bins, torch.tensor([1.25]))) == pytest.approx(float(0.75 * ce[1] + 0.25 * ce[2]))


def test_two_boxes_predicted_exactly_cost_no_box_loss_and_their_class_loss_is_the_formula():
    """A 1-bin head on a 4 x 4 map (stride 8): side logits placed so that the points holding the two boxes predict
    them exactly. Box loss 0; the class loss is the varifocal sum over the soft targets divided by their sum."""
    head = _head(nc=2, bins=1)
    loss_fn = AnchorFreeLoss(head, 2, box=1.0, cls=1.0, dfl=1.0, assigner=TaskAlignedAssigner(topk=1, center_radius=0))
    boxes = {5: (8.0, 8.0, 24.0, 24.0, 0), 15: (26.0, 26.0, 32.0, 32.0, 1)}  # point 5 = (12, 12), 15 = (28, 28)
    raw = torch.zeros(1, 4 + 2, 4, 4)
    inv_softplus = lambda d: math.log(math.expm1(d))  # noqa: E731
    raw[:, :4] = inv_softplus(1.0)  # every other point predicts an 8 x 8 box around itself
    cls_logits = torch.tensor([-1.0, 0.5])
    raw[:, 4:] = cls_logits.view(1, 2, 1, 1)
    targets = []
    for index, (x1, y1, x2, y2, c) in boxes.items():
        px, py = (index % 4 + 0.5) * 8, (index // 4 + 0.5) * 8
        for side, d in enumerate((px - x1, py - y1, x2 - px, y2 - py)):
            raw[0, side, index // 4, index % 4] = inv_softplus(d / 8)
        targets.append([0, c, (x1 + x2) / 64, (y1 + y2) / 64, (x2 - x1) / 32, (y2 - y1) / 32])
    total, items = loss_fn([raw], torch.tensor(targets))
    box, dfl, cls = items.tolist()
    assert box == pytest.approx(0.0, abs=1e-5) and dfl == 0.0  # exact boxes; no distribution with one bin
    q = torch.zeros(16, 2)
    q[5, 0] = q[15, 1] = 1.0  # each box's single positive, IoU 1 -> soft target 1
    expected = varifocal(cls_logits.expand(16, 2), q).sum() / q.sum()
    assert cls == pytest.approx(float(expected), rel=1e-5)
    assert float(total) == pytest.approx(cls, rel=1e-5)  # batch of one


def test_the_loss_gradient_improves_a_random_head():
    torch.manual_seed(0)
    head = _head(nc=2, bins=8)
    feats = torch.randn(2, 8, 8, 8)
    targets = torch.tensor([[0, 0, 0.3, 0.3, 0.25, 0.2], [1, 1, 0.6, 0.5, 0.4, 0.5]])
    loss_fn = AnchorFreeLoss(head, 2)
    opt = torch.optim.SGD(head.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        loss, _ = loss_fn(head([feats]), targets)
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.7 * first


def test_nms_reads_the_anchor_free_layout():
    pred = torch.tensor([[[50.0, 50.0, 20.0, 20.0, 0.1, 0.9], [51.0, 50.0, 20.0, 20.0, 0.2, 0.8],
                          [10.0, 10.0, 4.0, 4.0, 0.3, 0.05]]])
    det = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.5, nc=2)[0]
    assert det[:, 4].tolist() == pytest.approx([0.9, 0.3]) and det[:, 5].tolist() == [1.0, 0.0]
