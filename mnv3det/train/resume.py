"""--resume: find the last.pt, check it belongs to a run folder, and restore the run's config.

A run folder is `RUN/config.yaml` + `RUN/weights/last.pt` (+ best.pt). Resuming writes into RUN, so a
last.pt anywhere else (a download, a copy) is refused rather than taking its grandparent as the run.

best.pt and last.pt after a kill: each epoch writes last.pt first (it records the best epoch), then
best.pt when the epoch improved. A kill between the two leaves best.pt one improvement behind, but
then the recorded best epoch is last.pt's own epoch, whose EMA weights last.pt holds: `repair_best`
rewrites best.pt from them. Every other moment of a kill leaves a consistent pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mnv3det.core.checkpoint import Checkpoint, DataInfo, load_checkpoint, save_checkpoint
from mnv3det.data.fingerprint import data_changes
from mnv3det.errors import UserError
from mnv3det.train.config import TrainConfig, apply_overrides
from mnv3det.train.setup import Log

# Settings that may change when resuming (where and how fast it runs, not what it trains).
RESUME_OVERRIDABLE = ("device", "workers", "threads")


def find_last_checkpoint(resume: str | Path | None, project: str | Path = "runs/train") -> Path:
    """The last.pt to resume: a run folder, a .pt path, or (None/'') the newest under project/*/weights."""
    if resume in (None, "", True, "True"):
        candidates = sorted(Path(project).glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise UserError(f"--resume: no runs found under {project}/*/weights/last.pt; pass the run folder or last.pt")
        return candidates[-1]
    path = Path(str(resume))
    for candidate in (path, path / "weights" / "last.pt"):
        if candidate.is_file():
            return candidate
    raise UserError(f"--resume {resume}: no checkpoint there (looked for the file and {path}/weights/last.pt)")


def resume_checkpoint(last: Path) -> Checkpoint:
    """last.pt's checkpoint, if it holds a training state (not best.pt, not a stripped file)."""
    ckpt = load_checkpoint(last)
    if ckpt.resume is None:
        raise UserError(f"{last} holds no training state (a stripped or best.pt file); resume from the run's last.pt")
    return ckpt


def config_for_resume(last: Path, overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, Checkpoint]:
    """The saved config of the run that wrote `last` (+ device/workers/threads overrides) and its checkpoint."""
    ckpt = resume_checkpoint(last)
    cfg = TrainConfig.from_dict(ckpt.config, source=f"config saved in {last}")
    extra = {k: v for k, v in (overrides or {}).items() if v is not None}
    ignored = sorted(set(extra) - set(RESUME_OVERRIDABLE))
    if ignored:
        raise UserError(
            f"--resume continues the saved run as it was; these options cannot change now: {', '.join(ignored)}. "
            f"Only {', '.join(RESUME_OVERRIDABLE)} may be given with --resume (or start a new run with --weights {last})."
        )
    return apply_overrides(cfg, extra, "--resume options"), ckpt


def resume_run_dir(last: Path, ckpt: Checkpoint, epochs: int) -> Path:
    """The run folder `last` belongs to; a UserError when it is not a run folder or the run finished."""
    if ckpt.resume is not None and ckpt.resume.finished:
        raise UserError(
            f"{last}: this run already finished ({ckpt.resume.stop_reason or 'all epochs done'}, epoch "
            f"{ckpt.epoch + 1}/{epochs}); nothing to resume. To train further, start a new run with "
            f"--weights {last} --epochs N."
        )
    run_dir = last.parent.parent
    saved = _saved_config(run_dir / "config.yaml") if last.resolve().parent.name == "weights" else None
    same = saved is not None and all(saved.get(k) == v for k, v in ckpt.config.items() if k not in RESUME_OVERRIDABLE)
    if not same:
        raise UserError(
            f"--resume {last}: it is not inside its run folder (RUN/weights/last.pt beside RUN/config.yaml of the "
            "same run), and resuming would write into the folder around it. Move it back into its run folder, or "
            f"start a new run from its weights with --weights {last}."
        )
    return run_dir


def check_same_data(ckpt: Checkpoint, now: DataInfo, last: Path | str) -> None:
    """--resume continues on the data the run started with: a UserError saying what changed otherwise (class
    names reordered or added, a split holding other images). Files without a data record compare names only."""
    saved = ckpt.data or DataInfo(names=list(ckpt.names), category_ids=[], format="", source="")
    changes = data_changes(saved, now)
    if changes:
        raise UserError(
            f"--resume {last}: the data changed since the run started: {'; '.join(changes)}. The epochs so far learned "
            f"the data as it was; restore it to resume, or start a new run from these weights with --weights {last}"
        )


def _saved_config(path: Path) -> dict[str, Any] | None:
    """config.yaml as a dict, or None when absent or unreadable."""
    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return values if isinstance(values, dict) else None


def repair_best(best: Path, last_ckpt: Checkpoint, log: Log) -> None:
    """Rewrite best.pt from last.pt when a kill fell between writing the two (see the module docstring)."""
    assert last_ckpt.resume is not None
    wanted = last_ckpt.resume.best_epoch
    if wanted < 0:
        return
    held = _epoch_of(best)
    if held == wanted:
        return
    if wanted == last_ckpt.epoch:
        save_checkpoint(last_ckpt.for_inference(), best)
        log.print(f"best.pt rewritten from last.pt (epoch {wanted + 1}): the run stopped before it was saved")
    else:  # cannot happen with the save order above; say so rather than train on with a wrong best.pt
        log.print(f"[yellow]{best} holds epoch {held if held is None else held + 1}, but the run's best was epoch "
                  f"{wanted + 1}; it will be replaced when validation improves[/]")


def _epoch_of(path: Path) -> int | None:
    """The epoch a checkpoint holds, None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        return load_checkpoint(path).epoch
    except UserError:
        return None
