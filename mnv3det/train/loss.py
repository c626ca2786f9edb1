"""YOLOv5 loss and its target assigner (written anew from the published method).

Assignment (`build_targets`): a ground-truth box is matched, on every level, to each anchor whose
width/height ratio to the box is within `anchor_t` (both ways); each match goes to the cell holding
the box centre and to the two neighbouring cells nearest the centre (offset 0.5), so a box gets up
to 3 anchors x 3 cells per level. Loss (`YoloLoss`): 1 - CIoU on matched boxes, objectness BCE
against the detached IoU (clamped >= 0) on every cell, class BCE (optional label smoothing) on
matched cells; levels weighted [4.0, 1.0, 0.4] (P3, P4, P5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert, complete_box_iou_loss

if TYPE_CHECKING:  # typing only: config imports nothing from here
    from mnv3det.train.config import TrainConfig

# Neighbour offsets in cells: self, left, up, right, down (scaled by g = 0.5 below).
_OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32)


@dataclass
class LevelTargets:
    """Matches on one level; all tensors have one row per (target, anchor, cell) match, n rows.

    image, anchor, gy, gx: Tensor[n] int64 indices into the prediction (B, na, H, W, no);
    box: Tensor[n, 4] = (cx, cy, w, h) in grid units, cx/cy relative to the cell's top-left (in -0.5..1.5);
    cls: Tensor[n] int64; anchor_wh: Tensor[n, 2] the matched anchor in grid units.
    """

    image: Tensor
    anchor: Tensor
    gy: Tensor
    gx: Tensor
    box: Tensor
    cls: Tensor
    anchor_wh: Tensor


def build_targets(
    targets: Tensor, anchors: Tensor, grid_sizes: list[tuple[int, int]], anchor_t: float = 4.0
) -> list[LevelTargets]:
    """Assign targets to anchors and cells on every level.

    targets: Tensor[M, 6] = (image index, class, cx, cy, w, h), coordinates normalised to 0..1.
    anchors: Tensor[nl, na, 2] in stride (grid) units. grid_sizes: [(H, W)] per level.
    """
    nl, na = anchors.shape[:2]
    device = targets.device
    g = 0.5  # neighbour offset: the centre's nearest neighbour cells on x and y
    offsets = _OFFSETS.to(device) * g
    anchor_idx = torch.arange(na, device=device, dtype=targets.dtype).view(na, 1).expand(na, targets.shape[0])
    # (na, M, 7): every target once per anchor, with the anchor index appended
    t_all = torch.cat((targets.unsqueeze(0).expand(na, -1, -1), anchor_idx.unsqueeze(-1)), dim=2)
    out: list[LevelTargets] = []
    for level in range(nl):
        h, w = grid_sizes[level]
        anchors_l = anchors[level].to(device=device, dtype=targets.dtype)  # (na, 2)
        scale = torch.tensor([1, 1, w, h, w, h, 1], device=device, dtype=targets.dtype)
        t = t_all * scale  # boxes in grid units
        if targets.shape[0]:
            ratio = t[..., 4:6] / anchors_l[:, None]  # (na, M, 2)
            keep = torch.max(ratio, 1 / ratio).amax(dim=2) < anchor_t  # (na, M)
            t = t[keep]  # (n, 7)
            gxy = t[:, 2:4]
            gxy_inv = torch.tensor([w, h], device=device, dtype=t.dtype) - gxy
            # A neighbour is used when the centre lies in the near half of its cell and the
            # neighbour exists (the centre is more than one cell from the border).
            left, up = ((gxy % 1 < g) & (gxy > 1)).T
            right, down = ((gxy_inv % 1 < g) & (gxy_inv > 1)).T
            use = torch.stack((torch.ones_like(left), left, up, right, down))  # (5, n)
            t = t.unsqueeze(0).expand(5, -1, -1)[use]
            off = (torch.zeros_like(gxy)[None] + offsets[:, None])[use]
        else:
            t = t_all[0, :0]
            off = torch.zeros((0, 2), device=device, dtype=targets.dtype)
        image, cls = t[:, 0].long(), t[:, 1].long()
        gxy, gwh, a = t[:, 2:4], t[:, 4:6], t[:, 6].long()
        gij = (gxy - off).long()
        gx = gij[:, 0].clamp(0, w - 1)
        gy = gij[:, 1].clamp(0, h - 1)
        box = torch.cat((gxy - torch.stack((gx, gy), 1), gwh), 1)
        out.append(LevelTargets(image, a, gy, gx, box, cls, anchors_l[a]))
    return out


class YoloLoss(nn.Module):
    """YOLOv5 loss: returns (total * batch_size, Tensor[3] = (box, obj, cls) detached, per image).

    `detect` is anything with `anchors` (Tensor[nl, na, 2], stride units) and `nl`/`na`; anchors are
    read at every call so autoanchor or a resumed checkpoint changing them is picked up.
    Gains are scaled as YOLOv5 does: box * 3/nl, cls * nc/80 * 3/nl, obj * (imgsz/640)^2 * 3/nl.
    """

    names = ("box", "obj", "cls")  # the three returned terms (results.csv, progress)

    def __init__(
        self,
        detect: nn.Module,
        nc: int,
        *,
        imgsz: int = 640,
        box: float = 0.05,
        obj: float = 1.0,
        cls: float = 0.5,
        cls_pw: float = 1.0,
        obj_pw: float = 1.0,
        anchor_t: float = 4.0,
        label_smoothing: float = 0.0,
        balance: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        self.detect = [detect]  # a list, so the module is not registered (and not saved) twice
        nl = int(detect.nl)
        self.nc = nc
        self.anchor_t = anchor_t
        self.box_gain = box * 3 / nl
        self.cls_gain = cls * nc / 80 * 3 / nl
        self.obj_gain = obj * (imgsz / 640) ** 2 * 3 / nl
        self.balance = list(balance) if balance is not None else ([4.0, 1.0, 0.4] if nl == 3 else [4.0, 1.0, 0.25, 0.06, 0.02][:nl])
        # Smoothed BCE targets (positive, negative): 1 - eps/2 and eps/2.
        self.cls_pos, self.cls_neg = 1.0 - 0.5 * label_smoothing, 0.5 * label_smoothing
        self.register_buffer("cls_pw", torch.tensor([cls_pw]), persistent=False)
        self.register_buffer("obj_pw", torch.tensor([obj_pw]), persistent=False)

    @classmethod
    def from_config(cls, detect: nn.Module, nc: int, cfg: "TrainConfig") -> "YoloLoss":
        """Build from a TrainConfig."""
        return cls(
            detect, nc, imgsz=cfg.imgsz, box=cfg.box, obj=cfg.obj, cls=cfg.cls, cls_pw=cfg.cls_pw,
            obj_pw=cfg.obj_pw, anchor_t=cfg.anchor_t, label_smoothing=cfg.label_smoothing,
        )

    def forward(self, preds: list[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        """preds: nl tensors (B, na, H, W, 5 + nc) raw; targets: Tensor[M, 6] normalised."""
        device = preds[0].device
        anchors = self.detect[0].anchors.detach()
        bce_cls = nn.functional.binary_cross_entropy_with_logits
        grid_sizes = [(p.shape[2], p.shape[3]) for p in preds]
        matches = build_targets(targets.to(device=device, dtype=torch.float32), anchors, grid_sizes, self.anchor_t)
        lbox = torch.zeros((), device=device)
        lobj = torch.zeros((), device=device)
        lcls = torch.zeros((), device=device)
        for level, (p, m) in enumerate(zip(preds, matches)):
            p = p.float()  # loss in fp32 also under autocast
            tobj = torch.zeros(p.shape[:4], device=device)  # (B, na, H, W)
            if m.image.numel():
                ps = p[m.image, m.anchor, m.gy, m.gx]  # (n, 5 + nc)
                pxy = ps[:, :2].sigmoid() * 2 - 0.5  # centre in -0.5..1.5 cells
                # 0..4 anchors, floored at 1e-3 cells: torchvision's CIoU takes atan(w / h) without an eps, so a
                # saturated logit (h -> 0, or cx + w/2 - (cx - w/2) rounding to 0) gave a finite loss but NaN gradients
                pwh = ((ps[:, 2:4].sigmoid() * 2) ** 2 * m.anchor_wh).clamp(min=1e-3)
                pbox = torch.cat((pxy, pwh), 1)
                ciou_loss = complete_box_iou_loss(
                    box_convert(pbox, "cxcywh", "xyxy"), box_convert(m.box, "cxcywh", "xyxy")
                )  # (n,) = 1 - CIoU
                lbox = lbox + ciou_loss.mean()
                iou = (1.0 - ciou_loss).detach().clamp(min=0)
                tobj[m.image, m.anchor, m.gy, m.gx] = iou
                if self.nc > 1:  # with one class, objectness carries it all
                    t = torch.full_like(ps[:, 5:], self.cls_neg)
                    t[torch.arange(t.shape[0], device=device), m.cls] = self.cls_pos
                    lcls = lcls + bce_cls(ps[:, 5:], t, pos_weight=self.cls_pw)
            lobj = lobj + nn.functional.binary_cross_entropy_with_logits(
                p[..., 4], tobj, pos_weight=self.obj_pw
            ) * self.balance[level]
        lbox = lbox * self.box_gain
        lobj = lobj * self.obj_gain
        lcls = lcls * self.cls_gain
        bs = preds[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.stack((lbox, lobj, lcls)).detach()


def make_loss(model: nn.Module, cfg: "TrainConfig") -> nn.Module:
    """The loss that trains `model`'s head: YoloLoss for Detect, AnchorFreeLoss for AFDetect (train/af_loss.py)."""
    if getattr(model.detect, "anchor_free", False):
        from mnv3det.train.af_loss import AnchorFreeLoss

        return AnchorFreeLoss.from_config(model.detect, model.nc, cfg)
    return YoloLoss.from_config(model.detect, model.nc, cfg)
