"""Optimizer, nominal-batch accumulation, warmup and learning-rate schedule (YOLOv5's recipe).

- Three parameter groups: conv/linear weights (with weight decay), normalisation weights and
  biases (no decay: shrinking BN scales or biases towards zero only hurts).
- Nominal batch: gradients of `accumulate = round(nbs / batch)` batches are summed before a step,
  and weight decay is scaled by batch * accumulate / nbs so it means the same at any batch size.
- Warmup over the first `warmup_iters` batches: lrs ramp from 0 (biases: from warmup_bias_lr down),
  momentum from warmup_momentum, and accumulation from 1 up to nbs / batch.
- After warmup a per-epoch linear or cosine decay from lr0 to lr0 * lrf (LambdaLR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters split into 'decay' (weights), 'norm' (BN/LN weights), 'bias'."""
    norm_types = tuple(v for k, v in vars(nn).items() if "Norm" in k and isinstance(v, type))
    groups: dict[str, list[nn.Parameter]] = {"decay": [], "norm": [], "bias": []}
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if name == "bias":
                groups["bias"].append(p)
            elif isinstance(module, norm_types):
                groups["norm"].append(p)
            else:
                groups["decay"].append(p)
    return groups


def accumulate_steps(batch: int, nbs: int) -> int:
    """Batches per optimizer step so one step sees about `nbs` images."""
    return max(round(nbs / batch), 1)


def build_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD (nesterov) or AdamW over the three groups; each group has a 'group' key naming it."""
    groups = parameter_groups(model)
    key = name.lower()
    if key == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            [{"params": groups["bias"], "group": "bias", "weight_decay": 0.0}], lr=lr, momentum=momentum, nesterov=True
        )
    elif key == "adamw":
        opt = torch.optim.AdamW(
            [{"params": groups["bias"], "group": "bias", "weight_decay": 0.0}], lr=lr, betas=(momentum, 0.999)
        )
    else:
        raise ValueError(f"unknown optimizer {name!r}; use SGD or AdamW")
    opt.add_param_group({"params": groups["decay"], "group": "decay", "weight_decay": weight_decay})
    opt.add_param_group({"params": groups["norm"], "group": "norm", "weight_decay": 0.0})
    return opt


def lr_lambda(epochs: int, lrf: float, cosine: bool) -> Callable[[int], float]:
    """Multiplier of lr0 at epoch e: 1 -> lrf, linear or cosine."""
    if cosine:
        return lambda e: ((1 - math.cos(e * math.pi / epochs)) / 2) * (lrf - 1) + 1
    span = max(epochs - 1, 1)
    return lambda e: (1 - e / span) * (1.0 - lrf) + lrf


@dataclass
class Warmup:
    """Per-batch warmup of lr, momentum and accumulation; `apply` returns the accumulation to use."""

    iters: int  # warmup length in batches (0 = none)
    nbs: int
    batch: int
    momentum: float
    warmup_momentum: float
    warmup_bias_lr: float
    lf: Callable[[int], float]

    def apply(self, optimizer: torch.optim.Optimizer, ni: int, epoch: int) -> int | None:
        """Set lr/momentum for global batch index ni; None once warmup is over (leave things as they are)."""
        if ni >= self.iters:
            return None
        xi = [0, self.iters]
        accumulate = max(1, int(np.interp(ni, xi, [1, self.nbs / self.batch]).round()))
        for group in optimizer.param_groups:
            start = self.warmup_bias_lr if group.get("group") == "bias" else 0.0
            group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * self.lf(epoch)]))
            m = float(np.interp(ni, xi, [self.warmup_momentum, self.momentum]))
            if "momentum" in group:
                group["momentum"] = m
            elif "betas" in group:
                group["betas"] = (m, group["betas"][1])
        return accumulate


def warmup_iters(warmup_epochs: float, batches_per_epoch: int, min_iters: int) -> int:
    """Warmup length in batches: warmup_epochs worth, but at least min_iters (0 epochs = none)."""
    if warmup_epochs <= 0:
        return 0
    return max(round(warmup_epochs * batches_per_epoch), min_iters)
