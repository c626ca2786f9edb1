"""Exponential moving average of model weights (used for validation and saved checkpoints).

Written by hand rather than with torch.optim.swa_utils.AveragedModel because YOLOv5's decay is
ramped by the update count (d = decay * (1 - exp(-updates / tau)), so early, poor weights fade
quickly) and the averaged copy must keep the model's own state_dict keys for checkpoints.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP/DataParallel wrappers."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


class ModelEMA:
    """EMA of a model's floating-point state (parameters and BN buffers).

    ema.module is an eval-mode copy with requires_grad off; update(model) after each optimizer step.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay_max = decay
        self.tau = tau
        self.updates = updates

    def decay(self) -> float:
        """Current decay: ramps from 0 towards decay_max over ~tau updates."""
        return self.decay_max * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema = d * ema + (1 - d) * model, for every floating-point tensor of the state."""
        self.updates += 1
        d = self.decay()
        current = unwrap(model).state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.lerp_(current[name].detach(), 1.0 - d)  # = d * value + (1 - d) * current

    def copy_attributes(self, model: nn.Module, names: tuple[str, ...] = ("nc", "names", "recipe")) -> None:
        """Copy plain attributes (class names etc.) that are not part of the state."""
        src = unwrap(model)
        for name in names:
            if hasattr(src, name):
                setattr(self.module, name, copy.deepcopy(getattr(src, name)))
