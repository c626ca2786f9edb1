"""A whole training run: `fit(cfg)` (or `fit(cfg, resume=last.pt)`) -> TrainResult.

    from mnv3det.train.config import TrainConfig
    from mnv3det.train.trainer import fit
    result = fit(TrainConfig(recipe="mnv3-small", epochs=30, imgsz=416, batch=16))

Order: check and build everything (data, model, loader, optimizer; nothing is written), then claim
the run folder (rank 0), write config.yaml and print the config table, then the epochs. After each
epoch (or every N) rank 0 validates the EMA model with the fast mAP and writes results.csv, last.pt
(every epoch) and best.pt (best fitness = 0.1 mAP50 + 0.9 mAP50-95); both hold the EMA weights.
Under torchrun every process trains on its shard. A kill costs at most the epoch in progress.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch
from rich.console import Console

from mnv3det.core.console import make_console
from mnv3det.core.cpu_share import ThreadGovernor, adaptive_governor, adapts
from mnv3det.core.checkpoint import Checkpoint, DataInfo, nonfinite_weights, remove_stale_temporaries, save_checkpoint
from mnv3det.core.outputs import RunFiles
from mnv3det.core.runs import claim_run_dir, increment_path, run_lock
from mnv3det.core.imgsz import check_imgsz
from mnv3det.errors import UserError
from mnv3det.train import distributed as ddp
from mnv3det.train.config import TrainConfig, config_table, save_config, validate
from mnv3det.train.loop import BatchHook, EpochStats, train_one_epoch
from mnv3det.train.progress import Deferred, summary_line
from mnv3det.train.results import append_results, log_tensorboard, open_tensorboard, results_row, trim_results
from mnv3det.train.resume import check_same_data, repair_best, resume_checkpoint, resume_run_dir
from mnv3det.train.setup import build_training_model, default_threads, model_from_checkpoint, resolve_pretrained
from mnv3det.train.state import TrainState, build_state, make_checkpoint, restore_state, seed_everything, set_rng_state


@dataclass
class TrainResult:
    """What `fit` produced."""

    run_dir: Path
    last: Path
    best: Path | None
    epochs_done: int  # epochs finished in total (including those before a resume)
    best_fitness: float | None
    stop_reason: str
    history: list[dict[str, Any]] = field(default_factory=list)  # results.csv's row per epoch run here ("epoch" from 1, as the log)
    final_eval: Any = None  # EvalResult of best.pt on val with pycocotools (the closing line); None without val

    def to_json(self, indent: int | None = None) -> str:
        """Where the run is, how it ended, each epoch's row and the final pycocotools result, as json."""
        from mnv3det.core.tables import to_json

        payload = {k: getattr(self, k) for k in ("run_dir", "last", "best", "epochs_done", "best_fitness",
                                                 "stop_reason", "history")}
        payload["final_eval"] = self.final_eval.as_dict() if self.final_eval is not None else None
        return to_json(payload, indent)

    def to_df(self) -> Any:
        """`history` (results.csv's rows, epoch from 1) as a pandas DataFrame."""
        from mnv3det.core.tables import to_dataframe
        from mnv3det.train.results import CSV_FIELDS

        return to_dataframe(self.history, CSV_FIELDS, "TrainResult")


class GeneratedTrainSet(Protocol):
    """A training set made on the fly (pretraining) that stands in for the data's train split.

    The data yaml (cfg.data) then only gives the class names and the validation split."""

    def loader(self, batch_size: int, workers: int) -> Any:
        """Batches like create_dataloader's; `loader.sampler.set_epoch(epoch)` picks the epoch's samples."""
        ...

    def describe(self) -> str:
        """What one epoch is, for the start-of-run line (e.g. "1024 generated scenes per epoch")."""
        ...

    def provenance(self, epoch: int) -> dict[str, Any]:
        """What a checkpoint after `epoch` records about how its weights were made."""
        ...


@dataclass
class Prepared:
    """Everything built and checked before the run folder exists."""

    spec: Any
    train_records: list[Any]
    val_records: list[Any]
    loader: Any
    state: TrainState
    val_loader: Any  # built once, reused every epoch (no new workers per validation); None on ranks > 0
    notes: Deferred  # set-up messages, printed after the config table
    data: DataInfo  # what the run trains on (names, nc, each split's file list), recorded in every checkpoint
    generated: GeneratedTrainSet | None = None  # pretraining: the train split is made on the fly


@dataclass
class RunContext:
    """Where a started run writes, and what end_epoch needs besides the TrainState."""

    cfg: TrainConfig
    run_dir: Path
    parts: Prepared
    log: Console  # rank 0's console (end_epoch runs on rank 0 only)
    writer: Any = None  # tensorboard SummaryWriter or None
    saved_epoch: int = -1  # the epoch last.pt holds (-1: none yet)
    started: float = field(default_factory=time.monotonic)  # when this sitting's first epoch began (for the ETA)
    epochs_run: int = 0  # epochs finished in this sitting
    poll: Callable[[], object] | None = None  # the thread governor's poll, for the closing evaluation too

    @property
    def last(self) -> Path:
        return self.run_dir / "weights" / "last.pt"

    @property
    def best(self) -> Path:
        return self.run_dir / "weights" / "best.pt"


def _records(spec: Any, split: str, cap: int | None, required: bool) -> list[Any]:
    """The first `cap` records of `split`; an absent optional split gives []."""
    if not required and split not in spec.splits:
        return []
    records = list(spec.records(split))
    return records[:cap] if cap else records


def _set_epoch(loader: Any, epoch: int, seed: int) -> None:
    """Shuffle order as a function of (seed, epoch), and each sample's augmentation as a function of (seed, epoch,
    index) (`DetectionDataset.set_epoch`), so a run resumed at an epoch's start equals the unbroken one."""
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
    sampler = getattr(loader, "sampler", None)
    if sampler is not None and hasattr(sampler, "set_epoch"):  # DistributedSampler
        sampler.set_epoch(epoch)
    elif getattr(loader, "generator", None) is not None:  # RandomSampler draws from the loader's generator
        loader.generator.manual_seed(seed * 1000 + epoch)


def _data(cfg: TrainConfig, notes: Deferred, info: ddp.DistInfo,
          generated: GeneratedTrainSet | None) -> tuple[Any, list[Any], list[Any]]:
    """(spec, train records, val records) of the run; the set-up notes say where each split is read from and
    warn when validation images are training images too (rank 0)."""
    from mnv3det.data import load_data
    from mnv3det.data.leakage import leakage_warning
    from mnv3det.data.report import safe, source_lines

    spec = load_data(cfg.data)
    used = [s for s in ([] if generated else [cfg.train_split]) + [cfg.val_split] if s in spec.splits]
    for line in source_lines(spec, used):
        notes.print(line, highlight=False, soft_wrap=True)
    train_records = [] if generated else _records(spec, cfg.train_split, cfg.max_images, required=True)
    val_records = _records(spec, cfg.val_split, cfg.max_images, required=False)
    if not val_records:
        notes.print(f"[yellow]no '{safe(cfg.val_split)}' split: training without validation; best.pt follows last.pt[/]")
    leak = leakage_warning(cfg.val_split, train_records, val_records) if info.is_main else None
    if leak:
        notes.print(f"[yellow]warning:[/] {safe(leak, 2000)}", highlight=False)
    return spec, train_records, val_records


def prepare(cfg: TrainConfig, ckpt: Checkpoint | None, source: str, device: torch.device, info: ddp.DistInfo,
            generated: GeneratedTrainSet | None = None) -> Prepared:
    """Data, model, loaders and training state; raises UserError before anything is written."""
    from mnv3det.data import create_dataloader, dataset_box_sizes
    from mnv3det.data.fingerprint import data_info

    notes = Deferred()
    spec, train_records, val_records = _data(cfg, notes, info, generated)
    data = data_info(spec, {cfg.train_split: train_records, cfg.val_split: val_records})
    if ckpt is not None:
        check_same_data(ckpt, data, source)  # before anything is built: resuming on other data trains nonsense
    model = build_training_model(cfg, list(spec.names), notes) if ckpt is None else model_from_checkpoint(ckpt, cfg, source)
    if ckpt is None and cfg.autoanchor and train_records and info.is_main:  # DDP copies rank 0's anchors to the others
        from mnv3det.train.anchors import check_anchors

        notes.print(check_anchors(model, dataset_box_sizes(train_records, cfg.imgsz), thr=cfg.anchor_t,
                                  seed=cfg.seed).message)
    model.to(device)
    stride = int(model.stride.max())
    check_imgsz(cfg.imgsz, stride)  # the built model's own stride (TrainConfig could only check P5/32)
    if generated is not None:
        if info.enabled:
            raise UserError("pretraining on generated scenes runs in one process; start it without torchrun")
        loader = generated.loader(cfg.batch, cfg.workers)
    else:
        loader = create_dataloader(
            train_records, imgsz=cfg.imgsz, batch_size=cfg.batch // info.world_size, augment=True,
            hyp=cfg.augment_hyp(), stride=stride, workers=cfg.workers, shuffle=True, cache=cfg.cache,
            seed=cfg.seed, distributed=info.enabled,  # one seed: DistributedSampler shards must agree
        )
    state = build_state(cfg, model, device, len(loader), info)
    if ckpt is not None:
        restore_state(state, ckpt, ckpt.epoch + 1, source)
        if info.is_main:
            assert ckpt.resume is not None
            set_rng_state(ckpt.resume.rng)
    val_loader = None
    if info.is_main and val_records:
        from mnv3det.evaluate.evaluator import make_eval_loader

        val_loader = make_eval_loader(val_records, imgsz=cfg.imgsz, batch_size=cfg.batch * 2, stride=stride,
                                      workers=cfg.workers)
    return Prepared(spec, train_records, val_records, loader, state, val_loader, notes, data, generated)


RUN_FILES = ("config.yaml", "results.csv", "weights/last.pt", "weights/best.pt")  # a new run (re)writes these


@contextlib.contextmanager
def open_run_dir(cfg: TrainConfig, resume_dir: Path | None) -> Iterator[Path]:
    """Claim (new run) or lock (resume) the run folder for the block; stale temporaries removed."""
    run_dir = resume_dir or claim_run_dir(Path(cfg.project), cfg.name, cfg.exist_ok)
    with run_lock(run_dir):
        weights = run_dir / "weights"
        weights.mkdir(exist_ok=True)
        remove_stale_temporaries(weights)
        if resume_dir is None:  # --exist-ok into an old run: a fresh log and no weights of the old run
            files = RunFiles(run_dir)
            files.remove_earlier(*RUN_FILES)  # only what an mnv3det run recorded writing there
            for name in RUN_FILES:  # a file of these names that no run wrote is the user's: refused, never replaced
                files.claim(run_dir / name)
        yield run_dir


def end_epoch(state: TrainState, run: RunContext, epoch: int, stats: EpochStats,
              lrs: dict[str, float], between_batches: Callable[[], object] | None = None) -> tuple[dict[str, Any], str]:
    """Rank 0 after an epoch: validate, track the best, results.csv, last.pt then best.pt, summary line.

    Returns (results row, stop reason or ""). between_batches: passed to validation (the thread governor's poll).
    """
    cfg, parts = run.cfg, run.parts
    _refuse_nonfinite(state, run, epoch)  # before validating or saving: such weights never become last.pt or best.pt
    final = epoch + 1 == cfg.epochs
    result, val_losses = None, None
    if parts.val_records and ((epoch + 1) % cfg.val_interval == 0 or final):
        result, val_losses = _validate(state, run, between_batches)
    improved = False
    if result is not None and (state.best_fitness is None or float(result.fitness) > state.best_fitness):
        state.best_fitness, state.best_epoch, improved = float(result.fitness), epoch, True
    elif not parts.val_records:  # nothing to rank by: best.pt follows last.pt
        state.best_epoch, improved = epoch, True
    stop_reason = ""
    if cfg.patience and state.best_epoch >= 0 and epoch - state.best_epoch >= cfg.patience and not final:
        stop_reason = f"early stop: no improvement for {cfg.patience} epochs (best epoch {state.best_epoch + 1})"
    row = results_row(epoch, stats, result, lrs, val_losses)
    append_results(run.run_dir / "results.csv", row)  # before last.pt: a resume trims rows it will redo
    ck = make_checkpoint(state, cfg, parts.data, epoch, finished=final or bool(stop_reason),
                         stop_reason=stop_reason or ("all epochs done" if final else ""))
    if parts.generated is not None:
        ck.provenance = parts.generated.provenance(epoch)
    save_checkpoint(ck, run.last)  # records best_epoch: a kill before best.pt is repaired on resume
    run.saved_epoch = epoch
    if improved:
        save_checkpoint(ck.for_inference(), run.best)
    log_tensorboard(run.writer, row, epoch)
    run.epochs_run += 1
    eta = (time.monotonic() - run.started) / run.epochs_run * (cfg.epochs - epoch - 1)
    run.log.print(summary_line(epoch, cfg.epochs, stats, result, state.device, eta))
    return row, stop_reason


def _refuse_nonfinite(state: TrainState, run: RunContext, epoch: int) -> None:
    """Stop the run with one line when the EMA weights (what last.pt and best.pt hold) hold NaN or inf: the run
    diverged, and such a best.pt would predict nothing, silently. The files saved so far stay as they are."""
    bad, total, first = nonfinite_weights(state.ema.module.state_dict())
    if not bad:
        return
    kept = (f"{run.last} holds epoch {run.saved_epoch + 1}, best.pt is unchanged" if run.saved_epoch >= 0
            else "no weights were saved")
    raise UserError(f"training diverged in epoch {epoch + 1}/{run.cfg.epochs}: {bad} of {total} weight values are not "
                    f"finite (NaN or inf, e.g. in {first}); {kept}. Lower lr0 (now {run.cfg.lr0:g}), check the labels "
                    "with `mnv3det data check`, or on CPU drop --cpu-bf16")


def _validate(state: TrainState, run: RunContext,
              between_batches: Callable[[], object] | None = None) -> tuple[Any, dict[str, float] | None]:
    """Fast mAP of the EMA model on the validation records, over the run's reusable val loader, and the training
    loss terms ({box, obj | dfl, cls}) on the same batches."""
    from mnv3det.evaluate.config import EvalConfig
    from mnv3det.evaluate.evaluator import evaluate
    from mnv3det.train.val_loss import ValLoss

    cfg = run.cfg
    ema_model = state.ema.module
    ema_model.names = list(state.net.names)
    config = EvalConfig(imgsz=cfg.imgsz, batch=cfg.batch * 2, coco=False, workers=cfg.workers)
    with ValLoss(ema_model.detect, state.loss_fn) as val_loss:
        result = evaluate(ema_model, run.parts.val_records, run.parts.spec, config, device=state.device,
                          progress=False, loader=run.parts.val_loader, between_batches=between_batches,
                          on_targets=val_loss.add)
    return result, val_loss.means()


def _start(run: RunContext, ckpt: Checkpoint | None, info: ddp.DistInfo) -> None:
    """Rank 0, folder claimed: config.yaml, the config table, set-up messages, resume repairs, label plot."""
    cfg, parts, log = run.cfg, run.parts, run.log
    save_config(cfg, run.run_dir / "config.yaml")
    log.print(config_table(cfg, title=f"training config ({run.run_dir})"))
    parts.notes.replay(log)
    if ckpt is not None:
        run.saved_epoch = ckpt.epoch
        log.print(f"resuming {run.run_dir} from epoch {ckpt.epoch + 2}/{cfg.epochs}")
        trim_results(run.run_dir / "results.csv", ckpt.epoch + 1)
        repair_best(run.best, ckpt, log)
    elif cfg.plots and parts.train_records:
        from mnv3det.train.plots import plot_label_records

        plot_label_records(parts.train_records, list(parts.spec.names), run.run_dir / "labels.png")
    run.writer = open_tensorboard(run.run_dir)
    state = parts.state
    precision = {torch.float16: "fp16 AMP", torch.bfloat16: "bf16 autocast", None: "fp32"}[state.autocast_dtype]
    threads = torch.get_num_threads()
    if adapts(cfg.threads, threads, device=state.device, processes=info.world_size):  # one count, and how it moves
        thread_text = f"up to {threads} threads (fewer while other processes use the cores; each change is logged)"
    else:
        thread_text = f"{threads} thread{'s' if threads > 1 else ''}"
    train_set = parts.generated.describe() if parts.generated else f"{len(parts.train_records)} train"
    log.print(
        f"{train_set} / {len(parts.val_records)} val images, {len(parts.loader)} batches of "
        f"{cfg.batch // info.world_size}{f' x {info.world_size} processes' if info.enabled else ''}, optimizer step "
        f"every {state.accumulate} batch(es) (nominal batch {cfg.nbs}), warmup {state.warmup.iters} batches, "
        f"{state.device}, {thread_text}, {precision}"
        + ("" if run.writer else "; tensorboard not installed, logging to results.csv")
    )


def step_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Advance the per-epoch LR schedule. An epoch with fewer batches than one accumulation (a few images, nominal
    batch 64) makes no optimizer step, and torch then warns that the schedule moved first; the schedule is per
    epoch and must move anyway, so that one warning is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before "
                                                  r"`optimizer.step\(\)`")
        scheduler.step()


MAX_THREAD_LINES = 10  # a competitor that comes and goes all run long should not flood the log


def _thread_governor(run: RunContext | None, state: TrainState, cfg: TrainConfig) -> ThreadGovernor | None:
    """On CPU with the thread count left to mnv3det, one process: threads follow the cores other processes leave
    free (core/cpu_share.py); each change gets one log line, up to MAX_THREAD_LINES."""

    current = [torch.get_num_threads()]  # the count the start line named; each line says from what to what

    def tell(threads: int, other_cores: float) -> None:
        before, current[0] = current[0], threads
        if run is None or governor is None or governor.changes > MAX_THREAD_LINES:
            return
        more = " (further changes not shown)" if governor.changes == MAX_THREAD_LINES else ""
        run.log.print(f"CPU threads: {before} -> {threads} (other processes used {other_cores:.1f} of "
                      f"{governor.cores} cores){more}")

    governor = adaptive_governor(cfg.threads, torch.get_num_threads(), device=state.device, processes=ddp.world_size(),
                                 on_change=tell)
    return governor


def _batch_plotter(run: RunContext) -> BatchHook:
    """Saves train_batch{i}.jpg: the augmented batch as the model sees it, with its boxes."""
    from mnv3det.train.plots import plot_train_batch

    names = list(run.parts.spec.names)
    return lambda i, imgs, targets: plot_train_batch(imgs, targets, names, run.run_dir / f"train_batch{i}.jpg")


def run_epochs(run: RunContext | None, parts: Prepared, cfg: TrainConfig, start_epoch: int, console: Console,
               show_progress: bool) -> tuple[int, str, list[dict[str, Any]]]:
    """The epoch loop on every rank (run is None on ranks > 0); returns (last epoch, stop reason, rows)."""
    state, loader = parts.state, parts.loader
    close_at = cfg.epochs - cfg.close_mosaic if cfg.close_mosaic and cfg.mosaic > 0 else None
    history: list[dict[str, Any]] = []
    stop_reason = ""
    epoch = start_epoch - 1
    governor = _thread_governor(run, state, cfg)
    poll = governor.poll if governor is not None else None
    if run is not None:
        run.poll = poll
    for epoch in range(start_epoch, cfg.epochs):
        if close_at is not None and epoch == max(close_at, start_epoch):
            loader.dataset.set_mosaic(False)  # a shared flag: running workers see it too
            if run is not None:
                run.log.print(mosaic_off_line(cfg, epoch))
        _set_epoch(loader, epoch, cfg.seed)
        hook = _batch_plotter(run) if run is not None and cfg.plots and epoch == 0 else None
        stats = train_one_epoch(state, loader, epoch, cfg, console=console, show_progress=show_progress and run is not None,
                                batch_hook=hook, between_batches=poll)
        lrs = {g.get("group", str(i)): g["lr"] for i, g in enumerate(state.optimizer.param_groups)}
        step_scheduler(state.scheduler)
        if run is not None:
            row, stop_reason = end_epoch(state, run, epoch, stats, lrs, between_batches=poll)
            history.append(row)
        if ddp.broadcast_flag(bool(stop_reason), state.device):
            break
    return epoch, stop_reason, history


def mosaic_off_line(cfg: TrainConfig, epoch: int) -> str:
    """What turning mosaic off at `epoch` means for this run: the last N epochs, or all of it when the close-mosaic
    window is as long as the run (a 3-epoch run with close_mosaic 5 never sees a mosaic)."""
    left = cfg.epochs - epoch
    if epoch == 0:
        return (f"mosaic off for the whole run, all {left} epoch(s): close_mosaic is {cfg.close_mosaic} and the run "
                f"has {cfg.epochs}")
    return f"mosaic off for the last {left} epoch(s)"


def fit(cfg: TrainConfig, *, resume: str | Path | None = None, console: Console | None = None,
        show_progress: bool = True, generated: GeneratedTrainSet | None = None) -> TrainResult:
    """Train `cfg` (or continue the run whose last.pt is `resume`, with `cfg` from `config_for_resume`).

    generated: a training set made on the fly (`mnv3det pretrain`) instead of cfg.data's train split."""
    from mnv3det.core.device import select_device

    validate(cfg, "training config")  # a TrainConfig built directly (Python API) gets the checks options get
    console = console or make_console(stderr=True)
    device = select_device(cfg.device)
    info = ddp.init_distributed(device)
    device = ddp.ddp_device(device, info)
    threads_before = torch.get_num_threads()
    try:
        if cfg.batch % info.world_size:
            raise UserError(f"--batch {cfg.batch} must be divisible by the number of processes ({info.world_size})")
        if device.type == "cpu":
            torch.set_num_threads(cfg.threads or default_threads(info.world_size))
        else:
            torch.backends.cudnn.benchmark = not cfg.deterministic
            torch.backends.cudnn.deterministic = cfg.deterministic
        ckpt = resume_checkpoint(Path(resume)) if resume is not None else None
        resume_dir = resume_run_dir(Path(resume), ckpt, cfg.epochs) if ckpt is not None else None
        if ckpt is None:
            cfg = resolve_pretrained(cfg)  # config.yaml and the table say which start was used
        seed_everything(cfg.seed + info.rank)
        parts = prepare(cfg, ckpt, str(resume), device, info, generated)
        start_epoch = ckpt.epoch + 1 if ckpt is not None else 0
        if not info.is_main:  # only rank 0 writes; the others train their shard
            epoch, stop_reason, _ = run_epochs(None, parts, cfg, start_epoch, console, show_progress)
            ddp.barrier()
            guess = resume_dir or increment_path(Path(cfg.project), cfg.name, cfg.exist_ok)
            return TrainResult(guess, guess / "weights" / "last.pt", None, epoch + 1, parts.state.best_fitness,
                               stop_reason or "all epochs done")
        with open_run_dir(cfg, resume_dir) as run_dir:
            run = RunContext(cfg, run_dir, parts, console)
            _start(run, ckpt, info)
            run.started = time.monotonic()
            try:
                epoch, stop_reason, history = run_epochs(run, parts, cfg, start_epoch, console, show_progress)
            except KeyboardInterrupt:
                console.print(_interrupted_line(run, parts.state), highlight=False, soft_wrap=True)
                raise
            final = _finish(run, parts.state, epoch, stop_reason)
        ddp.barrier()  # non-main ranks wait for rank 0's last save (skipped on errors: it would hang)
        best = run.best if run.best.exists() else None
        return TrainResult(run_dir, run.last, best, epoch + 1, parts.state.best_fitness,
                           stop_reason or "all epochs done", history, final)
    finally:
        ddp.cleanup()
        torch.set_num_threads(threads_before)


def _interrupted_line(run: RunContext, state: TrainState) -> str:
    """One line after Ctrl-C: where it stopped, what last.pt holds, how to continue."""
    where = (f"in epoch {state.stopped_at[0] + 1}/{run.cfg.epochs}, batch {state.stopped_at[1] + 1}"
             if state.stopped_at is not None else f"after epoch {run.saved_epoch + 1}/{run.cfg.epochs}")
    if run.saved_epoch < 0:
        return f"interrupted {where}: no epoch finished, nothing saved in {run.run_dir}; start the run again"
    return (f"interrupted {where}; {run.last} holds epoch {run.saved_epoch + 1}/{run.cfg.epochs}; "
            f"continue with: mnv3det train --resume {run.run_dir}")


def _finish(run: RunContext, state: TrainState, epoch: int, stop_reason: str) -> Any:
    """Rank 0 at the end: results plot, close tensorboard, say where things are, then the pycocotools result of
    best.pt on val and the next three commands (train/closing.py). Returns that EvalResult (None without val)."""
    from mnv3det.train.closing import evaluate_best, next_commands, result_line

    if stop_reason:
        run.log.print(f"[yellow]{stop_reason}[/]")
    if run.cfg.plots and (run.run_dir / "results.csv").exists():
        from mnv3det.train.plots import plot_results

        plot_results(run.run_dir / "results.csv")
    if run.writer is not None:
        run.writer.close()
    best = (f", best fitness {state.best_fitness:.4f} (epoch {state.best_epoch + 1})"
            if state.best_fitness is not None else "")
    weights = run.best if run.best.exists() else run.last
    run.log.print(f"done: {epoch + 1} epochs{best}; weights in {run.last.parent}", highlight=False, soft_wrap=True)
    parts, cfg, final = run.parts, run.cfg, None
    if parts.val_records:
        final = evaluate_best(weights, parts.val_records, parts.spec, cfg.imgsz, cfg.batch * 2, cfg.workers,
                              state.device, loader=parts.val_loader, between_batches=run.poll)
        run.log.print(result_line(weights, final, cfg.val_split), highlight=False, soft_wrap=True)
    else:
        run.log.print(f"no '{cfg.val_split}' split: no mAP to report", highlight=False, soft_wrap=True)
    if parts.generated is not None:  # pretraining says its own next step (train --pretrained)
        return final
    records = parts.val_records or parts.train_records
    run.log.print("next:", highlight=False)
    for line in next_commands(weights, cfg.data, Path(records[0].path) if records else None):
        run.log.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    return final


__all__ = ["TrainResult", "fit", "prepare", "end_epoch", "run_epochs", "train_one_epoch"]
