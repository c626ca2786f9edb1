"""`mnv3det pretrain`: train a whole detector (backbone, neck and head) on generated scenes, for a budget.

    result = pretrain(PretrainOptions(recipe="mnv3-small-min", samples=30_000))
    result = pretrain(PretrainOptions(resume="runs/pretrain/exp"))      # after a kill, from its last checkpoint

Formula-driven supervised pretraining (FractalDB, Kataoka et al. 2020; "Learning to See by Looking at Noise",
Baradad et al. 2021), taken to detection: the scenes of `mnv3det.data.synth` have exact boxes, so the neck and
the box/objectness head learn too, which an ImageNet backbone cannot give. Nothing is read from disk but a small
validation set the generator writes once.

A run is an ordinary training run (`trainer.fit`: run folder, config.yaml, results.csv, last.pt/best.pt, EMA,
Ctrl-C and --resume) whose train split is the scene stream, in epochs of `epoch_samples` new scenes; last.pt is
written after every epoch (about a minute or two on a CPU), so a kill loses at most that. Each checkpoint's
`provenance` says how it was made: generator settings, seed, samples seen, wall time, the commit. At the end
`weights/pretrained.pt` holds the EMA weights in fp16 without the training state: the file mnv3det ships.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

import mnv3det
from mnv3det.core.console import make_console
from mnv3det.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mnv3det.data.synth import FAMILIES, SceneConfig
from mnv3det.data.synth.dataset import SceneStream, validation_set
from mnv3det.errors import UserError
from mnv3det.train.config import TrainConfig, apply_overrides, load_hyp
from mnv3det.train.pretrain_options import DEFAULT_SAMPLES, PretrainOptions, parse_duration
from mnv3det.train.trainer import TrainResult, fit

PROVENANCE_KIND = "synthetic-detection-pretraining"
RELEASE_NAME = "pretrained.pt"  # fp16 EMA weights + provenance, written beside last.pt when a run ends
DEFAULT_HYP = "hyp.pretrain"


def code_version() -> str:
    """The commit this package was run from (with '+dirty' for local changes), else its version."""
    root = Path(mnv3det.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                "mnv3det", "recipes"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{commit}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"mnv3det {mnv3det.__version__} (not a git checkout)"


class PretrainStream(SceneStream):
    """The scene stream plus what a checkpoint records about the run (trainer.GeneratedTrainSet)."""

    def __init__(self, scene: SceneConfig, seed: int, per_epoch: int, budget: int, wall_before: float = 0.0,
                 origin: dict[str, Any] | None = None) -> None:
        super().__init__(scene, seed, per_epoch)
        self.budget = budget
        self.wall_before = wall_before  # seconds spent by earlier sittings of a resumed run
        self.started = time.monotonic()
        self.origin = origin or {}  # commit, machine, ... of the sitting that started the run

    def describe(self) -> str:
        n = self.dataset.per_epoch
        return (f"{n} generated scenes per epoch ({len(self.config.names)} classes, {self.budget:,} in all, "
                f"seed {self.dataset.seed})")

    def provenance(self, epoch: int) -> dict[str, Any]:
        return {
            "kind": PROVENANCE_KIND,
            "generator": self.config.to_dict(),
            "seed": self.dataset.seed,
            "epoch_samples": self.dataset.per_epoch,
            "samples_seen": (epoch + 1) * self.dataset.per_epoch,
            "samples_budget": self.budget,
            "wall_s": round(self.wall_before + time.monotonic() - self.started, 1),
            **self.origin,
        }


def _origin(device: str | None, threads: int | None) -> dict[str, Any]:
    return {"commit": code_version(), "torch": str(torch.__version__), "machine": platform.machine(),
            "cpu_threads": threads or torch.get_num_threads(), "device": device or "auto"}


def _scene_config(opts: PretrainOptions, imgsz: int) -> SceneConfig:
    values: dict[str, Any] = {"size": imgsz, "single_class": opts.single_class}
    if opts.families:
        values["families"] = tuple(opts.families)
    if opts.objects:
        values["min_objects"], values["max_objects"] = opts.objects
    scene = SceneConfig(**values)
    problems = scene.problems()
    if problems:
        raise UserError(f"pretrain: {'; '.join(problems)}")
    return scene


def _budget(opts: PretrainOptions, cfg: TrainConfig, scene: SceneConfig, log: Console) -> int:
    """The sample budget: --samples, or --time turned into samples by timing a few real training steps."""
    if opts.samples is not None and opts.time is not None:
        raise UserError("give either --samples or --time, not both")
    if opts.time is None:
        samples = DEFAULT_SAMPLES if opts.samples is None else int(opts.samples)
        if samples < cfg.batch:
            raise UserError(f"--samples {samples}: a budget smaller than one batch ({cfg.batch}) trains nothing")
        return samples
    seconds = parse_duration(opts.time)
    rate = measure_images_per_s(cfg, scene)
    samples = int(seconds * rate * 0.97)  # 3%: validation and checkpoints
    log.print(f"--time {opts.time}: {rate:.1f} images/s measured over a few training steps -> {samples:,} scenes")
    return max(samples, cfg.batch)


def measure_images_per_s(cfg: TrainConfig, scene: SceneConfig, batches: int = 4) -> float:
    """Images per second of real training steps (generation, forward, loss, backward, AdamW) on a throwaway model;
    the second of two short epochs counts (the first pays for worker start-up)."""
    from mnv3det.core.device import select_device
    from mnv3det.models import build_model
    from mnv3det.train import distributed as ddp
    from mnv3det.train.loop import train_one_epoch
    from mnv3det.train.setup import default_threads
    from mnv3det.train.state import build_state

    device = select_device(cfg.device)
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or default_threads(1))
    try:
        model = build_model(cfg.recipe, nc=len(scene.names)).to(device)
        stream = SceneStream(scene, seed=cfg.seed + 99, per_epoch=batches * cfg.batch)
        loader = stream.loader(cfg.batch, cfg.workers)
        trial = dataclasses.replace(cfg, epochs=2, warmup_epochs=0)
        state = build_state(trial, model, device, len(loader), ddp.DistInfo())
        rate = 0.0
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            rate = train_one_epoch(state, loader, epoch, trial, show_progress=False).images_per_s
        return rate
    finally:
        torch.set_num_threads(before)


def _new_run(opts: PretrainOptions, log: Console) -> tuple[TrainConfig, PretrainStream]:
    hyp = opts.hyp or DEFAULT_HYP
    cfg = apply_overrides(TrainConfig(), load_hyp(hyp), f"--hyp {hyp}")
    given = {"recipe": opts.recipe, "imgsz": opts.imgsz, "batch": opts.batch, "seed": opts.seed,
             "workers": opts.workers, "threads": opts.threads, "device": opts.device, "project": opts.project,
             "name": opts.name, "exist_ok": opts.exist_ok, **opts.extra}
    cfg = apply_overrides(cfg, {k: v for k, v in given.items() if v is not None}, "pretrain options")
    from mnv3det.models.recipes import load_recipe

    load_recipe(cfg.recipe)  # an unknown recipe fails here, before the validation scenes are drawn
    if opts.epoch_samples < cfg.batch:
        raise UserError(f"--epoch-samples {opts.epoch_samples} is smaller than --batch {cfg.batch}")
    if opts.val_images < 1:
        raise UserError(f"--val-images {opts.val_images}: at least one validation scene is needed")
    scene = _scene_config(opts, cfg.imgsz)
    per_epoch = opts.epoch_samples // cfg.batch * cfg.batch  # whole batches: every scene is trained on
    budget = _budget(opts, cfg, scene, log)
    epochs = max(1, math.ceil(budget / per_epoch))
    val_every = max(1, epochs // 10)  # ten validations over the run (the synthetic mAP is progress, not a target)
    data = validation_set(scene, cfg.seed, opts.val_images)
    cfg = apply_overrides(cfg, {"data": str(data), "epochs": epochs, "val_interval": val_every,
                                "autoanchor": False, "patience": 0}, "pretrain")
    return cfg, PretrainStream(scene, cfg.seed, per_epoch, epochs * per_epoch, origin=_origin(cfg.device, cfg.threads))


def _resumed_run(opts: PretrainOptions) -> tuple[Path, TrainConfig, PretrainStream]:
    from mnv3det.train.resume import config_for_resume, find_last_checkpoint

    asked = {k: getattr(opts, k) for k in ("recipe", "imgsz", "samples", "time", "batch", "seed", "hyp", "families",
                                            "objects") if getattr(opts, k) is not None}
    if asked or opts.single_class or opts.extra:
        raise UserError(f"--resume continues the saved run as it was; these options cannot change now: "
                        f"{', '.join(sorted(asked) + (['single_class'] if opts.single_class else []) + sorted(opts.extra))}")
    last = find_last_checkpoint(None if opts.resume is True else opts.resume, opts.project)
    cfg, ckpt = config_for_resume(last, {"device": opts.device, "workers": opts.workers, "threads": opts.threads})
    made = ckpt.provenance or {}
    if made.get("kind") != PROVENANCE_KIND:
        raise UserError(f"{last} is not a pretraining run; continue it with `mnv3det train --resume {last}`")
    scene = SceneConfig.from_dict(made["generator"])
    validation_set(scene, int(made["seed"]), opts.val_images)  # re-made if the cache was cleared (same folder)
    stream = PretrainStream(scene, int(made["seed"]), int(made["epoch_samples"]), int(made["samples_budget"]),
                            wall_before=float(made.get("wall_s", 0.0)),
                            origin={k: made[k] for k in ("commit", "torch", "machine", "cpu_threads", "device")
                                    if k in made})
    return last, cfg, stream


def pretrain(opts: PretrainOptions, console: Console | None = None, progress: bool = True) -> TrainResult:
    """Run (or resume) a pretraining run; writes `weights/pretrained.pt` when it ends."""
    console = console or make_console(stderr=True)
    if opts.resume not in (False, None):
        last, cfg, stream = _resumed_run(opts)
        result = fit(cfg, resume=last, console=console, show_progress=progress, generated=stream)
    else:
        cfg, stream = _new_run(opts, console)
        result = fit(cfg, console=console, show_progress=progress, generated=stream)
    released = release_weights(result.last, result.last.parent / RELEASE_NAME)
    console.print(f"pretrained weights: {released} ({released.stat().st_size / 1e6:.1f} MB, fp16); start from them "
                  f"with: mnv3det train --pretrained {released} --data ...", highlight=False, soft_wrap=True)
    return result


def release_weights(last: str | Path, out: str | Path) -> Path:
    """last.pt -> a weights-only checkpoint with fp16 EMA weights and the run's provenance (what mnv3det ships)."""
    ckpt = load_checkpoint(last)
    half = {k: v.half() if v.is_floating_point() else v for k, v in ckpt.model.items()}
    lean = Checkpoint(recipe=ckpt.recipe, nc=ckpt.nc, names=ckpt.names, model=half, epoch=ckpt.epoch,
                      config=ckpt.config, data=ckpt.data, provenance=ckpt.provenance)
    return save_checkpoint(lean, out)


__all__ = ["FAMILIES", "PretrainOptions", "PretrainStream", "measure_images_per_s", "parse_duration", "pretrain",
           "release_weights"]
