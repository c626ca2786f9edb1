"""The model a run trains: from its recipe (new run) or from last.pt (resume); threads per process."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn

from mnv3det.core.checkpoint import Checkpoint, load_checkpoint, load_state
from mnv3det.core.threads import resolve_threads
from mnv3det.errors import UserError
from mnv3det.train.config import TrainConfig


class Log(Protocol):
    """Anything with rich's `print` (a Console, or a buffer that prints later)."""

    def print(self, *objects: object, **kwargs: object) -> None: ...


def default_threads(world_size: int) -> int:
    """Intra-op threads per process: the cores this process may use shared out over the processes (at least 1)."""
    return resolve_threads(None, world_size)


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


def build_training_model(cfg: TrainConfig, names: list[str], log: Log) -> nn.Module:
    """Model from the recipe with nc from the data; backbone weights, --weights transfer and freezing applied."""
    from mnv3det.models import build_model, load_backbone_weights

    model = build_model(cfg.recipe, nc=len(names))
    model.names = list(names)
    if cfg.backbone_weights:
        report = load_backbone_weights(model, cfg.backbone_weights)
        log.print(f"backbone weights: {report.summary()}")
    if cfg.weights:
        start = load_checkpoint(cfg.weights)
        copied, skipped = transfer_weights(model, start.model)
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


def model_from_checkpoint(ckpt: Checkpoint, cfg: TrainConfig, source: str) -> nn.Module:
    """The training model of a last.pt: its raw (non-EMA) weights; the EMA is restored with the state."""
    from mnv3det.models import build_model

    assert ckpt.resume is not None, "resume_checkpoint() only returns files with a training state"
    model = build_model(ckpt.recipe, nc=ckpt.nc)
    load_state(model, ckpt.resume.train_model, source, "training weights")
    model.names = list(ckpt.names)
    if cfg.freeze:
        freeze_rows(model, cfg.freeze)
    return model
