"""The training loop: `fit(cfg)` runs a whole training; `train_one_epoch(...)` one pass over the data.

    from mnv3det.train.config import TrainConfig
    from mnv3det.train.trainer import fit
    result = fit(TrainConfig(recipe="mnv3-small", epochs=30, imgsz=416, batch=16))

One epoch: uint8 batch / 255 -> forward (autocast fp16 on CUDA, optional bf16 on CPU) -> YOLOv5 loss
-> backward; every `accumulate` batches (nominal batch 64): unscale, clip the gradient norm at 10,
optimizer step, EMA update. A non-finite loss skips the batch; too many stop the run.
After each epoch (or every N): validate the EMA model with the evaluator's fast mAP, write
results.csv, last.pt (every epoch) and best.pt (best fitness = 0.1 mAP50 + 0.9 mAP50-95); both
hold the EMA weights. Under torchrun every process trains on its shard; rank 0 validates, logs and saves.
"""

from __future__ import annotations

import contextlib
import csv
import math
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from rich.console import Console
from torch import Tensor, nn

from mnv3det.train.config import TrainConfig, apply_overrides, config_table, save_config
from mnv3det.train import distributed as ddp
from mnv3det.core.threads import resolve_threads
from mnv3det.core.checkpoint import load_checkpoint, save_checkpoint, strip_for_inference
from mnv3det.train.ema import ModelEMA, unwrap
from mnv3det.train.optim import Warmup, accumulate_steps, build_optimizer, lr_lambda, warmup_iters
from mnv3det.errors import UserError
from mnv3det.train.loss import YoloLoss

LOSS_NAMES = ("box", "obj", "cls")


# ---------------------------------------------------------------------------------------------
# Run state and results
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Everything `train_one_epoch` updates; saved in last.pt for --resume."""

    model: nn.Module  # the module that runs forward/backward (DDP-wrapped under torchrun)
    ema: ModelEMA
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    loss_fn: YoloLoss
    warmup: Warmup
    accumulate: int  # batches per optimizer step after warmup
    device: torch.device
    autocast_dtype: torch.dtype | None  # None = full precision
    memory_format: torch.memory_format = torch.contiguous_format  # channels_last when cfg.channels_last
    last_opt_step: int = -1  # global batch index of the last optimizer step
    nonfinite_steps: int = 0  # batches skipped for a non-finite loss (whole run)
    best_fitness: float | None = None
    best_epoch: int = -1

    @property
    def net(self) -> nn.Module:
        """The bare model (no DDP wrapper)."""
        return unwrap(self.model)


@dataclass
class EpochStats:
    """What one epoch did. losses: mean (box, obj, cls) per batch, as reported by the loss."""

    losses: list[float]
    images: int
    batches: int
    seconds: float
    skipped: int
    data_s: float  # waiting for the loader
    forward_s: float  # forward + loss
    backward_s: float  # backward + optimizer step + EMA

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


@dataclass
class TrainResult:
    """What `fit` produced."""

    run_dir: Path
    last: Path
    best: Path | None
    epochs_done: int  # epochs finished in total (including those before a resume)
    best_fitness: float | None
    stop_reason: str
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per epoch run here


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """All global RNG states as tensors/lists (safe for torch.load(weights_only=True))."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any] | None) -> None:
    """Restore what `rng_state` saved (missing parts are left alone)."""
    if not state:
        return
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


def default_threads(world_size: int) -> int:
    """Intra-op threads per process: the cores shared out over the processes (at least 1)."""
    return resolve_threads(None, world_size)


def memory_text(device: torch.device) -> str:
    """GPU memory reserved, or this process's peak resident memory on CPU."""
    if device.type == "cuda":
        return f"{torch.cuda.memory_reserved(device) / 1e9:.2f}G gpu"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f}G rss"  # ru_maxrss is KiB on Linux


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for the device, or a no-op for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def transfer_weights(model: nn.Module, state: dict[str, Tensor]) -> tuple[int, list[str]]:
    """Copy tensors of `state` whose names and shapes fit `model`; returns (copied, skipped names)."""
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(fits))
    model.load_state_dict(fits, strict=False)
    return len(fits), skipped


def freeze_rows(model: nn.Module, n: int) -> int:
    """Stop gradients in the first n rows of the graph; returns the number of frozen tensors."""
    layers = model.layers  # type: ignore[attr-defined]
    if n > len(layers) - 1:
        raise UserError(f"--freeze {n}: the model has {len(layers)} rows and the last (Detect) must train; use < {len(layers)}")
    frozen = 0
    for layer in list(layers)[:n]:
        for p in layer.parameters():
            p.requires_grad_(False)
            frozen += 1
    return frozen


def find_last_checkpoint(resume: str | Path | None, project: str | Path = "runs/train") -> Path:
    """The last.pt to resume: a run folder, a .pt path, or (None/'') the newest under project/*/weights."""
    if resume in (None, "", True, "True"):
        candidates = sorted(Path(project).glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise UserError(f"--resume: no runs found under {project}/*/weights/last.pt; pass the run folder or last.pt")
        return candidates[-1]
    path = Path(str(resume))
    for candidate in (path, path / "weights" / "last.pt", path / "last.pt"):
        if candidate.is_file():
            return candidate
    raise UserError(f"--resume {resume}: no checkpoint there (looked for the file, {path}/weights/last.pt and {path}/last.pt)")


# Settings that may change when resuming (where and how fast it runs, not what it trains).
RESUME_OVERRIDABLE = ("device", "workers", "threads")


def config_for_resume(last: Path, overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """The saved config of the run that wrote `last` (+ device/workers/threads overrides) and its checkpoint."""
    ckpt = load_checkpoint(last)
    if not ckpt.get("config") or ckpt.get("optimizer") is None:
        raise UserError(f"{last} holds no training state (a stripped or best.pt file); resume from the run's last.pt")
    cfg = TrainConfig.from_dict(ckpt["config"], source=f"config saved in {last}")
    extra = {k: v for k, v in (overrides or {}).items() if v is not None}
    ignored = sorted(set(extra) - set(RESUME_OVERRIDABLE))
    if ignored:
        raise UserError(
            f"--resume continues the saved run as it was; these options cannot change now: {', '.join(ignored)}. "
            f"Only {', '.join(RESUME_OVERRIDABLE)} may be given with --resume (or start a new run with --weights {last})."
        )
    return apply_overrides(cfg, extra, "--resume options"), ckpt


# ---------------------------------------------------------------------------------------------
# One epoch
# ---------------------------------------------------------------------------------------------


def _progress(console: Console, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
        console=console, transient=True, disable=not enabled,
    )


def optimizer_step(state: TrainState, clip: float) -> None:
    """Unscale, clip the gradient norm, step (GradScaler skips steps with inf grads), EMA update."""
    state.scaler.unscale_(state.optimizer)
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), max_norm=clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.optimizer.zero_grad(set_to_none=True)
    state.ema.update(state.model)


def train_one_epoch(
    state: TrainState,
    loader: Any,
    epoch: int,
    cfg: TrainConfig,
    *,
    console: Console | None = None,
    show_progress: bool = True,
) -> EpochStats:
    """One pass over `loader` (batches of (uint8 images, targets (M, 6), paths, shapes))."""
    model, device = state.model, state.device
    model.train()
    processes = ddp.world_size()  # images/s counts every process's batch
    nb = len(loader)
    loss_sum = torch.zeros(3, device=device)
    counted = images = skipped = 0
    t_data = t_fwd = t_bwd = 0.0
    start = last_refresh = time.perf_counter()
    console = console or Console(stderr=True)
    with _progress(console, show_progress) as progress:
        task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=nb, info="")
        batches: Iterator = iter(loader)
        for i in range(nb):
            t0 = time.perf_counter()
            imgs, targets, _paths, _shapes = next(batches)
            t1 = time.perf_counter()
            ni = i + nb * epoch  # global batch index (drives warmup and accumulation)
            accumulate = state.warmup.apply(state.optimizer, ni, epoch) or state.accumulate
            x = imgs.to(device, non_blocking=True, memory_format=state.memory_format).float().div_(255.0)  # uint8 -> 0..1
            with autocast_context(device, state.autocast_dtype):
                preds = model(x)
            loss, items = state.loss_fn(preds, targets.to(device, non_blocking=True))
            t2 = time.perf_counter()
            # Every process must agree, or DDP's gradient all-reduce would wait forever on the skipper.
            if not ddp.all_true(bool(torch.isfinite(loss)), device):
                skipped += 1
                state.nonfinite_steps += 1
                state.optimizer.zero_grad(set_to_none=True)
                if state.nonfinite_steps > cfg.max_nonfinite:
                    raise UserError(
                        f"training diverged: {state.nonfinite_steps} batches had a non-finite loss (last in epoch "
                        f"{epoch + 1}, batch {i + 1}). Lower --lr0 (e.g. by 10x), check the labels with "
                        "`mnv3det data check`, or on CPU drop --cpu-bf16."
                    )
                continue
            step_now = ni - state.last_opt_step >= accumulate
            # Skip DDP's gradient all-reduce on batches that only accumulate.
            sync = contextlib.nullcontext() if step_now or not hasattr(model, "no_sync") else model.no_sync()
            with sync:
                # DDP averages gradients over processes; x world size keeps them those of the whole batch.
                state.scaler.scale(loss * processes).backward()
            if step_now:
                optimizer_step(state, cfg.grad_clip)
                state.last_opt_step = ni
            t3 = time.perf_counter()
            loss_sum += items
            counted += 1
            images += x.shape[0] * processes
            t_data, t_fwd, t_bwd = t_data + t1 - t0, t_fwd + t2 - t1, t_bwd + t3 - t2
            now = time.perf_counter()
            if show_progress and (now - last_refresh > 0.5 or i == nb - 1):  # reading losses syncs a GPU
                mean = (loss_sum / counted).tolist()
                info = " ".join(f"{n} {v:.4f}" for n, v in zip(LOSS_NAMES, mean))
                rate = images / max(now - start, 1e-9)
                progress.update(task, completed=i + 1, info=f"{info} | {rate:.1f} img/s | {memory_text(device)}")
                last_refresh = now
            elif show_progress:
                progress.update(task, completed=i + 1)
    losses = (ddp.reduce_mean(loss_sum / max(counted, 1))).tolist()
    return EpochStats(losses, images, nb, time.perf_counter() - start, skipped, t_data, t_fwd, t_bwd)


# ---------------------------------------------------------------------------------------------
# Building the pieces
# ---------------------------------------------------------------------------------------------


def build_training_model(cfg: TrainConfig, names: list[str], log: Console) -> nn.Module:
    """Model from the recipe with nc from the data; backbone weights, --weights transfer and freezing applied."""
    from mnv3det.models import build_model, load_backbone_weights

    model = build_model(cfg.recipe, nc=len(names))
    model.names = list(names)
    if cfg.backbone_weights:
        report = load_backbone_weights(model, cfg.backbone_weights)
        log.print(f"backbone weights: {report.summary()}")
    if cfg.weights:
        ckpt = load_checkpoint(cfg.weights)
        copied, skipped = transfer_weights(model, ckpt["model"])
        if copied == 0:
            raise UserError(f"--weights {cfg.weights}: no tensor fits this model ({cfg.recipe}); is it the same architecture?")
        shown = ", ".join(skipped[:6]) + (" ..." if len(skipped) > 6 else "")
        log.print(
            f"weights: {copied}/{copied + len(skipped)} tensors loaded from {cfg.weights}"
            + (f"; skipped {len(skipped)} that do not fit (e.g. a different number of classes): {shown}" if skipped else "")
        )
    if cfg.freeze:
        n = freeze_rows(model, cfg.freeze)
        log.print(f"freeze: rows 0..{cfg.freeze - 1} frozen ({n} tensors)")
    return model


def build_state(cfg: TrainConfig, model: nn.Module, device: torch.device, nb: int, start_epoch: int,
                 info: ddp.DistInfo, ckpt: dict[str, Any] | None) -> TrainState:
    """Optimizer, schedule, scaler, EMA, loss and DDP wrapper for `model` (already on device)."""
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
    loss_fn = YoloLoss.from_config(model.detect, model.nc, cfg).to(device)  # BCE pos_weight buffers
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    state = TrainState(model, ema, optimizer, scheduler, scaler, loss_fn, warmup, accumulate, device, dtype, memory_format)
    if ckpt is not None:  # --resume: restore the training state
        extra = ckpt.get("resume") or {}
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        ema.module.load_state_dict(ckpt["model"])
        ema.updates = int(ckpt.get("ema_updates") or 0)
        scheduler.last_epoch = start_epoch  # as after the saved epoch's step(); the next step() sets lf(start_epoch + 1)
        state.best_fitness = ckpt.get("best_fitness")
        state.best_epoch = int(extra.get("best_epoch", -1))
        state.last_opt_step = int(extra.get("last_opt_step", -1))
        state.nonfinite_steps = int(extra.get("nonfinite_steps", 0))
    if info.enabled:
        if cfg.sync_bn and device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif cfg.sync_bn and info.is_main:
            Console(stderr=True).print("[yellow]--sync-bn needs GPUs; CPU processes keep per-process BatchNorm[/]")
        state.model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return state


def make_checkpoint(state: TrainState, cfg: TrainConfig, spec: Any, epoch: int, *, finished: bool,
                    stop_reason: str = "") -> dict[str, Any]:
    """The last.pt dict: EMA weights in `model`, the raw weights and counters under `resume`."""
    net = state.net
    cpu_state = lambda m: {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()  # noqa: E731
                           for k, v in m.state_dict().items()}
    return {
        "recipe": net.recipe,
        "nc": net.nc,
        "names": list(net.names),
        "model": cpu_state(state.ema.module),
        "epoch": epoch,
        "best_fitness": state.best_fitness,
        "optimizer": state.optimizer.state_dict(),
        "scaler": state.scaler.state_dict() if state.scaler.is_enabled() else None,
        "ema_updates": state.ema.updates,
        "rng": rng_state(),
        "config": cfg.to_dict(),
        "data": {
            "names": list(spec.names),
            "category_ids": [int(c) for c in spec.category_ids],
            "format": str(spec.format),
            "source": str(spec.source),
        },
        "resume": {  # training-only extras; absent from best.pt
            "train_model": cpu_state(net),
            "best_epoch": state.best_epoch,
            "last_opt_step": state.last_opt_step,
            "nonfinite_steps": state.nonfinite_steps,
            "finished": finished,
            "stop_reason": stop_reason,
        },
    }


# ---------------------------------------------------------------------------------------------
# results.csv, tensorboard
# ---------------------------------------------------------------------------------------------

CSV_FIELDS = [
    "epoch", "train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
    "metrics/mAP50", "metrics/mAP50-95", "fitness", "lr/bias", "lr/decay", "lr/norm", "images_per_s", "epoch_s",
    "skipped_steps",
]


def append_results(path: Path, row: dict[str, Any]) -> None:
    """Append one epoch's row to results.csv (header on first write)."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})


def _tensorboard(run_dir: Path):
    """A SummaryWriter when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir))


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------


def _records(spec: Any, split: str, cap: int | None, required: bool) -> list[Any]:
    """The first `cap` records of `split`; an absent optional split gives []."""
    if not required and split not in spec.splits:
        return []
    records = list(spec.records(split))
    return records[:cap] if cap else records


def _set_epoch(loader: Any, epoch: int, seed: int) -> None:
    """Shuffle order as a function of (seed, epoch), so a resumed run sees the same order as an unbroken one."""
    sampler = getattr(loader, "sampler", None)
    if sampler is not None and hasattr(sampler, "set_epoch"):  # DistributedSampler
        sampler.set_epoch(epoch)
    elif getattr(loader, "generator", None) is not None:  # RandomSampler draws from the loader's generator
        loader.generator.manual_seed(seed * 1000 + epoch)


@dataclass
class RunContext:
    """What the epoch loop needs besides the TrainState: where to write and what to validate on."""

    cfg: TrainConfig
    run_dir: Path
    spec: Any
    val_records: list[Any]
    device: torch.device
    log: Console  # rank 0's console (end_epoch runs on rank 0 only)
    writer: Any = None  # tensorboard SummaryWriter or None
    val_loader: Any = None  # built once, reused every epoch (no new workers per validation)

    @property
    def last(self) -> Path:
        return self.run_dir / "weights" / "last.pt"

    @property
    def best(self) -> Path:
        return self.run_dir / "weights" / "best.pt"


def open_run(cfg: TrainConfig, resume: str | Path | None) -> tuple[Path, int, dict[str, Any] | None]:
    """(run folder, first epoch, checkpoint or None): a new runs/train/expN, or the folder of a last.pt to resume."""
    from mnv3det.core.runs import increment_path

    if resume is None:
        return increment_path(Path(cfg.project), cfg.name, cfg.exist_ok), 0, None
    last = Path(resume)
    ckpt = load_checkpoint(last)
    extra = ckpt.get("resume") or {}
    if extra.get("finished"):
        raise UserError(
            f"{last}: this run already finished ({extra.get('stop_reason') or 'all epochs done'}, epoch "
            f"{ckpt['epoch'] + 1}/{cfg.epochs}); nothing to resume. To train further, start a new run with "
            f"--weights {last} --epochs N."
        )
    return last.parent.parent, int(ckpt["epoch"]) + 1, ckpt


def trim_results(path: Path, first_epoch: int) -> None:
    """Drop results.csv rows from `first_epoch` on (a run killed between writing its row and last.pt)."""
    if not path.exists():
        return
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < first_epoch]
    path.unlink()
    for row in rows:
        append_results(path, row)


def end_epoch(state: TrainState, run: RunContext, epoch: int, stats: EpochStats,
              lrs: dict[str, float]) -> tuple[dict[str, Any], str]:
    """Rank 0 after an epoch: validate, track the best, results.csv, last.pt/best.pt, summary line.

    Returns (results row, stop reason or "").
    """
    cfg = run.cfg
    final = epoch + 1 == cfg.epochs
    result = None
    if run.val_records and ((epoch + 1) % cfg.val_interval == 0 or final):
        result = _validate(state, run, cfg)
    improved = False
    if result is not None and (state.best_fitness is None or float(result.fitness) > state.best_fitness):
        state.best_fitness, state.best_epoch, improved = float(result.fitness), epoch, True
    elif not run.val_records:  # nothing to rank by: best.pt follows last.pt
        state.best_epoch, improved = epoch, True
    stop_reason = ""
    if cfg.patience and state.best_epoch >= 0 and epoch - state.best_epoch >= cfg.patience and not final:
        stop_reason = f"early stop: no improvement for {cfg.patience} epochs (best epoch {state.best_epoch + 1})"
    row = _results_row(epoch, stats, result, lrs)
    append_results(run.run_dir / "results.csv", row)  # before last.pt: a resume trims rows it will redo
    ck = make_checkpoint(state, cfg, run.spec, epoch, finished=final or bool(stop_reason),
                         stop_reason=stop_reason or ("all epochs done" if final else ""))
    save_checkpoint(ck, run.last)
    if improved:
        save_checkpoint({**strip_for_inference(ck), "resume": None}, run.best)
    if run.writer is not None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not math.isnan(value):
                run.writer.add_scalar(key, value, epoch)
    run.log.print(_summary_line(epoch, cfg.epochs, stats, result, state))
    return row, stop_reason


def _describe_setup(run: RunContext, state: TrainState, n_train: int, nb: int, per_rank: int,
                    info: ddp.DistInfo) -> str:
    precision = {torch.float16: "fp16 AMP", torch.bfloat16: "bf16 autocast", None: "fp32"}[state.autocast_dtype]
    return (
        f"{n_train} train / {len(run.val_records)} val images, {nb} batches of {per_rank}"
        f"{f' x {info.world_size} processes' if info.enabled else ''}, optimizer step every {state.accumulate} "
        f"batch(es) (nominal batch {run.cfg.nbs}), warmup {state.warmup.iters} batches, {run.device}, "
        f"{torch.get_num_threads()} threads, {precision}"
        + ("" if run.writer else "; tensorboard not installed, logging to results.csv")
    )


def fit(cfg: TrainConfig, *, resume: str | Path | None = None, console: Console | None = None,
        show_progress: bool = True) -> TrainResult:
    """Train `cfg` (or continue the run whose last.pt is `resume`, with `cfg` from `config_for_resume`)."""
    from mnv3det.data import create_dataloader, dataset_box_sizes, load_data
    from mnv3det.core.device import select_device

    console = console or Console(stderr=True)
    device = select_device(cfg.device)
    info = ddp.init_distributed(device)
    device = ddp.ddp_device(device, info)
    log = console if info.is_main else Console(quiet=True)
    if cfg.batch % info.world_size:
        raise UserError(f"--batch {cfg.batch} must be divisible by the number of processes ({info.world_size})")
    threads_before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or default_threads(info.world_size))
    else:
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cudnn.deterministic = cfg.deterministic
    run_dir, start_epoch, ckpt = open_run(cfg, resume)
    seed_everything(cfg.seed + info.rank)
    try:
        if info.is_main:
            (run_dir / "weights").mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
            log.print(config_table(cfg, title=f"training config ({run_dir})"))
            if ckpt is not None:
                log.print(f"resuming {run_dir} from epoch {start_epoch + 1}/{cfg.epochs}")
                trim_results(run_dir / "results.csv", start_epoch)
        spec = load_data(cfg.data)
        train_records = _records(spec, cfg.train_split, cfg.max_images, required=True)
        val_records = _records(spec, cfg.val_split, cfg.max_images, required=False)
        if not val_records:
            log.print(f"[yellow]no '{cfg.val_split}' split: training without validation; best.pt follows last.pt[/]")

        model = build_training_model(cfg, list(spec.names), log) if ckpt is None else _model_from_checkpoint(ckpt)
        if ckpt is None and cfg.autoanchor and info.is_main:  # DDP copies rank 0's anchors to the others
            from mnv3det.train.anchors import check_anchors

            report = check_anchors(model, dataset_box_sizes(train_records, cfg.imgsz), thr=cfg.anchor_t, seed=cfg.seed)
            log.print(report.message)
        model.to(device)
        per_rank = cfg.batch // info.world_size
        loader = create_dataloader(
            train_records, imgsz=cfg.imgsz, batch_size=per_rank, augment=True, hyp=cfg.augment_hyp(),
            stride=int(model.stride.max()), workers=cfg.workers, shuffle=True, cache=cfg.cache,
            seed=cfg.seed, distributed=info.enabled,  # one seed: DistributedSampler shards must agree
        )
        state = build_state(cfg, model, device, len(loader), start_epoch, info, ckpt)
        if ckpt is not None and info.is_main:
            set_rng_state(ckpt.get("rng"))
        if info.is_main and cfg.plots and ckpt is None:
            _plot_labels(train_records, list(spec.names), run_dir / "labels.png")
        run = RunContext(cfg, run_dir, spec, val_records, device, log, _tensorboard(run_dir) if info.is_main else None)
        if info.is_main and val_records:
            from mnv3det.evaluate.evaluator import make_eval_loader

            run.val_loader = make_eval_loader(val_records, imgsz=cfg.imgsz, batch_size=cfg.batch * 2,
                                              stride=int(model.stride.max()), workers=cfg.workers)
        log.print(_describe_setup(run, state, len(train_records), len(loader), per_rank, info))

        close_at = cfg.epochs - cfg.close_mosaic if cfg.close_mosaic and cfg.mosaic > 0 else None
        history: list[dict[str, Any]] = []
        stop_reason = ""
        epoch = start_epoch - 1
        for epoch in range(start_epoch, cfg.epochs):
            if close_at is not None and epoch == max(close_at, start_epoch):
                loader.dataset.set_mosaic(False)  # a shared flag: running workers see it too
                log.print(f"mosaic off for the last {cfg.epochs - epoch} epoch(s)")
            _set_epoch(loader, epoch, cfg.seed)
            stats = train_one_epoch(state, loader, epoch, cfg, console=console, show_progress=show_progress and info.is_main)
            lrs = {g.get("group", str(i)): g["lr"] for i, g in enumerate(state.optimizer.param_groups)}
            state.scheduler.step()
            if info.is_main:
                row, stop_reason = end_epoch(state, run, epoch, stats, lrs)
                history.append(row)
            if ddp.broadcast_flag(bool(stop_reason), device):
                break
        if info.is_main:
            _finish(run, state, epoch, stop_reason)
        ddp.barrier()  # non-main ranks wait for rank 0's last save (skipped on errors: it would hang)
        return TrainResult(run_dir, run.last, run.best if run.best.exists() else None, epoch + 1,
                           state.best_fitness, stop_reason or "all epochs done", history)
    finally:
        ddp.cleanup()
        torch.set_num_threads(threads_before)


def _finish(run: RunContext, state: TrainState, epoch: int, stop_reason: str) -> None:
    """Rank 0 at the end: results plot, close tensorboard, say where things are."""
    if stop_reason:
        run.log.print(f"[yellow]{stop_reason}[/]")
    if run.cfg.plots and (run.run_dir / "results.csv").exists():
        from mnv3det.train.plots import plot_results

        plot_results(run.run_dir / "results.csv")
    if run.writer is not None:
        run.writer.close()
    best = (f", best fitness {state.best_fitness:.4f} (epoch {state.best_epoch + 1})"
            if state.best_fitness is not None else "")
    run.log.print(f"done: {epoch + 1} epochs{best}; weights in {run.last.parent} "
                  f"(evaluate with: mnv3det val --weights {run.best})")


def _model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """The training model of a last.pt (raw weights; the EMA is restored separately)."""
    from mnv3det.models import build_model

    model = build_model(ckpt["recipe"], nc=int(ckpt["nc"]))
    model.load_state_dict((ckpt.get("resume") or {}).get("train_model") or ckpt["model"])
    model.names = list(ckpt.get("names") or [str(i) for i in range(int(ckpt["nc"]))])
    cfg = ckpt["config"]
    if cfg.get("freeze"):
        freeze_rows(model, int(cfg["freeze"]))
    return model


def _validate(state: TrainState, run: RunContext, cfg: TrainConfig):
    """Fast mAP of the EMA model on the validation records, over the run's reusable val loader."""
    from mnv3det.evaluate.evaluator import evaluate

    ema_model = state.ema.module
    ema_model.names = list(state.net.names)
    return evaluate(ema_model, run.val_records, run.spec, imgsz=cfg.imgsz, batch_size=cfg.batch * 2,
                    device=run.device, coco=False, progress=False, workers=cfg.workers, loader=run.val_loader)


def _results_row(epoch: int, stats: EpochStats, result: Any, lrs: dict[str, float]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "epoch": epoch,
        "train/box_loss": round(stats.losses[0], 6),
        "train/obj_loss": round(stats.losses[1], 6),
        "train/cls_loss": round(stats.losses[2], 6),
        "images_per_s": round(stats.images_per_s, 2),
        "epoch_s": round(stats.seconds, 2),
        "skipped_steps": stats.skipped,
    }
    for group, lr in lrs.items():
        row[f"lr/{group}"] = round(lr, 8)
    if result is not None:
        row.update({
            "metrics/precision": round(float(result.precision), 5),
            "metrics/recall": round(float(result.recall), 5),
            "metrics/mAP50": round(float(result.map50), 5),
            "metrics/mAP50-95": round(float(result.map), 5),
            "fitness": round(float(result.fitness), 5),
        })
    return row


def _summary_line(epoch: int, epochs: int, stats: EpochStats, result: Any, state: TrainState) -> str:
    losses = " ".join(f"{n} {v:.4f}" for n, v in zip(LOSS_NAMES, stats.losses))
    total = max(stats.data_s + stats.forward_s + stats.backward_s, 1e-9)
    split = (f"data {100 * stats.data_s / total:.0f}% fwd {100 * stats.forward_s / total:.0f}% "
             f"bwd {100 * stats.backward_s / total:.0f}%")
    metrics = (f" | P {result.precision:.3f} R {result.recall:.3f} mAP50 {result.map50:.4f} "
               f"mAP50-95 {result.map:.4f}") if result is not None else ""
    skipped = f" | [red]{stats.skipped} non-finite batches skipped[/]" if stats.skipped else ""
    return (f"epoch {epoch + 1}/{epochs}: {losses} | {stats.images_per_s:.1f} img/s ({split}) | "
            f"{memory_text(state.device)}{metrics}{skipped}")


def _plot_labels(records: list[Any], names: list[str], out: Path) -> None:
    from mnv3det.train.plots import plot_labels

    classes, wh = [], []
    for r in records:
        keep = ~np.asarray(r.crowd, bool)
        classes.append(np.asarray(r.classes)[keep])
        boxes = np.asarray(r.boxes, np.float32)[keep].reshape(-1, 4)
        wh.append((boxes[:, 2:] - boxes[:, :2]) / np.array([r.width, r.height], np.float32))
    plot_labels(classes, wh, names, out)
