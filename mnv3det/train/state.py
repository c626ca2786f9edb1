"""Training state: what `train_one_epoch` updates, how it is built, saved in last.pt and restored.

    state = build_state(cfg, model, device, batches_per_epoch, info)
    restore_state(state, ckpt, start_epoch, source)          # --resume
    ckpt = make_checkpoint(state, cfg, data_info, epoch, finished=False)   # -> Checkpoint (last.pt)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mnv3det.core.console import make_console
from mnv3det.core.checkpoint import Checkpoint, DataInfo, ResumeState, load_state
from mnv3det.errors import UserError
from mnv3det.train import distributed as ddp
from mnv3det.train.config import TrainConfig
from mnv3det.train.ema import ModelEMA, unwrap
from mnv3det.train.loss import make_loss
from mnv3det.train.optim import Warmup, accumulate_steps, build_optimizer, lr_lambda, warmup_iters


@dataclass
class TrainState:
    """Everything `train_one_epoch` updates; saved in last.pt for --resume."""

    model: nn.Module  # the module that runs forward/backward (DDP-wrapped under torchrun)
    ema: ModelEMA
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module  # YoloLoss or AnchorFreeLoss (train/loss.make_loss)
    warmup: Warmup
    accumulate: int  # batches per optimizer step after warmup
    device: torch.device
    autocast_dtype: torch.dtype | None  # None = full precision
    memory_format: torch.memory_format = torch.contiguous_format  # channels_last when cfg.channels_last
    last_opt_step: int = -1  # global batch index of the last optimizer step
    nonfinite_steps: int = 0  # batches skipped for a non-finite loss or gradient (whole run)
    best_fitness: float | None = None
    best_epoch: int = -1
    stopped_at: tuple[int, int] | None = None  # (epoch, batch) where an interrupt hit, both 0-based

    @property
    def net(self) -> nn.Module:
        """The bare model (no DDP wrapper)."""
        return unwrap(self.model)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """All global RNG states as tensors/lists (safe for torch.load(weights_only=True))."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved (parts it lacks, e.g. cuda on another machine, are left alone)."""
    if state.get("python") is not None:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if state.get("numpy") is not None:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_state(cfg: TrainConfig, model: nn.Module, device: torch.device, nb: int, info: ddp.DistInfo) -> TrainState:
    """Optimizer, schedule, scaler, EMA, loss and DDP wrapper for `model` (already on device); nb batches/epoch."""
    batch_per_step = cfg.batch  # total batch over all processes
    accumulate = accumulate_steps(batch_per_step, cfg.nbs)
    weight_decay = cfg.weight_decay * batch_per_step * accumulate / cfg.nbs
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr0, cfg.momentum, weight_decay)
    lf = lr_lambda(cfg.epochs, cfg.lrf, cfg.cos_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)  # in place for parameters; before the EMA copy
    use_amp = device.type == "cuda" and cfg.amp
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    ema = ModelEMA(model, cfg.ema_decay, cfg.ema_tau)
    dtype = torch.float16 if use_amp else (torch.bfloat16 if device.type == "cpu" and cfg.cpu_bf16 else None)
    # Warmup: `warmup_epochs` worth of batches (>= min_warmup_iters), at most half the run (same when resumed).
    nw = min(warmup_iters(cfg.warmup_epochs, nb, cfg.min_warmup_iters), max(cfg.epochs * nb // 2, 1))
    warmup = Warmup(nw if cfg.warmup_epochs > 0 else 0, cfg.nbs, batch_per_step, cfg.momentum,
                    cfg.warmup_momentum, cfg.warmup_bias_lr, lf)
    loss_fn = make_loss(model, cfg).to(device)  # BCE pos_weight buffers
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    state = TrainState(model, ema, optimizer, scheduler, scaler, loss_fn, warmup, accumulate, device, dtype, memory_format)
    if info.enabled:
        if cfg.sync_bn and device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif cfg.sync_bn and info.is_main:
            make_console(stderr=True).print("[yellow]--sync-bn needs GPUs; CPU processes keep per-process BatchNorm[/]")
        state.model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return state


def restore_state(state: TrainState, ckpt: Checkpoint, start_epoch: int, source: str) -> None:
    """--resume: optimizer, scaler, EMA weights and counters of last.pt into a freshly built state."""
    saved = ckpt.resume
    assert saved is not None, "resume_checkpoint() only returns files with a training state"
    try:
        state.optimizer.load_state_dict(saved.optimizer)
        if saved.scaler:
            state.scaler.load_state_dict(saved.scaler)
    except (ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"{source}: its optimizer state does not fit the model ({err}); the file is damaged or "
                        "was edited; start a new run from its weights with --weights") from None
    load_state(state.ema.module, ckpt.model, source, "EMA weights")
    state.ema.updates = saved.ema_updates
    state.scheduler.last_epoch = start_epoch  # as after the saved epoch's step(); the next step() sets lf(start_epoch + 1)
    state.best_fitness = ckpt.best_fitness
    state.best_epoch = saved.best_epoch
    state.last_opt_step = saved.last_opt_step
    state.nonfinite_steps = saved.nonfinite_steps


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    """state_dict on CPU with floating tensors as float32 (loads on any device and precision)."""
    return {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
            for k, v in module.state_dict().items()}


def make_checkpoint(state: TrainState, cfg: TrainConfig, data: DataInfo, epoch: int, *, finished: bool,
                    stop_reason: str = "") -> Checkpoint:
    """last.pt after `epoch`: EMA weights in `model`, the raw weights and counters in `resume`; `data` what the
    run trains on (data.fingerprint.data_info)."""
    net = state.net
    resume = ResumeState(
        train_model=_cpu_state(net),
        optimizer=state.optimizer.state_dict(),
        scaler=state.scaler.state_dict() if state.scaler.is_enabled() else None,
        ema_updates=state.ema.updates,
        rng=rng_state(),
        best_epoch=state.best_epoch,
        last_opt_step=state.last_opt_step,
        nonfinite_steps=state.nonfinite_steps,
        finished=finished,
        stop_reason=stop_reason,
    )
    return Checkpoint(recipe=net.recipe, nc=net.nc, names=list(net.names), model=_cpu_state(state.ema.module),
                      epoch=epoch, best_fitness=state.best_fitness, config=cfg.to_dict(), data=data, resume=resume)
