"""Evaluation: run a detector over a dataset split and score it, in three steps (infer -> score -> write).

    result = evaluate(model_or_backend, spec.records("val"), spec, EvalConfig(imgsz=640, batch=32), device="cpu")

`model_or_backend` is a plain `DetectionModel` (the trainer passes its EMA model each epoch; its
train/eval mode is restored afterwards) or a `Backend` from `load_backend` (a .pt checkpoint or any export).
Dynamic models get rectangular batches (less padding, the usual YOLOv5 validation); a static export
(`fixed_shape` set) gets square letterboxed batches of its size.

    infer.py   loader batches -> the prediction path (`deploy.runtime.predictor.run_batch`: forward, NMS, scale back)
    score.py   boxes rounded as COCO results -> fast metrics and pycocotools' COCOeval -> EvalResult
    write.py   predictions json, PR/F1 curves, confusion matrix, mosaics
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from mnv3det.deploy.runtime.backends import Backend, TorchBackend
from mnv3det.deploy.runtime.predictor import resolve_imgsz
from mnv3det.errors import UserError
from mnv3det.evaluate.config import EvalConfig
from mnv3det.evaluate.infer import Inference, infer, make_eval_loader
from mnv3det.evaluate.score import BOX_DECIMALS, ClassResult, EvalResult, score
from mnv3det.evaluate.write import MOSAIC_BATCHES, write_json, write_plots


def evaluate(
    model_or_backend: Any,
    records: Sequence[Any],
    spec: Any,
    config: EvalConfig | None = None,
    *,
    device: torch.device | str | None = None,
    loader: Any = None,
    progress: bool = True,
    plots_dir: str | Path | None = None,
    save_json: str | Path | None = None,
    between_batches: Callable[[], object] | None = None,
    on_targets: Callable[[torch.Tensor], object] | None = None,
    write: Callable[[Path, bytes], Path] | None = None,
) -> EvalResult:
    """Run `model_or_backend` over `records` and score the detections (see the module docstring).

    spec: the DataSpec the records came from (names, category_ids). plots_dir: write the plots there;
    save_json: write the COCO results json there. loader: a validation DataLoader over these records built once
    with `make_eval_loader` and reused, so the trainer does not start new workers every epoch. between_batches:
    called after every batch (the CPU thread governor's `poll`). on_targets: called with each batch's targets
    after the model ran on it (train/val_loss.py). write: how each file is written (default
    `core.outputs.write_output`; `mnv3det val` passes its run's `RunFiles.write`).
    """
    config = config or EvalConfig()
    config.validate()
    records = list(records)
    if not records:
        raise UserError("nothing to evaluate: the split has no images")
    _check_class_count(model_or_backend, spec.names)
    module = model_or_backend if isinstance(model_or_backend, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    backend = _as_backend(model_or_backend, list(spec.names), device)  # puts a module in eval mode; restored below
    try:
        if loader is None:
            size, _ = resolve_imgsz(backend, config.imgsz)
            loader = make_eval_loader(records, imgsz=size.long, batch_size=config.batch, stride=int(backend.stride),
                                      workers=config.workers, fixed_shape=backend.fixed_shape)
        keep = MOSAIC_BATCHES if plots_dir is not None else 0
        inference = infer(backend, loader, records, config.nms(), progress=progress, keep_batches=keep,
                          between_batches=between_batches, on_targets=on_targets)
    finally:
        if module is not None:
            module.train(was_training)
    _warn_missing(records, inference)
    scores = score(inference, spec, coco=config.coco, with_json=save_json is not None)
    result = scores.result
    if save_json is not None:
        result.json_path = str(write_json(scores.coco_results, save_json, write=write))
    if plots_dir is not None:
        result.plots = write_plots(inference, scores, spec.names, plots_dir, write=write)
    return result


def _check_class_count(model_or_backend: Any, names: Sequence[str]) -> None:
    nc = len(names)
    if isinstance(model_or_backend, torch.nn.Module):
        predicted = getattr(model_or_backend, "nc", None)
    else:
        predicted = len(getattr(model_or_backend, "names", []))
    if predicted and int(predicted) != nc:
        raise UserError(
            f"the model predicts {predicted} classes but the dataset has {nc} "
            f"({', '.join(names[:5])}{', ...' if nc > 5 else ''}); evaluate it on the data it was trained for"
        )


def _as_backend(model_or_backend: Any, names: list[str], device: torch.device | str | None) -> Backend:
    """A Backend for a plain nn.Module (wrapped), or the backend itself."""
    if isinstance(model_or_backend, torch.nn.Module):
        dev = torch.device(device) if device is not None else next(model_or_backend.parameters()).device
        return TorchBackend(model_or_backend, names=names, device=dev)
    for attr in ("names", "stride", "fixed_shape", "device", "imgsz"):
        if not hasattr(model_or_backend, attr):
            raise TypeError(f"evaluate() needs an nn.Module or a Backend; {type(model_or_backend).__name__} has no {attr!r}")
    return model_or_backend


def _warn_missing(records: list[Any], inference: Inference) -> None:
    if len(inference.records) < len(records):
        seen = {r.image_id for r in inference.records}
        missing = [str(r.path) for r in records if r.image_id not in seen]
        warnings.warn(
            f"{len(missing)} image(s) could not be read during evaluation and were left out of the metrics "
            f"(first: {missing[0]}); run `mnv3det data check` on the dataset",
            stacklevel=3,
        )


__all__ = ["EvalConfig", "EvalResult", "ClassResult", "evaluate", "make_eval_loader", "BOX_DECIMALS"]
