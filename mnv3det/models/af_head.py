"""Anchor-free detection head (`AFDetect`): one point per cell, distances to the four box sides, quality-aware
class scores and no objectness. Written from the papers: FCOS (1904.01355) for points and side distances,
GFL (2006.04388) for the per-side distribution and for class scores that carry the box quality, PP-PicoDet
(2111.00902) for a depthwise-separable branch sized for mobile, TOOD (2108.07755) for the assignment that trains
it (train/assign.py).

Shapes (nl levels, R = `bins` values per side, no = 4 + nc decoded outputs per point):
    inputs      list of nl feature maps (B, C_l, H_l, W_l)
    raw(...)    list of nl tensors (B, 4 * R + nc, H_l, W_l): side logits then class logits, no activation
                (train mode output; train/af_loss.py reads these)
    decode(...) Tensor (B, sum(H_l * W_l), 4 + nc): cx, cy, w, h in input pixels, class scores after sigmoid
                (eval mode output; core.postprocess tells it from the YOLOv5 layout by its width)
Point of cell (i, j) on a level of stride s: ((j + 0.5) s, (i + 0.5) s). A side's distance in stride units is the
expectation of a softmax over the bins 0..R-1 (R > 1, GFL's distribution) or softplus of one logit (R = 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mnv3det.models.layers import ConvNormAct

# Class-score prior at initialisation (focal loss's 0.01): the class logits start where most points are background.
CLASS_PRIOR = 0.01
INIT_SIDE = 2.0  # stride units from the cell centre to each side of a new head's boxes


class AFBranch(nn.Sequential):
    """`convs` depthwise-separable pairs (kxk depthwise -> BN -> act, 1x1 pointwise -> BN -> act) at the level's
    width: (B, C, H, W) -> (B, C, H, W). Shared by the box and class predictions (GFL's and PicoDet's choice for
    small heads: one branch costs half of two)."""

    def __init__(self, channels: int, convs: int, kernel: int, act: str) -> None:
        parts: list[nn.Module] = []
        for _ in range(convs):
            parts.append(ConvNormAct(channels, channels, kernel, groups=channels, act=act))
            parts.append(ConvNormAct(channels, channels, 1, act=act))
        super().__init__(*parts)


class AFDetect(nn.Module):
    """Anchor-free head. yaml args [nc, bins=16, convs=2, kernel=3, act='relu'].

    bins: values per side (16: a distribution over 0..15 stride units; 1: one softplus regression).
    act: 'relu' (int8-friendly, the minimalistic backbones), 'hswish' or 'silu'.
    `stride` is zeros until the graph builder has measured it (`set_strides`).
    """

    anchor_free = True

    def __init__(self, nc: int, bins: int = 16, convs: int = 2, kernel: int = 3, act: str = "relu",
                 ch: list[int] | None = None) -> None:
        super().__init__()
        if not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
        ch = list(ch or [])
        self.nc = nc
        self.bins = bins
        self.no = 4 + nc
        self.nl = len(ch)
        self.register_buffer("stride", torch.zeros(self.nl))
        self.register_buffer("project", torch.arange(bins, dtype=torch.float32), persistent=False)
        self.branches = nn.ModuleList(AFBranch(c, convs, kernel, act) for c in ch)
        self.box_pred = nn.ModuleList(nn.Conv2d(c, 4 * bins, 1) for c in ch)
        self.cls_pred = nn.ModuleList(nn.Conv2d(c, nc, 1) for c in ch)

    @torch.no_grad()
    def set_strides(self, strides: Tensor) -> None:
        """Store the measured strides and initialise the prediction biases: the class prior, and every side near
        `INIT_SIDE` strides, so each level starts with boxes of its own scale (4 strides wide: 32 px at P3, 128 at
        P5) instead of 15 strides wide; the first assignments then see IoUs that are not near zero."""
        self.stride.copy_(strides)
        for conv in self.cls_pred:
            conv.bias.fill_(-math.log((1 - CLASS_PRIOR) / CLASS_PRIOR))
        for conv in self.box_pred:
            if self.bins == 1:
                conv.bias.fill_(math.log(math.expm1(INIT_SIDE)))  # softplus(b) = INIT_SIDE
            else:  # logits -(k - INIT_SIDE)^2 / 2 per bin k: a softmax peaked at INIT_SIDE (expectation 2.01 for 2)
                peak = -0.5 * (torch.arange(self.bins, dtype=conv.bias.dtype) - INIT_SIDE) ** 2
                conv.bias.copy_(peak.repeat(4))

    def raw(self, xs: list[Tensor]) -> list[Tensor]:
        """Per level: (B, C_l, H, W) -> (B, 4 * bins + nc, H, W), no activation."""
        out = []
        for branch, box, cls, x in zip(self.branches, self.box_pred, self.cls_pred, xs):
            y = branch(x)
            out.append(torch.cat((box(y), cls(y)), 1))
        return out

    def side_distances(self, logits: Tensor) -> Tensor:
        """Side logits (B, 4 * bins, P) -> distances (B, 4, P) in stride units (left, top, right, bottom)."""
        b, _, p = logits.shape
        if self.bins == 1:
            return F.softplus(logits)
        prob = logits.view(b, 4, self.bins, p).softmax(2)
        return (prob * self.project.to(prob.dtype).view(1, 1, -1, 1)).sum(2)

    def decode(self, raw: list[Tensor]) -> Tensor:
        """Raw maps (B, 4 * bins + nc, H, W) per level -> (B, N, 4 + nc): cxcywh in input pixels, class scores."""
        return torch.cat([self._decode_level(r, i) for i, r in enumerate(raw)], 1)

    def _decode_level(self, y: Tensor, i: int) -> Tensor:
        """One level, channel-first as Detect decodes (whole planes move, not short rows): (B, C, H, W) ->
        (B, H * W, 4 + nc)."""
        b, _, h, w = y.shape
        y = y.flatten(2)  # (B, 4 * bins + nc, H * W)
        dist = self.side_distances(y[:, : 4 * self.bins])  # (B, 4, P)
        stride = self.stride[i].to(y.dtype)
        points = cell_points(h, w, y.device, y.dtype)  # (2, P) in cells, centres at +0.5
        lt, rb = dist[:, :2], dist[:, 2:]
        cxcy = (points + (rb - lt) * 0.5) * stride
        wh = (lt + rb) * stride
        scores = y[:, 4 * self.bins:].sigmoid()
        return torch.cat((cxcy, wh, scores), 1).permute(0, 2, 1)

    def forward(self, xs: list[Tensor]) -> list[Tensor] | Tensor:
        raw = self.raw(xs)
        return raw if self.training else self.decode(raw)


def cell_points(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Cell centres of an H x W map in cell units: (2, H * W) = (x, y), row-major as `flatten(2)` orders cells."""
    gy, gx = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                            indexing="ij")
    return torch.stack((gx, gy), 0).view(2, -1) + 0.5


__all__ = ["AFDetect", "CLASS_PRIOR", "cell_points"]
