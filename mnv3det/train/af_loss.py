"""Loss of the anchor-free head (models/af_head.py), with task-aligned assignment (train/assign.py).

Three terms, each summed over the batch and divided by the sum of the soft class targets (TOOD's and GFL's
normalisation: a batch of well-aligned positives counts more than one of poor ones):
- class: varifocal loss (VarifocalNet, 2008.13367): BCE against the soft target q; positives (q > 0) weighted
  by q, negatives by alpha * p^gamma. `cls_loss: qfl` uses GFL's quality focal loss, |q - p|^beta * BCE, and
  `bce` plain BCE against q (every point counts alike).
- box: 1 - GIoU (2019's generalized IoU) between predicted and assigned boxes, weighted by the target's quality.
- dfl: GFL's distribution focal loss on the per-side distributions (bins > 1 only): cross-entropy towards the
  two bins around the true distance, weighted by their nearness, mean over the four sides, weighted as box.
Returns (total * batch size, Tensor[3] = (box, dfl, cls) detached), the trainer's contract (train/loss.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import box_convert, generalized_box_iou_loss

from mnv3det.models.af_head import cell_points
from mnv3det.train.assign import SimOTAAssigner, TaskAlignedAssigner, make_assigner
from mnv3det.train.config import AF_CLASS_LOSSES

if TYPE_CHECKING:
    from mnv3det.train.config import TrainConfig


def varifocal(logits: Tensor, q: Tensor, alpha: float = 0.75, gamma: float = 2.0) -> Tensor:
    """Elementwise varifocal loss; logits and q (soft targets in 0..1) of one shape."""
    p = logits.sigmoid()
    weight = torch.where(q > 0, q, alpha * p.pow(gamma))
    return F.binary_cross_entropy_with_logits(logits, q, reduction="none") * weight


def quality_focal(logits: Tensor, q: Tensor, beta: float = 2.0) -> Tensor:
    """Elementwise quality focal loss (GFL)."""
    return F.binary_cross_entropy_with_logits(logits, q, reduction="none") * (logits.sigmoid() - q).abs().pow(beta)


def distribution_focal(logits: Tensor, target: Tensor) -> Tensor:
    """logits (n, bins), target (n,) distances in bins (0 .. bins - 1 - eps) -> (n,) GFL's DFL."""
    left = target.floor().long()
    w_right = target - left
    return (F.cross_entropy(logits, left, reduction="none") * (1 - w_right)
            + F.cross_entropy(logits, left + 1, reduction="none") * w_right)


class AnchorFreeLoss(nn.Module):
    """Loss for `AFDetect`; `names` label the three returned terms (results.csv, progress)."""

    names = ("box", "dfl", "cls")

    def __init__(self, head: nn.Module, nc: int, *, box: float = 2.5, cls: float = 1.0, dfl: float = 0.5,
                 cls_loss: str = "vfl", assigner: TaskAlignedAssigner | SimOTAAssigner | None = None) -> None:
        super().__init__()
        if cls_loss not in AF_CLASS_LOSSES:
            raise ValueError(f"cls_loss must be one of {', '.join(AF_CLASS_LOSSES)}, got {cls_loss!r}")
        self.head = [head]  # a list, so the module is not registered (and not saved) twice
        self.nc = nc
        self.gains = (box, dfl, cls)
        self.class_loss = {"vfl": varifocal, "qfl": quality_focal,
                           "bce": lambda x, q: F.binary_cross_entropy_with_logits(x, q, reduction="none")}[cls_loss]
        self.assigner = assigner or TaskAlignedAssigner()

    @classmethod
    def from_config(cls, head: nn.Module, nc: int, cfg: "TrainConfig") -> "AnchorFreeLoss":
        return cls(head, nc, box=cfg.af_box, cls=cfg.af_cls, dfl=cfg.af_dfl, cls_loss=cfg.af_cls_loss,
                   assigner=make_assigner(cfg.af_assigner, cfg.af_topk))

    def points(self, preds: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Point centres (A, 2) in input pixels and their strides (A,), levels in order, cells row-major."""
        strides = self.head[0].stride
        pts, per = [], []
        for p, s in zip(preds, strides.tolist()):
            h, w = p.shape[2:]
            pts.append(cell_points(h, w, p.device, torch.float32).T * s)
            per.append(torch.full((h * w,), s, device=p.device))
        return torch.cat(pts), torch.cat(per)

    def forward(self, preds: list[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        """preds: nl raw maps (B, 4 * bins + nc, H, W); targets: Tensor[M, 6] = (image, class, cx, cy, w, h)
        normalised to the batch's width and height."""
        head = self.head[0]
        bins = head.bins
        device = preds[0].device
        bs = preds[0].shape[0]
        flat = torch.cat([p.float().flatten(2) for p in preds], 2)  # (B, 4 * bins + nc, A); fp32 under autocast
        points, strides = self.points(preds)  # (A, 2), (A,)
        side_logits = flat[:, : 4 * bins]
        dist = head.side_distances(side_logits).transpose(1, 2) * strides.view(1, -1, 1)  # (B, A, 4) pixels
        pred_boxes = torch.cat((points - dist[..., :2], points + dist[..., 2:]), -1)  # (B, A, 4) xyxy
        cls_logits = flat[:, 4 * bins:].transpose(1, 2)  # (B, A, nc)
        height, width = preds[0].shape[2] * float(strides[0]), preds[0].shape[3] * float(strides[0])
        targets = targets.to(device=device, dtype=torch.float32)
        scale = torch.tensor([width, height, width, height], device=device)
        scores = cls_logits.detach().sigmoid()
        target_scores = torch.zeros_like(cls_logits)
        fg = torch.zeros(cls_logits.shape[:2], dtype=torch.bool, device=device)
        target_boxes = torch.zeros_like(pred_boxes)
        for b in range(bs):
            rows = targets[targets[:, 0] == b]
            gt = box_convert(rows[:, 2:6] * scale, "cxcywh", "xyxy")
            a = self.assigner(scores[b], pred_boxes[b].detach(), points, strides, gt, rows[:, 1].long())
            fg[b], target_boxes[b], target_scores[b] = a.fg, a.boxes, a.scores
        norm = target_scores.sum().clamp(min=1.0)
        lcls = self.class_loss(cls_logits, target_scores).sum() / norm
        lbox = torch.zeros((), device=device)
        ldfl = torch.zeros((), device=device)
        if bool(fg.any()):
            weight = target_scores.sum(-1)[fg]  # (n,) the positive's quality
            lbox = (generalized_box_iou_loss(pred_boxes[fg], target_boxes[fg], reduction="none") * weight).sum() / norm
            if bins > 1:
                anchor = points.unsqueeze(0).expand(bs, -1, -1)[fg]  # (n, 2)
                s = strides.unsqueeze(0).expand(bs, -1)[fg].unsqueeze(1)  # (n, 1)
                tb = target_boxes[fg]
                sides = torch.cat((anchor - tb[:, :2], tb[:, 2:] - anchor), 1) / s  # (n, 4) stride units
                sides = sides.clamp(0, bins - 1 - 0.01)
                logits = side_logits.transpose(1, 2)[fg].reshape(-1, bins)  # (n * 4, bins): sides l, t, r, b
                per_side = distribution_focal(logits, sides.reshape(-1)).view(-1, 4).mean(1)
                ldfl = (per_side * weight).sum() / norm
        lbox, ldfl, lcls = lbox * self.gains[0], ldfl * self.gains[1], lcls * self.gains[2]
        return (lbox + ldfl + lcls) * bs, torch.stack((lbox, ldfl, lcls)).detach()


__all__ = ["AnchorFreeLoss", "distribution_focal", "quality_focal", "varifocal"]
