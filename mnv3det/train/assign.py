"""Dynamic assignment for the anchor-free head: task-aligned (TOOD, 2108.07755, section 3.2; the default) or SimOTA
(YOLOX, 2107.08430, section 2.3; `af_assigner: simota`), both written from the papers.

Per image and ground-truth box g, every point p is scored by how well the prediction there already does both
tasks: t = s^alpha * u^beta, s = the predicted score of g's class at p, u = IoU(predicted box at p, g).
Candidates are the points whose centre lies inside g, or within `center_radius` strides of g's centre on their
own level (so a box smaller than a cell still has candidates: FCOS's centre sampling, 1904.01355). The `topk`
candidates with the largest t are g's positives. A point chosen by two boxes goes to the one it overlaps most.
Each positive's class target is t normalised per box: t / max(t over g's positives) * max(u over g's positives),
so the best-aligned point of a box learns a score equal to the box's best IoU, and the others less (TOOD's t-hat).

Shapes: A points over all levels; m boxes in the image; nc classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_iou

from mnv3det.train.config import AF_ASSIGNERS

EPS = 1e-9


@dataclass
class Assignment:
    """One image's targets per point.

    fg: bool (A,) positive points; gt_index: int64 (A,) the box each positive takes (0 where not fg);
    boxes: float (A, 4) xyxy pixels of that box; scores: float (A, nc) soft class targets (0 on negatives).
    """

    fg: Tensor
    gt_index: Tensor
    boxes: Tensor
    scores: Tensor


def _no_boxes(scores: Tensor, pred_boxes: Tensor) -> Assignment:
    """An image without boxes: every point is background."""
    a = scores.shape[0]
    return Assignment(torch.zeros(a, dtype=torch.bool, device=scores.device),
                      torch.zeros(a, dtype=torch.long, device=scores.device),
                      torch.zeros_like(pred_boxes), torch.zeros_like(scores))


def _one_box_per_point(pos: Tensor, preference: Tensor) -> Tensor:
    """pos bool (m, A) -> the same with each point claimed by several boxes kept by the box it prefers most
    (largest `preference`, (m, A))."""
    shared = pos.sum(0) > 1  # (A,)
    if not bool(shared.any()):
        return pos
    best = torch.where(pos, preference, torch.full_like(preference, float("-inf"))).argmax(0)  # (A,)
    one = torch.zeros_like(pos).scatter_(0, best.view(1, -1), True)
    return torch.where(shared.view(1, -1), one & pos, pos)


def _targets(pos: Tensor, quality: Tensor, scores: Tensor, gt_boxes: Tensor, gt_classes: Tensor) -> Assignment:
    """pos bool (m, A), one box per point at most; quality (m, A) the class target of each positive (0 elsewhere)."""
    fg = pos.any(0)  # (A,)
    gt_index = pos.to(torch.uint8).argmax(0)  # (A,) the only claiming box (0 where not fg)
    target_scores = torch.zeros_like(scores)
    target_scores[torch.arange(scores.shape[0], device=scores.device), gt_classes[gt_index]] = quality.amax(0) * fg
    return Assignment(fg, gt_index, gt_boxes[gt_index], target_scores)


@dataclass(frozen=True)
class TaskAlignedAssigner:
    """TOOD's assigner; defaults are the paper's (k = 13, alpha = 1, beta = 6)."""

    topk: int = 13
    alpha: float = 1.0
    beta: float = 6.0
    center_radius: float = 1.0  # strides; 0 = centres inside the box only

    def candidates(self, points: Tensor, strides: Tensor, gt_boxes: Tensor) -> Tensor:
        """bool (m, A): point centre inside the box, or within `center_radius` strides of its centre on x and y."""
        x, y = points[:, 0], points[:, 1]  # (A,)
        x1, y1, x2, y2 = (gt_boxes[:, i : i + 1] for i in range(4))  # (m, 1) each
        inside = (x > x1) & (x < x2) & (y > y1) & (y < y2)
        if self.center_radius <= 0:
            return inside
        reach = self.center_radius * strides  # (A,)
        near = ((x - (x1 + x2) / 2).abs() < reach) & ((y - (y1 + y2) / 2).abs() < reach)
        return inside | near

    @torch.no_grad()
    def __call__(self, scores: Tensor, pred_boxes: Tensor, points: Tensor, strides: Tensor, gt_boxes: Tensor,
                 gt_classes: Tensor) -> Assignment:
        """scores (A, nc) probabilities; pred_boxes (A, 4) xyxy pixels; points (A, 2) pixels; strides (A,);
        gt_boxes (m, 4) xyxy pixels; gt_classes (m,) int64."""
        a = scores.shape[0]
        m = gt_boxes.shape[0]
        if m == 0:
            return _no_boxes(scores, pred_boxes)
        cand = self.candidates(points, strides, gt_boxes)  # (m, A)
        iou = box_iou(gt_boxes, pred_boxes).clamp(min=0) * cand  # (m, A)
        cls_score = scores[:, gt_classes].T  # (m, A): the score of each box's own class
        align = cls_score.pow(self.alpha) * iou.pow(self.beta) * cand
        k = min(self.topk, a)
        top = align.topk(k, dim=1).indices  # (m, k)
        pos = torch.zeros_like(cand).scatter_(1, top, True) & cand  # (m, A)
        pos = _one_box_per_point(pos, iou)  # a point claimed by several boxes keeps the one it overlaps most
        align = align * pos
        iou = iou * pos
        norm = align / (align.amax(1, keepdim=True) + EPS) * iou.amax(1, keepdim=True)  # (m, A)
        return _targets(pos, norm, scores, gt_boxes, gt_classes)


@dataclass(frozen=True)
class SimOTAAssigner:
    """YOLOX's SimOTA: per box g and candidate point p a cost c = BCE(score of g's class at p, 1) + `iou_weight` *
    -log IoU(predicted box at p, g), non-candidates priced out; g takes its k cheapest points with a dynamic
    k = max(1, floor(sum of g's `iou_topk` largest IoUs)); a point chosen by two boxes goes to the cheaper one. The
    class target of a positive is its IoU with its box (YOLOX's IoU-aware target), as the quality losses expect.
    Defaults are the paper's (lambda 3, top 10 IoUs for k); candidates as TaskAlignedAssigner's (centre radius)."""

    iou_weight: float = 3.0
    iou_topk: int = 10
    center_radius: float = 1.0  # strides, as TaskAlignedAssigner (YOLOX uses 2.5 with its own candidate rule)

    candidates = TaskAlignedAssigner.candidates

    @torch.no_grad()
    def __call__(self, scores: Tensor, pred_boxes: Tensor, points: Tensor, strides: Tensor, gt_boxes: Tensor,
                 gt_classes: Tensor) -> Assignment:
        """The same arguments and result as TaskAlignedAssigner.__call__."""
        a = scores.shape[0]
        m = gt_boxes.shape[0]
        if m == 0:
            return _no_boxes(scores, pred_boxes)
        cand = self.candidates(points, strides, gt_boxes)  # (m, A)
        iou = box_iou(gt_boxes, pred_boxes).clamp(min=0) * cand  # (m, A)
        cls_score = scores[:, gt_classes].T.clamp(EPS, 1.0)  # (m, A)
        cost = -torch.log(cls_score) + self.iou_weight * -torch.log(iou + EPS) + 1e5 * (~cand)  # (m, A)
        k = iou.topk(min(self.iou_topk, a), dim=1).values.sum(1).int().clamp(min=1)  # (m,) dynamic k
        order = cost.argsort(dim=1)  # (m, A) cheapest first
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(a, device=order.device).expand(m, -1))
        pos = _one_box_per_point((rank < k.view(-1, 1)) & cand, -cost)  # (m, A); a shared point: the cheaper box
        return _targets(pos, iou * pos, scores, gt_boxes, gt_classes)  # target: the positive's IoU with its box


def make_assigner(name: str, topk: int = 13) -> TaskAlignedAssigner | SimOTAAssigner:
    """'tal' (task-aligned top-`topk`) or 'simota' (dynamic k; `topk` does not apply)."""
    if name not in AF_ASSIGNERS:
        raise ValueError(f"assigner must be one of {', '.join(AF_ASSIGNERS)}, got {name!r}")
    return TaskAlignedAssigner(topk=topk) if name == "tal" else SimOTAAssigner()


__all__ = ["Assignment", "SimOTAAssigner", "TaskAlignedAssigner", "make_assigner"]
