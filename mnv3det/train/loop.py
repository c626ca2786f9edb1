"""One pass over the training data: `train_one_epoch(state, loader, epoch, cfg)`.

Per batch: uint8 images / 255 -> forward (autocast fp16 on CUDA, optional bf16 on CPU) -> YOLOv5 loss
-> backward; every `accumulate` batches (nominal batch 64): unscale, clip the gradient norm, optimizer
step, EMA update. A non-finite loss or gradient skips the batch; too many stop the run. Nothing else runs
per batch but timing, the CPU thread governor's poll (a clock check; a /proc read once a second) and, at
most twice a second, the progress display.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from rich.console import Console
from torch import Tensor

from mnv3det.core.console import make_console
from mnv3det.errors import UserError
from mnv3det.train import distributed as ddp
from mnv3det.train.config import TrainConfig
from mnv3det.train.progress import EpochProgress
from mnv3det.train.state import TrainState

BatchHook = Callable[[int, Tensor, Tensor], None]  # (batch index, uint8 images, targets) -> None


@dataclass
class EpochStats:
    """What one epoch did. losses: mean per batch of the loss's three terms, named by `names` (the loss's own:
    box, obj, cls for YOLOv5's head; box, dfl, cls for the anchor-free head)."""

    losses: list[float]
    images: int
    batches: int
    seconds: float
    skipped: int
    data_s: float  # waiting for the loader
    forward_s: float  # forward + loss
    backward_s: float  # backward + optimizer step + EMA
    names: tuple[str, ...] = ("box", "obj", "cls")

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for the device, or a no-op for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def optimizer_step(state: TrainState, clip: float) -> bool:
    """Unscale, clip the gradient norm, step, EMA update. False, with the weights untouched, when the gradient is
    not finite and no GradScaler is on (an enabled one skips such steps itself and lowers its scale): a finite
    loss can still have a NaN gradient, and one such step would turn every weight into NaN."""
    state.scaler.unscale_(state.optimizer)
    norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), max_norm=clip)
    if not state.scaler.is_enabled() and not torch.isfinite(norm):
        state.optimizer.zero_grad(set_to_none=True)
        return False
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.optimizer.zero_grad(set_to_none=True)
    state.ema.update(state.model)
    return True


def _skip_nonfinite(state: TrainState, cfg: TrainConfig, epoch: int, i: int) -> None:
    """Count a batch with a non-finite loss or gradient; stop the run when there were too many."""
    state.nonfinite_steps += 1
    state.optimizer.zero_grad(set_to_none=True)
    if state.nonfinite_steps > cfg.max_nonfinite:
        raise UserError(
            f"training diverged: {state.nonfinite_steps} batches had a non-finite loss or gradient (last in epoch "
            f"{epoch + 1}, batch {i + 1}). Lower --lr0 (e.g. by 10x), check the labels with "
            "`mnv3det data check`, or on CPU drop --cpu-bf16."
        )


def train_one_epoch(state: TrainState, loader: Any, epoch: int, cfg: TrainConfig, *, console: Console | None = None,
                    show_progress: bool = True, batch_hook: BatchHook | None = None, hook_batches: int = 3,
                    between_batches: Callable[[], object] | None = None) -> EpochStats:
    """One pass over `loader` (batches of (uint8 images, targets (M, 6), paths, shapes)).

    batch_hook: called with the first `hook_batches` batches as the loader gives them (train_batch*.jpg).
    between_batches: called after every batch on this thread (the CPU thread governor's `poll`).
    An interrupt records (epoch, batch) in `state.stopped_at` and propagates.
    """
    loss_names = tuple(state.loss_fn.names)
    model, device = state.model, state.device
    model.train()
    processes = ddp.world_size()  # images/s counts every process's batch
    nb = len(loader)
    loss_sum = torch.zeros(3, device=device)
    counted = images = i = 0
    nonfinite_before = state.nonfinite_steps  # this epoch's skipped batches = the run's count's growth
    t_data = t_fwd = t_bwd = 0.0
    start = last_refresh = time.perf_counter()
    with EpochProgress(console or make_console(stderr=True), show_progress, epoch, cfg.epochs, nb) as progress:
        batches: Iterator = iter(loader)
        try:
            for i in range(nb):
                t0 = time.perf_counter()
                imgs, targets, _paths, _shapes = next(batches)
                t1 = time.perf_counter()
                if batch_hook is not None and i < hook_batches:
                    batch_hook(i, imgs, targets)
                ni = i + nb * epoch  # global batch index (drives warmup and accumulation)
                accumulate = state.warmup.apply(state.optimizer, ni, epoch) or state.accumulate
                x = imgs.to(device, non_blocking=True, memory_format=state.memory_format).float().div_(255.0)  # uint8 -> 0..1
                with autocast_context(device, state.autocast_dtype):
                    preds = model(x)
                loss, items = state.loss_fn(preds, targets.to(device, non_blocking=True))
                t2 = time.perf_counter()
                # Every process must agree, or DDP's gradient all-reduce would wait forever on the skipper.
                if not ddp.all_true(bool(torch.isfinite(loss)), device):
                    _skip_nonfinite(state, cfg, epoch, i)
                    continue
                step_now = ni - state.last_opt_step >= accumulate
                # Skip DDP's gradient all-reduce on batches that only accumulate.
                sync = contextlib.nullcontext() if step_now or not hasattr(model, "no_sync") else model.no_sync()
                with sync:
                    # DDP averages gradients over processes; x world size keeps them those of the whole batch.
                    state.scaler.scale(loss * processes).backward()
                if step_now:
                    if not optimizer_step(state, cfg.grad_clip):
                        _skip_nonfinite(state, cfg, epoch, i)
                        continue
                    state.last_opt_step = ni
                t3 = time.perf_counter()
                loss_sum += items
                counted += 1
                images += x.shape[0] * processes
                t_data, t_fwd, t_bwd = t_data + t1 - t0, t_fwd + t2 - t1, t_bwd + t3 - t2
                if between_batches is not None:
                    between_batches()
                if progress.enabled and (t3 - last_refresh > progress.refresh_s or i == nb - 1):
                    progress.show(i + 1, loss_sum / max(counted, 1), images, t3 - start, device, loss_names)
                    last_refresh = t3
        except KeyboardInterrupt:
            state.stopped_at = (epoch, i)
            raise
    losses = (ddp.reduce_mean(loss_sum / max(counted, 1))).tolist()
    skipped = state.nonfinite_steps - nonfinite_before
    return EpochStats(losses, images, nb, time.perf_counter() - start, skipped, t_data, t_fwd, t_bwd, loss_names)
