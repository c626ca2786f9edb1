"""YOLOv5 v6.0 detection head: one 1x1 conv per level, 3 anchors a level, sigmoid decode.

Shapes (nl levels, na anchors per level, no = 5 + nc outputs per anchor):
    inputs      list of nl feature maps (B, C_l, H_l, W_l)
    raw(...)    list of nl tensors (B, na, H_l, W_l, no), no activation   (train mode output; the loss reads these)
    decode(...) Tensor (B, sum(na * H_l * W_l), no): cx, cy, w, h in input pixels, obj and class probabilities
                (eval mode output)
Decode: xy = (2 * sigmoid(t_xy) - 0.5 + grid) * stride, wh = (2 * sigmoid(t_wh))^2 * anchor_pixels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Detect(nn.Module):
    """Detection head. `anchors` buffer is (nl, na, 2) in stride units (pixels / stride), `stride` is (nl,).

    Until the graph builder has measured the strides, `stride` is zeros and `anchors` holds pixels;
    `set_strides` divides them once (see graph.py).
    """

    def __init__(self, nc: int, anchors: list[list[float]], ch: list[int]) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, self.na, 2))
        self.register_buffer("stride", torch.zeros(self.nl))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    @torch.no_grad()
    def set_strides(self, strides: Tensor) -> None:
        """Store the measured strides, turn pixel anchors into stride units and initialise the biases.

        Bias init (YOLOv5's): objectness for about 8 objects per 640x640 image at each level,
        classes for a 0.6 / (nc - 0.99) prior.
        """
        self.stride.copy_(strides)
        self.anchors.div_(strides.view(-1, 1, 1))
        for conv, s in zip(self.m, strides.tolist()):
            bias = conv.bias.view(self.na, self.no)
            bias[:, 4] += math.log(8 / (640 / s) ** 2)
            bias[:, 5:] += math.log(0.6 / (self.nc - 0.99))
        # view() shares storage with conv.bias, so the in-place adds above changed the parameter itself.

    @torch.no_grad()
    def set_pixel_anchors(self, pixel_anchors: Tensor) -> None:
        """Replace the anchors; `pixel_anchors` is (nl, na, 2) in pixels (as autoanchor produces them)."""
        if tuple(pixel_anchors.shape) != tuple(self.anchors.shape):
            raise ValueError(f"anchors must have shape {tuple(self.anchors.shape)}, got {tuple(pixel_anchors.shape)}")
        self.anchors.copy_(pixel_anchors.to(self.anchors) / self.stride.view(-1, 1, 1))

    def raw(self, xs: list[Tensor]) -> list[Tensor]:
        """Per level: (B, C_l, H, W) -> (B, na, H, W, no), no activation."""
        out = []
        for conv, x in zip(self.m, xs):
            y = conv(x)
            b, _, h, w = y.shape
            out.append(y.view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return out

    def decode(self, raw: list[Tensor]) -> Tensor:
        """Raw maps (B, na, H, W, no) -> (B, N, no) with boxes in input pixels and probabilities after sigmoid."""
        out = []
        for i, p in enumerate(raw):
            b, _, h, w, _ = p.shape
            out.append(self._decode_level(p.permute(0, 1, 4, 2, 3).reshape(b, -1, h, w), i))
        return torch.cat(out, 1)

    def _decode_level(self, y: Tensor, i: int) -> Tensor:
        """One level's conv output (B, na * no, H, W) -> (B, na * H * W, no) decoded.

        Decoding happens channel-first, (B, na, no, H, W), so that slicing and concatenating the no outputs
        move whole H x W planes instead of short rows of no floats. Decoding was about a quarter of mnv3-small's
        ONNX Runtime time at 640; this layout cut it from ~13 to ~9 ms (ORT profiler, loaded machine).
        Same values as decode(raw) on the channel-last maps (tests/test_models.py checks both against a reference).
        """
        b, _, h, w = y.shape
        y = y.view(b, self.na, self.no, h, w).sigmoid()
        gy, gx = torch.meshgrid(
            torch.arange(h, device=y.device, dtype=y.dtype), torch.arange(w, device=y.device, dtype=y.dtype), indexing="ij"
        )
        grid = torch.stack((gx, gy), 0).view(1, 1, 2, h, w)  # (x, y) cell offsets
        stride = self.stride[i].to(y.dtype)
        anchor_px = (self.anchors[i] * self.stride[i]).view(1, self.na, 2, 1, 1).to(y.dtype)
        xy = (y[:, :, 0:2] * 2 - 0.5 + grid) * stride
        t = y[:, :, 2:4] * 2
        # (2 sigmoid)^2 as t * t: LiteRT's converter cannot lower the 5-D pow that `** 2` becomes (tfl.pow), and
        # torch computes x ** 2 as x * x, so every other format gets the same bits (tests/test_models.py).
        wh = t * t * anchor_px
        out = torch.cat((xy, wh, y[:, :, 4:]), 2)  # (B, na, no, H, W)
        return out.permute(0, 1, 3, 4, 2).reshape(b, -1, self.no)

    def forward(self, xs: list[Tensor]) -> list[Tensor] | Tensor:
        if self.training:
            return self.raw(xs)
        return torch.cat([self._decode_level(conv(x), i) for i, (conv, x) in enumerate(zip(self.m, xs))], 1)
