"""`mnv3det val` as a function: open the weights and the data, evaluate, print and save the results.

Writes into the run folder (runs/val/exp, exp2, ...): results.json (every number, per class too),
summary.txt (the paste-able block), predictions.json with --save-json (COCO results format, the
dataset's own category ids) and the plots with --plots.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from mnv3det.core.console import make_console
from mnv3det.core.cpu_share import ThreadGovernor, adaptive_governor
from mnv3det.core.outputs import RunFiles, refuse_overlap
from mnv3det.core.runs import claim_run_dir
from mnv3det.errors import UserError, option
from mnv3det.evaluate.default_data import data_for_weights
from mnv3det.evaluate.config import ValConfig
from mnv3det.evaluate.evaluator import EvalResult, evaluate
from mnv3det.evaluate.report import print_eval, summary_text


def run_val(cfg: ValConfig, console: Console | None = None) -> tuple[EvalResult, Path]:
    """Evaluate `cfg.weights` on a split of `cfg.data`; returns the result and the run folder."""
    from mnv3det.core.device import select_device
    from mnv3det.core.imgsz import ImgSize
    from mnv3det.data import load_data
    from mnv3det.data.report import source_lines
    from mnv3det.deploy.runtime.backends import load_backend
    from mnv3det.deploy.runtime.predictor import held_nms_note, resolve_imgsz

    console = console or make_console()
    cfg.validate()
    data, why = (cfg.data, "") if cfg.data is not None else data_for_weights(cfg.weights)  # before any work
    requested = ImgSize.parse(cfg.imgsz).side(why="val scales each image's long side to it") if cfg.imgsz else None
    device = select_device(cfg.device)
    backend = load_backend(cfg.weights, device, cfg.threads)
    size, note = resolve_imgsz(backend, requested, cfg.weights)
    imgsz = size.long  # a static export that is not square gets a clear error from make_eval_loader
    if note:
        console.print(f"[yellow]note:[/] {escape(note)}" if backend.fixed_shape else escape(note), highlight=False)
    held = held_nms_note(backend, cfg.nms(), cfg.weights)  # an --nms file: its own conf and iou hold
    if held:
        console.print(f"[yellow]note:[/] {escape(held)}", highlight=False)
    if why:  # no --data: the checkpoint's own data when it still exists (evaluate/default_data.py)
        console.print(why, highlight=False, markup=False)
    spec = load_data(data)
    _check_split(spec, cfg.split)
    if cfg.split == "train":
        console.print(f"[yellow]note:[/] {option('split', 'train')} measures how well the model fits the images it "
                      "was trained on, not how it does on new ones (use val or test for that)", highlight=False)
    records = spec.records(cfg.split)
    for line in source_lines(spec, [cfg.split]):
        console.print(line, highlight=False, soft_wrap=True)
    if backend.names and list(backend.names) != list(spec.names) and len(backend.names) == len(spec.names):
        console.print("[yellow]note:[/] the model's class names differ from the dataset's; the dataset's are shown")

    # The run folder may not be the dataset (or hold it), nor be, hold or lie in a folder of its images (--exist-ok).
    refuse_overlap(Path(cfg.project) / cfg.name, [spec.root], inside=False)
    refuse_overlap(Path(cfg.project) / cfg.name, sorted({r.path.parent for r in records}))
    run_dir = claim_run_dir(Path(cfg.project), cfg.name, exist_ok=cfg.exist_ok)
    files = RunFiles(run_dir)
    governor = _thread_governor(cfg, device)
    result = evaluate(
        backend, records, spec, cfg.eval_config(imgsz), device=device, progress=not console.quiet,
        plots_dir=run_dir if cfg.plots else None,
        save_json=run_dir / "predictions.json" if cfg.save_json else None,
        between_batches=governor.poll if governor is not None else None, write=files.write,
    )
    result.save_dir = str(run_dir)
    _save_and_print(cfg, result, spec, imgsz, run_dir, console, files)
    return result, run_dir


def _check_split(spec: Any, split: str) -> None:
    """A split the data does not have: one line naming the ones it has and one to use instead, spelled as the user
    gives options (`--split val` on the command line, `split='val'` in Python)."""
    if split in spec.splits:
        return
    have = ", ".join(spec.splits) or "none"
    instead = next((s for s in ("val", "test", "train") if s in spec.splits), next(iter(spec.splits), None))
    hint = f"; evaluate one of them with {option('split', instead)}" if instead else ""
    raise UserError(f"{option('split', split)}: {spec.source} has no {split!r} split (it has: {have}){hint}")


def _thread_governor(cfg: ValConfig, device: Any) -> ThreadGovernor | None:
    """PyTorch on CPU runs batches on every core: follow the cores other processes leave free (core/cpu_share.py).
    Exports keep their runtime's own pool (ONNX Runtime, OpenVINO, ncnn)."""
    import torch

    if Path(str(cfg.weights)).suffix.lower() not in (".pt", ".torchscript"):
        return None
    return adaptive_governor(cfg.threads, torch.get_num_threads(), device=device)


def _save_and_print(cfg: ValConfig, result: EvalResult, spec, imgsz: int, run_dir: Path, console: Console,
                    files: RunFiles) -> None:
    title = f"{cfg.weights} on {spec.source} ({cfg.split}, imgsz {imgsz})"
    summary = summary_text(result, title)
    files.write(run_dir / "results.json", json.dumps(
        {"weights": str(cfg.weights), "data": str(spec.source), "split": cfg.split, "imgsz": imgsz,
         "conf": cfg.conf, "iou": cfg.iou, "max_det": cfg.max_det, **result.as_dict()}, indent=2))
    files.write(run_dir / "summary.txt", summary + "\n")
    print_eval(result, spec.names, console=console)
    console.print("\n[bold]Summary[/] (to paste; also in summary.txt):")
    console.print(summary, highlight=False, soft_wrap=True, markup=False)  # plain, never wrapped or cut
    console.print(f"Results saved to [bold]{escape(str(run_dir))}[/]")


__all__ = ["ValConfig", "run_val"]
