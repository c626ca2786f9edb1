"""The training loss on the validation images (results.csv's `val/box_loss`, `val/obj_loss` or `val/dfl_loss`,
`val/cls_loss`: the terms of the run's head, as the train columns).

The per-epoch validation runs the EMA model through the prediction path, which returns decoded boxes only. A
forward hook on its head (Detect, or the anchor-free AFDetect) keeps that batch's raw maps (`head.raw` of the same
features, what the head returns in training: its convs run once more, a small cost beside the backbone), and
`add(targets)` scores them with the run's own loss module, so the gains and the assignment are the training ones.
Beside the train losses, a gap that opens epoch after epoch is over-fitting; the mAP columns alone show it late.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class ValLoss:
    """`with ValLoss(head, loss_fn) as val_loss: evaluate(..., on_targets=val_loss.add)`; then `val_loss.means()`
    is {term: mean over images} in `loss_fn.names` order (box, obj, cls or box, dfl, cls), as the training loss
    reports them (None before any batch)."""

    def __init__(self, detect: nn.Module, loss_fn: nn.Module) -> None:
        self.detect, self.loss_fn = detect, loss_fn
        self.raw: list[Tensor] | None = None
        self.total = torch.zeros(3, dtype=torch.float64)
        self.images = 0
        self._hook: Any = None

    def __enter__(self) -> "ValLoss":
        self._hook = self.detect.register_forward_hook(self._keep)
        return self

    def __exit__(self, *exc: object) -> None:
        self._hook.remove()
        self.raw = None

    def _keep(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        self.raw = module.raw(inputs[0])  # per level, raw: what the head returns in training

    def add(self, targets: Tensor) -> None:
        """Score the batch the model just ran; targets: (M, 6) [img, cls, cx, cy, w, h] normalised, as the loader
        gives them (the same letterboxed batch the raw maps come from)."""
        if self.raw is None:
            return
        with torch.no_grad():
            _, items = self.loss_fn(self.raw, targets)
        batch = int(self.raw[0].shape[0])
        self.total += items.detach().double().cpu() * batch
        self.images += batch
        self.raw = None  # each batch once

    def means(self) -> dict[str, float] | None:
        if not self.images:
            return None
        return dict(zip(self.loss_fn.names, (self.total / self.images).tolist()))
