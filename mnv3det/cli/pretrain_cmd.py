"""`mnv3det pretrain`: pretrain a whole detector on generated scenes; a thin wrapper over `train.pretrain`.

    mnv3det pretrain --recipe mnv3-small-min --samples 30000          # -> runs/pretrain/exp/weights/pretrained.pt
    mnv3det pretrain --recipe yolov5n --time 2h --threads 1
    mnv3det pretrain --resume runs/pretrain/exp                       # after a kill: from its last checkpoint
    mnv3det train --pretrained runs/pretrain/exp/weights/pretrained.pt --data data.yaml
"""

from __future__ import annotations

from typing import Optional

import typer

from mnv3det.cli.app import command
from mnv3det.cli.options import THREADS_HELP, default_help, parse_ints
from mnv3det.train.pretrain_options import DEFAULT_SAMPLES, PretrainOptions


def _help(name: str, text: str) -> str:
    return default_help(PretrainOptions, name, text)


@command("pretrain")
def pretrain_command(
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Model recipe name or yaml (default mnv3-small)."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Scene size, a multiple of 32 (default 416, from hyp.pretrain)."),
    samples: Optional[int] = typer.Option(None, "--samples", help=f"Budget in generated scenes (default {DEFAULT_SAMPLES:,})."),
    time_budget: Optional[str] = typer.Option(None, "--time", help="Budget in wall time instead (90m, 2h, 5400): "
                                                                   "turned into scenes by timing a few training steps."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size (default 16)."),
    epoch_samples: Optional[int] = typer.Option(None, "--epoch-samples",
                                                help=_help("epoch_samples", "Scenes per epoch; a checkpoint after each.")),
    val_images: Optional[int] = typer.Option(None, "--val-images",
                                             help=_help("val_images", "Validation scenes (written once to the cache).")),
    single_class: bool = typer.Option(False, "--single-class", help="One class ('object') instead of one per shape family."),
    families: Optional[str] = typer.Option(None, "--families", help="Comma-separated shape families (default: all)."),
    objects: Optional[str] = typer.Option(None, "--objects", help="MIN,MAX objects per scene (default 1,16)."),
    hyp: Optional[str] = typer.Option(None, "--hyp", help="Yaml of TrainConfig fields (default hyp.pretrain)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the scenes and the model (default 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, 0, cuda:0 (default: GPU when available)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Scene generator processes (default 2)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    project: Optional[str] = typer.Option(None, "--project", help=_help("project", "Folder of run folders.")),
    name: Optional[str] = typer.Option(None, "--name", help="Run folder name (default exp, exp2, ...)."),
    exist_ok: Optional[bool] = typer.Option(None, "--exist-ok", help="Reuse project/name."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run: `--resume RUN_DIR|last.pt`, or alone "
                                                         "for the newest runs/pretrain/*/weights/last.pt."),
    resume_path: Optional[str] = typer.Argument(None, metavar="RUN", show_default=False,
                                                help="With --resume: the run folder or its last.pt."),
) -> None:
    """Pretrain a detector (backbone, neck and head) on generated scenes with exact boxes; nothing is downloaded."""
    from mnv3det.errors import UserError
    from mnv3det.train.pretrain import pretrain

    if resume_path is not None and not resume:
        raise UserError(f"unexpected argument {resume_path!r}: to continue a run, use `mnv3det pretrain --resume {resume_path}`")
    given = {"epoch_samples": epoch_samples, "val_images": val_images, "project": project}
    opts = PretrainOptions(
        recipe=recipe, imgsz=imgsz, samples=samples, time=time_budget, batch=batch, seed=seed, hyp=hyp,
        single_class=single_class, device=device, workers=workers, threads=threads, name=name, exist_ok=exist_ok,
        families=[f.strip() for f in families.split(",") if f.strip()] if families is not None else None,
        objects=tuple(parse_ints(objects, "--objects", 2)) if objects is not None else None,  # type: ignore[arg-type]
        resume=(resume_path or True) if resume else False,
        **{k: v for k, v in given.items() if v is not None},
    )
    try:
        pretrain(opts)
    except KeyboardInterrupt:  # the trainer has said where it stopped and how to resume
        raise typer.Exit(code=130) from None
