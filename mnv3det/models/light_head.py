"""Depthwise-separable head parts: the source material's own idea (MobileNetV1) applied to the YOLOv5 PAN.

A PAN built from YOLOv5's dense 3x3 convs costs k^2 * C_in * C_out per pixel, so mnv3-small can only afford a
head width of 0.125 before the head dominates latency. Replacing each dense kxk conv with a depthwise kxk + 1x1
pointwise pair costs k^2 * C_in + C_in * C_out, which makes width cheap; the saving buys a wider head and a
larger depthwise kernel (5x5, as PP-PicoDet's CSP-PAN uses) for more receptive field per level.
Both parts are "YOLO parts" for the graph builder: their channels scale with width_multiple and CSPDS repeats
scale with depth_multiple, like C3. BN sits inside ConvNormAct, so `fuse_conv_bn` folds it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mnv3det.models.layers import ConvNormAct


class DSConv(nn.Module):
    """kxk depthwise (stride s) -> BN -> h-swish, then 1x1 pointwise -> BN -> h-swish.

    Unlike the MobileNetV1 seed block `DWSConv` (ReLU, fixed widths), this is a head part: h-swish like
    MobileNetV3, channels scaled by width_multiple.

    yaml args [out_ch, kernel=3, stride=1]. (B, c1, H, W) -> (B, c2, H / s, W / s).
    """

    def __init__(self, c1: int, c2: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(c1, c1, kernel, stride, groups=c1, act="hswish")
        self.pointwise = ConvNormAct(c1, c2, 1, act="hswish")
        self.kernel = kernel

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class CSPDS(nn.Module):
    """CSP block with depthwise-separable bottlenecks (C3's layout, its 3x3 convs swapped for DSConv).

    yaml args [out_ch, kernel=5]. cv1/cv2: 1x1 to c2/2 each; cv1's branch runs n residual DSConv(kernel);
    the two halves are concatenated and cv3 (1x1) mixes them to c2. (B, c1, H, W) -> (B, c2, H, W).
    """

    def __init__(self, c1: int, c2: int, n: int = 1, kernel: int = 5) -> None:
        super().__init__()
        hidden = c2 // 2
        self.cv1 = ConvNormAct(c1, hidden, 1, act="hswish")
        self.cv2 = ConvNormAct(c1, hidden, 1, act="hswish")
        self.m = nn.ModuleList(DSConv(hidden, hidden, kernel) for _ in range(n))
        self.cv3 = ConvNormAct(2 * hidden, c2, 1, act="hswish")

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv1(x)
        for block in self.m:
            y = y + block(y)  # residual, as C3's bottlenecks
        return self.cv3(torch.cat((y, self.cv2(x)), 1))
