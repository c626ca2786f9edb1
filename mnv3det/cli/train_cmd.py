"""`mnv3det train`: train a detector (options map onto `mnv3det.train.config.TrainConfig` fields).

    mnv3det train --backbone small --data data.yaml --epochs 30 --imgsz 416 --batch 16
    mnv3det train --resume                      # continue the newest runs/train/*/weights/last.pt
    torchrun --nproc_per_node 2 -m mnv3det train --device cpu ...   # DDP (gloo on CPU)

Precedence: TrainConfig defaults < --hyp yaml < options given here (an option left out changes nothing).
"""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.console import Console

from mnv3det.cli.app import command


@command("train")
def train_command(
    backbone: Optional[str] = typer.Option(None, "--backbone", help="small or large: the MobileNetV3 recipe to train."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Any model recipe name (mnv3-small, yolov5n, ...) or yaml path."),
    data: Optional[str] = typer.Option(None, "--data", help="Data yaml or dataset folder (default: the built-in demo set)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Number of epochs (default 100)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Total batch size over all processes (default 16)."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Train/val image size, multiple of 32 (default 640)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, 0, cuda:0 (default: GPU when available)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Data loader worker processes per process (default 2)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch CPU threads per process (default: cores / processes)."),
    hyp: Optional[str] = typer.Option(None, "--hyp", help="Yaml of TrainConfig fields (e.g. hyp.small-data, hyp.scratch)."),
    backbone_weights: Optional[str] = typer.Option(None, "--backbone-weights", help="torchvision MobileNet state_dict file for the backbone."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Start from an mnv3det checkpoint (tensors that fit are loaded)."),
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue a killed run: `--resume RUN_DIR|last.pt`, or `--resume` alone for the newest runs/train/*/weights/last.pt.",
    ),
    resume_path: Optional[str] = typer.Argument(
        None, metavar="RUN", show_default=False, help="With --resume: the run folder or its last.pt."
    ),
    project: Optional[str] = typer.Option(None, "--project", help="Folder of run folders (default runs/train)."),
    name: Optional[str] = typer.Option(None, "--name", help="Run folder name; exp, exp2, ... when taken (default exp)."),
    exist_ok: Optional[bool] = typer.Option(None, "--exist-ok", help="Reuse project/name instead of a new folder."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0)."),
    freeze: Optional[int] = typer.Option(None, "--freeze", help="Freeze the first N rows of the graph (default 0)."),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="Use only the first N train and val images (smoke runs)."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="SGD or AdamW (default SGD)."),
    lr0: Optional[float] = typer.Option(None, "--lr0", help="Initial learning rate (default 0.01)."),
    cos_lr: Optional[bool] = typer.Option(None, "--cos-lr", help="Cosine learning-rate decay instead of linear."),
    nbs: Optional[int] = typer.Option(None, "--nbs", help="Nominal batch size for gradient accumulation (default 64)."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Stop after N epochs without improvement (0 = never) (default 50)."),
    val_interval: Optional[int] = typer.Option(None, "--val-interval", help="Validate every N epochs (always after the last) (default 1)."),
    close_mosaic: Optional[int] = typer.Option(None, "--close-mosaic", help="Turn mosaic off for the last N epochs (default 0)."),
    cache: Optional[str] = typer.Option(None, "--cache", help="'ram' keeps decoded images in memory."),
    cpu_bf16: Optional[bool] = typer.Option(None, "--cpu-bf16", help="bf16 autocast on CPU (fast on CPUs with AMX/AVX512-BF16)."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help="NHWC memory format (faster CPU convs) (default on)."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="fp16 AMP on CUDA (default on)."),
    sync_bn: Optional[bool] = typer.Option(None, "--sync-bn", help="SyncBatchNorm under DDP on GPUs."),
    autoanchor: Optional[bool] = typer.Option(None, "--autoanchor/--no-autoanchor", help="Check anchor fit and evolve anchors if poor (default on)."),
    plots: Optional[bool] = typer.Option(None, "--plots/--no-plots", help="Label and results plots (default on)."),
) -> None:
    """Train a YOLOv5 detector with a MobileNetV3 backbone; results in runs/train/expN."""
    from mnv3det.train.config import TrainConfig, apply_overrides, load_hyp
    from mnv3det.train.trainer import config_for_resume, find_last_checkpoint, fit
    from mnv3det.errors import UserError

    if backbone is not None and recipe is not None:
        raise UserError("give either --backbone (small|large) or --recipe, not both")
    if backbone is not None:
        from mnv3det.models import recipe_for_backbone

        recipe = recipe_for_backbone(backbone)
    options: dict[str, Any] = {
        "recipe": recipe, "data": data, "epochs": epochs, "batch": batch, "imgsz": imgsz, "device": device,
        "workers": workers, "threads": threads, "backbone_weights": backbone_weights, "weights": weights,
        "project": project, "name": name, "exist_ok": exist_ok, "seed": seed, "freeze": freeze,
        "max_images": max_images, "optimizer": optimizer, "lr0": lr0, "cos_lr": cos_lr, "nbs": nbs,
        "patience": patience, "val_interval": val_interval, "close_mosaic": close_mosaic, "cache": cache,
        "cpu_bf16": cpu_bf16, "channels_last": channels_last, "amp": amp, "sync_bn": sync_bn, "autoanchor": autoanchor, "plots": plots,
    }
    given = {k: v for k, v in options.items() if v is not None}
    console = Console(stderr=True)
    if resume_path is not None and not resume:
        raise UserError(f"unexpected argument {resume_path!r}: to continue a run, use `mnv3det train --resume {resume_path}`")
    if resume:
        if hyp is not None:
            raise UserError("--hyp cannot change a run being resumed; resume uses the run's saved config")
        last = find_last_checkpoint(resume_path, project or "runs/train")
        cfg, _ = config_for_resume(last, {k: v for k, v in given.items() if k != "project"})
        fit(cfg, resume=last, console=console)
        return
    cfg = TrainConfig()
    if data is None and hyp is None:
        hyp = "hyp.demo"  # no data given: the demo set with settings that train it in a few CPU minutes
        console.print("no --data: training on the built-in demo set with the hyp.demo preset (recipes/hyp.demo.yaml)")
    if hyp is not None:
        cfg = apply_overrides(cfg, load_hyp(hyp), f"--hyp {hyp}")
    cfg = apply_overrides(cfg, given, "command-line options")
    fit(cfg, console=console)
