"""Building blocks the yaml graphs are made of.

Two families live here:

* seed modules from the MobileNet papers (`h_sigmoid`, `h_swish`, `SELayer`, `conv_bn_hswish`,
  `MobileNet_Block`, `DWSConv`, `conv_bn_relu6`, `InvertedResidual`). Their sub-module layout mirrors
  torchvision's `mobilenet_v3_*` / `mobilenet_v2` so ImageNet state_dicts load one to one
  (`features.{i}.<rest>` -> `layers.{i}.<rest>`, see pretrained.py);
* YOLOv5 v6.0 parts (`Conv`, `Bottleneck`, `C3`, `SPPF`, `Concat`); `Detect` lives in detect.py.

Every conv+BN pair is either a `ConvNormAct` (a Sequential: 0 conv, 1 BN, 2 activation) or a YOLOv5
`Conv` (conv, bn, act attributes), so `fuse_conv_bn` in this module can fold all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

# BatchNorm settings. torchvision's MobileNetV3 uses eps 1e-3 (and YOLOv5 does too), MobileNetV2 uses
# the PyTorch default 1e-5; the eps must match for ImageNet weights to give the same outputs.
BN_EPS_V3 = 1e-3
BN_EPS_V2 = 1e-5
BN_MOMENTUM = 0.03  # YOLOv5's value (PyTorch convention: weight of the new batch statistics)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round `value` to a multiple of `divisor`, never going below 90% of it (torchvision's rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def autopad(kernel: int, padding: int | None = None) -> int:
    """'same' padding for odd kernels at stride 1."""
    return kernel // 2 if padding is None else padding


# ----------------------------------------------------------------------------------------------
# Activations (thin modules over torch's own hardsigmoid/hardswish, so exporters see standard ops)
# ----------------------------------------------------------------------------------------------
class h_sigmoid(nn.Module):  # noqa: N801 (registry name from the source material)
    """Hard sigmoid, ReLU6(x + 3) / 6."""

    def forward(self, x: Tensor) -> Tensor:
        return F.hardsigmoid(x)


class h_swish(nn.Module):  # noqa: N801
    """Hard swish, x * ReLU6(x + 3) / 6."""

    def forward(self, x: Tensor) -> Tensor:
        return F.hardswish(x)


def _activation(kind: str | None) -> nn.Module:
    return {"hswish": h_swish, "relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, None: nn.Identity}[kind]()


class ConvNormAct(nn.Sequential):
    """conv (no bias) -> BatchNorm -> activation; keys 0/1/2 as torchvision's Conv2dNormActivation."""

    def __init__(
        self,
        c1: int,
        c2: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "hswish",
        eps: float = BN_EPS_V3,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c1, c2, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c2, eps=eps, momentum=BN_MOMENTUM),
        ]
        if act is not None:  # torchvision leaves the activation out entirely (keeps the keys aligned)
            layers.append(_activation(act))
        super().__init__(*layers)


# ----------------------------------------------------------------------------------------------
# MobileNetV3 seed modules
# ----------------------------------------------------------------------------------------------
class SELayer(nn.Module):
    """Squeeze-and-excite: global average pool -> 1x1 conv to C/4 (ReLU) -> 1x1 conv to C (h-sigmoid) -> scale.

    Squeeze width make_divisible(C / 4, 8) and biased 1x1 convs named fc1/fc2, as torchvision's
    SqueezeExcitation, so its weights load unchanged. (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, squeeze: int | None = None) -> None:
        super().__init__()
        squeeze = squeeze or make_divisible(channels / 4, 8)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = h_sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)  # (B, C, 1, 1)
        scale = self.gate(self.fc2(self.relu(self.fc1(scale))))
        return x * scale


class conv_bn_hswish(ConvNormAct):  # noqa: N801
    """MobileNetV3 stem: 3x3 conv (stride s) -> BN -> h-swish. yaml args [out_ch, stride]."""

    def __init__(self, c1: int, c2: int, stride: int = 2) -> None:
        super().__init__(c1, c2, 3, stride, act="hswish", eps=BN_EPS_V3)


class MobileNet_Block(nn.Module):  # noqa: N801
    """MobileNetV3 bottleneck. yaml args [out_ch, hidden_ch, kernel, stride, use_se, use_hs].

    1x1 expand (skipped when hidden == in) -> kxk depthwise (stride) -> SE (after the depthwise
    activation) -> 1x1 linear projection; residual when stride 1 and in == out.
    Activation: h-swish when use_hs, else ReLU. Layout = torchvision's InvertedResidual (`block.N`).
    """

    def __init__(
        self, c1: int, c2: int, hidden: int, kernel: int, stride: int, use_se: bool | int, use_hs: bool | int
    ) -> None:
        super().__init__()
        act = "hswish" if use_hs else "relu"
        layers: list[nn.Module] = []
        if hidden != c1:
            layers.append(ConvNormAct(c1, hidden, 1, act=act))
        layers.append(ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if use_se:
            layers.append(SELayer(hidden))
        layers.append(ConvNormAct(hidden, c2, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c1 == c2
        self.kernel = kernel

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


# ----------------------------------------------------------------------------------------------
# MobileNetV1 / V2 seed modules
# ----------------------------------------------------------------------------------------------
class DWSConv(nn.Module):
    """MobileNetV1 depthwise-separable conv: kxk depthwise -> BN -> ReLU, 1x1 pointwise -> BN -> ReLU.

    yaml args [out_ch, kernel, stride]. Costs 1/N + 1/k^2 of a standard kxk conv (N = out_ch).
    """

    def __init__(self, c1: int, c2: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(c1, c1, kernel, stride, groups=c1, act="relu", eps=BN_EPS_V2)
        self.pointwise = ConvNormAct(c1, c2, 1, act="relu", eps=BN_EPS_V2)
        self.kernel = kernel

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class conv_bn_relu6(ConvNormAct):  # noqa: N801
    """MobileNetV2 stem: 3x3 conv (stride s) -> BN -> ReLU6. yaml args [out_ch, stride]."""

    def __init__(self, c1: int, c2: int, stride: int = 2) -> None:
        super().__init__(c1, c2, 3, stride, act="relu6", eps=BN_EPS_V2)


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual. yaml args [out_ch, expand_ratio, stride].

    1x1 expand (ReLU6; skipped when expand_ratio == 1) -> 3x3 depthwise (ReLU6) -> 1x1 linear
    projection (no activation: the linear bottleneck); residual when stride 1 and in == out.
    Layout = torchvision's mobilenet_v2 InvertedResidual (`conv.N`).
    """

    def __init__(self, c1: int, c2: int, expand_ratio: int, stride: int) -> None:
        super().__init__()
        hidden = int(round(c1 * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(c1, hidden, 1, act="relu6", eps=BN_EPS_V2))
        layers += [
            ConvNormAct(hidden, hidden, 3, stride, groups=hidden, act="relu6", eps=BN_EPS_V2),
            nn.Conv2d(hidden, c2, 1, bias=False),
            nn.BatchNorm2d(c2, eps=BN_EPS_V2, momentum=BN_MOMENTUM),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and c1 == c2
        self.kernel = 3

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y


# ----------------------------------------------------------------------------------------------
# YOLOv5 v6.0 parts
# ----------------------------------------------------------------------------------------------
class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm -> SiLU. yaml args [out_ch, kernel=1, stride=1, padding=None, groups=1]."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=BN_EPS_V3, momentum=BN_MOMENTUM)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1 Conv (c2 * e) -> 3x3 Conv (c2), plus x when shortcut and c1 == c2."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convs: cv3(cat(m(cv1(x)), cv2(x))). yaml args [out_ch, shortcut=True]."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained k x k max-pools concatenated. yaml args [out_ch, k=5]."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, c2, 1, 1)
        self.pool = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat((x, y1, y2, self.pool(y2)), 1))


class Concat(nn.Module):
    """Concatenate a list of tensors along `dimension` (channels by default)."""

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[Tensor]) -> Tensor:
        return torch.cat(x, self.d)


# ----------------------------------------------------------------------------------------------
# BN folding
# ----------------------------------------------------------------------------------------------
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold `bn` into `conv` in place (conv gains a bias); uses torch's own fusion formula."""
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    conv.weight = weight
    conv.bias = bias


@torch.no_grad()
def fuse_conv_bn(module: nn.Module) -> int:
    """Fold every conv -> BN pair under `module` into the conv (the BN becomes Identity); returns the count.

    Pairs are a YOLOv5 `Conv` (.conv/.bn) or a conv directly followed by a BN inside an nn.Sequential
    (ConvNormAct and InvertedResidual's projection), which is where every BN in this package sits.
    """
    count = 0
    for parent in list(module.modules()):  # a list: the loop replaces children
        if isinstance(parent, Conv) and isinstance(parent.bn, nn.BatchNorm2d):
            _fold(parent.conv, parent.bn)
            parent.bn = nn.Identity()
            count += 1
        elif isinstance(parent, nn.Sequential):
            children = list(parent.named_children())
            for (_, first), (name, second) in zip(children, children[1:]):
                if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                    _fold(first, second)
                    setattr(parent, name, nn.Identity())
                    count += 1
    return count
