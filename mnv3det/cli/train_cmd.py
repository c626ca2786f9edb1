"""`mnv3det train`: train a detector; a thin wrapper over `mnv3det.train.api.train`.

    mnv3det train --backbone small --data data.yaml --epochs 30 --imgsz 416 --batch 16
    mnv3det train --resume                      # continue the newest runs/train/*/weights/last.pt
    torchrun --nproc_per_node 2 -m mnv3det train --device cpu ...   # DDP (gloo on CPU)

Every option whose name is a `TrainConfig` field maps onto that field (the mapping is derived from the
parameter names, so it is written once); defaults shown in the help come from TrainConfig itself.
Precedence: TrainConfig defaults < --hyp yaml < options given here (an option left out changes nothing).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Optional

import typer

from mnv3det.cli.app import command
from mnv3det.train.config import TrainConfig

D = TrainConfig()  # the defaults quoted in the help texts
CONFIG_FIELDS = frozenset(f.name for f in fields(TrainConfig))


@command("train")
def train_command(
    ctx: typer.Context,
    backbone: Optional[str] = typer.Option(None, "--backbone", help="small or large: the MobileNetV3 recipe to train."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Any model recipe name (mnv3-small, yolov5n, ...) or yaml path."),
    data: Optional[str] = typer.Option(None, "--data", help="Data yaml or dataset folder (default: the built-in demo set)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=f"Number of epochs (default {D.epochs})."),
    batch: Optional[int] = typer.Option(None, "--batch", help=f"Total batch size over all processes (default {D.batch})."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help=f"Train/val image size, multiple of 32 (default {D.imgsz})."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, 0, cuda:0 (default: GPU when available)."),
    workers: Optional[int] = typer.Option(None, "--workers", help=f"Data loader worker processes per process (default {D.workers})."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch CPU threads per process (default: cores / processes)."),
    hyp: Optional[str] = typer.Option(None, "--hyp", help="Yaml of TrainConfig fields (e.g. hyp.small-data, hyp.scratch)."),
    backbone_weights: Optional[str] = typer.Option(
        None, "--backbone-weights", help="torchvision MobileNet state_dict file for the backbone, or imagenet "
        "(torchvision's weights; downloaded into torch's cache when missing)."
    ),
    weights: Optional[str] = typer.Option(None, "--weights", help="Start from an mnv3det checkpoint (tensors that fit are loaded)."),
    pretrained: Optional[str] = typer.Option(
        None, "--pretrained",
        help="Start: auto (the recipe's shipped pretrained weights, if any; --weights or --backbone-weights win), "
             "shipped, none (from scratch), or a weights/pretrained.pt of `mnv3det pretrain` (default auto).",
    ),
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue a killed run: `--resume RUN_DIR|last.pt`, or `--resume` alone for the newest runs/train/*/weights/last.pt.",
    ),
    resume_path: Optional[str] = typer.Argument(
        None, metavar="RUN", show_default=False, help="With --resume: the run folder or its last.pt."
    ),
    project: Optional[str] = typer.Option(None, "--project", help=f"Folder of run folders (default {D.project})."),
    name: Optional[str] = typer.Option(None, "--name", help=f"Run folder name; {D.name}, {D.name}2, ... when taken (default {D.name})."),
    exist_ok: Optional[bool] = typer.Option(None, "--exist-ok", help="Reuse project/name (its old results.csv and weights are replaced)."),
    seed: Optional[int] = typer.Option(None, "--seed", help=f"Random seed (default {D.seed})."),
    freeze: Optional[int] = typer.Option(None, "--freeze", help=f"Freeze the first N rows of the graph (default {D.freeze})."),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="Use only the first N train and val images (smoke runs)."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help=f"SGD or AdamW (default {D.optimizer})."),
    lr0: Optional[float] = typer.Option(None, "--lr0", help=f"Initial learning rate (default {D.lr0})."),
    cos_lr: Optional[bool] = typer.Option(None, "--cos-lr", help="Cosine learning-rate decay instead of linear."),
    nbs: Optional[int] = typer.Option(None, "--nbs", help=f"Nominal batch size for gradient accumulation (default {D.nbs})."),
    patience: Optional[int] = typer.Option(None, "--patience", help=f"Stop after N epochs without improvement (0 = never) (default {D.patience})."),
    val_interval: Optional[int] = typer.Option(None, "--val-interval", help=f"Validate every N epochs (always after the last) (default {D.val_interval})."),
    close_mosaic: Optional[int] = typer.Option(None, "--close-mosaic", help=f"Turn mosaic off for the last N epochs (default {D.close_mosaic})."),
    cache: Optional[str] = typer.Option(None, "--cache", help="'ram' keeps decoded images in memory."),
    cpu_bf16: Optional[bool] = typer.Option(None, "--cpu-bf16", help="bf16 autocast on CPU (fast on CPUs with AMX/AVX512-BF16)."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help="NHWC memory format (faster CPU convs) (default on)."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="fp16 AMP on CUDA (default on)."),
    sync_bn: Optional[bool] = typer.Option(None, "--sync-bn", help="SyncBatchNorm under DDP on GPUs."),
    autoanchor: Optional[bool] = typer.Option(None, "--autoanchor/--no-autoanchor", help="Check anchor fit and evolve anchors if poor (default on)."),
    plots: Optional[bool] = typer.Option(None, "--plots/--no-plots", help="Label, batch and results plots (default on)."),
) -> None:
    """Train a YOLOv5 detector with a MobileNetV3 backbone; results in runs/train/expN."""
    from mnv3det.errors import UserError
    from mnv3det.train.api import train

    overrides = {k: v for k, v in ctx.params.items() if k in CONFIG_FIELDS}  # option name == TrainConfig field
    if resume_path is not None and not resume:
        raise UserError(f"unexpected argument {resume_path!r}: to continue a run, use `mnv3det train --resume {resume_path}`")
    try:
        train(hyp=hyp, backbone=backbone, resume=(resume_path or True) if resume else False, **overrides)
    except KeyboardInterrupt:  # the trainer has said where it stopped and how to resume
        raise typer.Exit(code=130) from None
