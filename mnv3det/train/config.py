"""One typed config per training run (`TrainConfig`).

Precedence, lowest to highest: the dataclass defaults below < a hyp yaml (`--hyp`, any field of
`TrainConfig`) < options given on the command line. The final config is printed at the start of a
run as a table and saved as `run_dir/config.yaml`; checkpoints carry it as a plain dict so
`--resume` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from mnv3det.core.imgsz import P5_STRIDE, check_imgsz
from mnv3det.core.yamlio import read_yaml
from mnv3det.errors import UserError

# Fields handed to the data loader as its augmentation `hyp` dict (names as in YOLOv5's hyp files).
AUGMENT_KEYS = (
    "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective",
    "flipud", "fliplr", "mosaic", "mixup", "albumentations",
)


@dataclass
class TrainConfig:
    """Every knob of a training run, with YOLOv5 hyp.scratch-low values as defaults."""

    # --- what to train on ---------------------------------------------------------------------
    recipe: str = "mnv3-small"  # model recipe name under recipes/ or a yaml path (--backbone picks one)
    data: str | None = None  # dataset yaml/folder; None = the embedded demo set
    train_split: str = "train"  # split names of the DataSpec
    val_split: str = "val"
    max_images: int | None = None  # cap the train/val image count (smoke runs, tests); None = all
    backbone_weights: str | None = None  # torchvision MobileNetV3/V2 state_dict for the backbone
    weights: str | None = None  # start from an mnv3det checkpoint (loads tensors whose shapes fit)
    pretrained: str = "auto"  # start: auto (the recipe's shipped weights, if any), shipped, none, or a pretrain .pt
    freeze: int = 0  # freeze the first N rows of the graph

    # --- run length, batch, image size --------------------------------------------------------
    epochs: int = 100
    batch: int = 16  # total batch across DDP processes
    imgsz: int = 640  # train and val image size, multiple of 32
    nbs: int = 64  # nominal batch size: gradients accumulate to ~nbs images per optimizer step
    workers: int = 2  # data loader worker processes (per DDP process)
    cache: str | None = None  # "ram" keeps decoded, resized images in memory (passed to the loader)
    close_mosaic: int = 0  # turn mosaic off for the last N epochs (0 = never)

    # --- optimizer and schedule ---------------------------------------------------------------
    optimizer: str = "SGD"  # SGD (nesterov) or AdamW
    lr0: float = 0.01  # initial learning rate (AdamW: try 0.001)
    lrf: float = 0.01  # final lr = lr0 * lrf
    cos_lr: bool = False  # cosine instead of linear decay
    momentum: float = 0.937  # SGD momentum / Adam beta1
    weight_decay: float = 5e-4  # scaled by batch*accumulate/nbs; not applied to BN weights and biases
    warmup_epochs: float = 3.0  # linear warmup length (at least 100 optimizer iterations' worth)
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    min_warmup_iters: int = 100  # floor on warmup length in batches (YOLOv5 uses 100)
    grad_clip: float = 10.0  # max gradient norm before each optimizer step
    ema_decay: float = 0.9999  # EMA decay, ramped in as decay * (1 - exp(-updates / ema_tau))
    ema_tau: float = 2000.0

    # --- loss -----------------------------------------------------------------------------------
    box: float = 0.05  # box loss gain (scaled by 3 / nl)
    cls: float = 0.5  # class loss gain (scaled by nc / 80 * 3 / nl)
    obj: float = 1.0  # objectness gain (scaled by (imgsz / 640)^2 * 3 / nl)
    cls_pw: float = 1.0  # BCE positive weight, classes
    obj_pw: float = 1.0  # BCE positive weight, objectness
    anchor_t: float = 4.0  # target/anchor wh ratio limit for a match
    label_smoothing: float = 0.0
    autoanchor: bool = True  # check anchor recall before training and evolve anchors if below 0.98
    # anchor-free head (AFDetect recipes, train/af_loss.py); the YOLOv5 head ignores these
    af_box: float = 2.5  # 1 - GIoU gain
    af_cls: float = 1.0  # class loss gain
    af_dfl: float = 0.5  # distribution focal loss gain (heads with bins > 1)
    af_cls_loss: str = "vfl"  # vfl (varifocal), qfl (quality focal) or bce, all against the task-aligned soft target
    af_topk: int = 13  # positives per box in task-aligned assignment (TOOD's k)
    af_assigner: str = "tal"  # tal (task-aligned top-k, TOOD) or simota (YOLOX's dynamic k); train/assign.py

    # --- augmentation (handed to the data loader) ---------------------------------------------
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    perspective: float = 0.0
    flipud: float = 0.0
    fliplr: float = 0.5
    mosaic: float = 1.0
    mixup: float = 0.0
    albumentations: float = 1.0  # probability of the albumentations photometric steps (blur, gray, CLAHE...)

    # --- validation, stopping -----------------------------------------------------------------
    val_interval: int = 1  # validate every N epochs (and always after the last)
    patience: int = 50  # stop after N epochs without fitness improvement (0 = never)
    max_nonfinite: int = 20  # stop after this many skipped steps with a non-finite loss or gradient

    # --- machine ------------------------------------------------------------------------------
    device: str = ""  # '' = cuda:0 if available else cpu; 'cpu'; '0'
    threads: int | None = None  # torch intra-op threads on CPU; None = cores / processes
    amp: bool = True  # fp16 autocast + GradScaler on CUDA (ignored on CPU)
    cpu_bf16: bool = False  # bf16 autocast on CPU (faster on CPUs with AVX512-BF16/AMX)
    channels_last: bool = True  # NHWC tensors: oneDNN's faster conv kernels (~20-30% per CPU step measured here)
    sync_bn: bool = False  # SyncBatchNorm under DDP on GPUs (CPU/gloo runs keep plain BatchNorm)
    seed: int = 0
    deterministic: bool = False  # CUDA: deterministic cuDNN (repeatable, slower) instead of cudnn.benchmark; CPU runs repeat anyway

    # --- output -------------------------------------------------------------------------------
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False  # reuse project/name instead of exp2, exp3, ...
    plots: bool = True

    def augment_hyp(self) -> dict[str, float]:
        """The augmentation fields as the loader's `hyp` dict."""
        return {k: getattr(self, k) for k in AUGMENT_KEYS}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (yaml/checkpoint safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a dict, checking names and types; `source` names the origin in errors."""
        return apply_overrides(cls(), values, source)


_FIELD_TYPES: dict[str, Any] = get_type_hints(TrainConfig)


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check/convert one value against the field's annotation (int -> float is allowed)."""
    kind = str(_FIELD_TYPES[name])
    optional = "None" in kind
    if value is None:
        if optional:
            return None
        raise UserError(f"{source}: '{name}' may not be empty")
    try:
        if kind.startswith("bool") or kind == "<class 'bool'>":
            if isinstance(value, bool):
                return value
            raise TypeError
        if "float" in kind:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if "int" in kind:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if "str" in kind:
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise UserError(f"{source}: '{name}' should be of type {kind.replace('<class ', '').replace('>', '')}, got {value!r}")


def apply_overrides(cfg: TrainConfig, values: dict[str, Any], source: str) -> TrainConfig:
    """A new config with `values` applied; unknown names are a UserError naming `source`."""
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(
            f"{source}: unknown setting(s) {', '.join(unknown)}; valid names are the fields of "
            "mnv3det.train.config.TrainConfig (see recipes/hyp.scratch.yaml)"
        )
    changed = {k: _coerce(k, v, source) for k, v in values.items()}
    new = dataclasses.replace(cfg, **changed)
    validate(new, source)
    return new


def load_hyp(path: str | Path) -> dict[str, Any]:
    """Read a hyp yaml (a mapping of TrainConfig field names to values); a name under recipes/ works too."""
    p = Path(path)
    if not p.is_file():
        from mnv3det.models.recipes import recipes_dir  # the shipped presets live beside the model recipes

        name = p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml"
        if (recipes_dir() / name).is_file():
            p = recipes_dir() / name
        else:
            raise UserError(f"--hyp {path}: file not found (give a yaml path or a preset name such as hyp.small-data)")
    values = read_yaml(p, "--hyp") or {}  # one line with line and column for a syntax error
    if not isinstance(values, dict):
        raise UserError(f"--hyp {p}: expected a mapping of setting: value, got {type(values).__name__}")
    return values


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: `low`/`high` (None: unbounded), each end open or closed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        def num(v: float) -> str:
            return str(int(v)) if float(v).is_integer() else f"{v:g}"

        if self.high is None:
            return f"{'>' if self.low_open else '>='} {num(self.low)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{left}{num(self.low)}, {num(self.high)}{right}"


def _at_least(low: float) -> Range:
    return Range(low)


def _above(low: float) -> Range:
    return Range(low, low_open=True)


# Class losses of the anchor-free head (train/af_loss.py): varifocal, quality focal, plain BCE.
AF_CLASS_LOSSES = ("vfl", "qfl", "bce")
AF_ASSIGNERS = ("tal", "simota")  # assigners of the anchor-free head (train/assign.py make_assigner)

_PROBABILITY = Range(0, 1)
_FRACTION = Range(0, 1, high_open=True)

# Every int and float field of TrainConfig, with the values that can train (a test checks that none is missing).
# Augmentation limits follow data/augment.py: scale s draws a zoom from [1 - s, 1 + s] (s = 1 allows zero),
# shear is an angle whose tangent is taken, translate moves the centre by up to that fraction of the image.
RANGES: dict[str, Range] = {
    # run length, batch, sizes, counts
    "freeze": _at_least(0), "epochs": _at_least(1), "batch": _at_least(1), "imgsz": _at_least(32),
    "nbs": _at_least(1), "workers": _at_least(0), "close_mosaic": _at_least(0), "max_images": _at_least(1),
    "min_warmup_iters": _at_least(0), "val_interval": _at_least(1), "patience": _at_least(0),
    "max_nonfinite": _at_least(0), "threads": _at_least(1), "seed": Range(0, 2**32 - 1),  # numpy's seed range
    # optimizer and schedule
    "lr0": Range(0, 1, low_open=True), "lrf": Range(0, 1, low_open=True), "momentum": _FRACTION,
    "weight_decay": _FRACTION, "warmup_epochs": _at_least(0), "warmup_momentum": _FRACTION,
    "warmup_bias_lr": Range(0, 1), "grad_clip": _above(0), "ema_decay": _FRACTION, "ema_tau": _above(0),
    # loss
    "box": _at_least(0), "cls": _at_least(0), "obj": _at_least(0), "cls_pw": _above(0), "obj_pw": _above(0),
    "anchor_t": _above(1), "label_smoothing": _FRACTION,
    "af_box": _at_least(0), "af_cls": _at_least(0), "af_dfl": _at_least(0), "af_topk": _at_least(1),
    # augmentation
    "hsv_h": _PROBABILITY, "hsv_s": _PROBABILITY, "hsv_v": _PROBABILITY, "degrees": Range(0, 180),
    "translate": _FRACTION, "scale": _FRACTION, "shear": Range(0, 45), "perspective": Range(0, 0.01),
    "flipud": _PROBABILITY, "fliplr": _PROBABILITY, "mosaic": _PROBABILITY, "mixup": _PROBABILITY,
    "albumentations": _PROBABILITY,
}


def validate(cfg: TrainConfig, source: str = "config") -> None:
    """One-line errors instead of a crash (or a silent non-finite run) deep in the loop: every numeric field
    finite and in its `RANGES` entry, then the few settings that are words or depend on each other."""
    for name, allowed in RANGES.items():
        value = getattr(cfg, name)
        if value is not None and value not in allowed:
            raise UserError(f"{source}: {name} must be a finite number in {allowed}, got {value!r}")
    checks = [
        (cfg.optimizer.lower() in ("sgd", "adamw"), f"optimizer must be SGD or AdamW, got {cfg.optimizer!r}"),
        (cfg.cache in (None, "ram"), f"cache must be 'ram' or left out, got {cfg.cache!r}"),
        (cfg.af_cls_loss in AF_CLASS_LOSSES,
         f"af_cls_loss must be one of {', '.join(AF_CLASS_LOSSES)}, got {cfg.af_cls_loss!r}"),
        (cfg.af_assigner in AF_ASSIGNERS,
         f"af_assigner must be one of {', '.join(AF_ASSIGNERS)}, got {cfg.af_assigner!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(f"{source}: {message}")
    # Before a model exists: against P5/32, which every recipe reaches; the trainer checks the built model's stride.
    check_imgsz(cfg.imgsz, P5_STRIDE, option=f"{source}: imgsz")


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the final config as yaml (loadable again with --hyp)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # atomic: a resume checks last.pt against this file
    tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    os.replace(tmp, path)
    return path


def config_table(cfg: TrainConfig, title: str = "training config"):
    """A rich Table of all fields, marking those that differ from the defaults."""
    from rich.markup import escape
    from rich.table import Table

    default = TrainConfig()
    table = Table(title=title, show_lines=False, pad_edge=False)
    table.add_column("setting", style="cyan")
    table.add_column("value")
    table.add_column("setting", style="cyan")
    table.add_column("value")
    cells = []
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        text = escape(repr(value) if isinstance(value, str) else str(value))  # paths and names are user text
        if value != getattr(default, f.name):
            text = f"[bold yellow]{text}[/]"
        cells.append((f.name, text))
    half = (len(cells) + 1) // 2
    for left, right in zip(cells[:half], cells[half:] + [("", "")]):
        table.add_row(*left, *right)
    return table


__all__ = ["TrainConfig", "AUGMENT_KEYS", "RANGES", "Range", "apply_overrides", "load_hyp", "save_config", "validate", "config_table"]
