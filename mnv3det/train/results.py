"""results.csv (one row per epoch) and the optional tensorboard writer.

The row of an epoch is appended before that epoch's last.pt is written; a resumed run first trims
the rows it will redo (and a half-written row a kill left), so the file always matches last.pt.
`epoch` counts from 1, as the log does ("epoch 3/30" is the row with epoch 3; files written before counted from 0
and are renumbered when a resume trims them).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

CSV_FIELDS = [
    "epoch", "train/box_loss", "train/obj_loss", "train/dfl_loss", "train/cls_loss",
    "val/box_loss", "val/obj_loss", "val/dfl_loss", "val/cls_loss", "metrics/precision", "metrics/recall",
    "metrics/mAP50", "metrics/mAP50-95", "fitness", "lr/bias", "lr/decay", "lr/norm", "images_per_s", "epoch_s",
    "skipped_steps",
]


def append_results(path: Path, row: dict[str, Any]) -> None:
    """Append one epoch's row to results.csv (header on first write)."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})


def _complete_rows(path: Path) -> list[dict[str, str]]:
    """The rows of results.csv that a kill did not cut short (all columns present, a numeric epoch)."""
    with path.open(newline="") as f:
        text = f.read()
    if text and not text.endswith("\n"):  # the last row was being written when the process died
        text = text[: text.rfind("\n") + 1]
    rows = []
    for row in csv.DictReader(text.splitlines()):
        if None in row.values() or None in row or not (row.get("epoch") or "").isdigit():
            continue
        rows.append(row)
    return rows


def trim_results(path: Path, first_epoch: int) -> None:
    """Keep only the rows of the `first_epoch` epochs done before a resume (it redoes the rest); atomic rewrite.

    first_epoch: the 0-based index of the first epoch to redo, i.e. the number of epochs kept."""
    if not path.exists():
        return
    rows = _complete_rows(path)
    if any(r["epoch"] == "0" for r in rows):  # written when the file counted from 0: renumber from 1
        rows = [{**r, "epoch": str(int(r["epoch"]) + 1)} for r in rows]
    rows = [r for r in rows if int(r["epoch"]) <= first_epoch]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in CSV_FIELDS} for r in rows)
    os.replace(tmp, path)


def results_row(epoch: int, stats: Any, result: Any, lrs: dict[str, float],
                val_losses: dict[str, float] | None = None) -> dict[str, Any]:
    """One results.csv row from the epoch's stats (EpochStats), validation (EvalResult or None), lrs and the loss
    on the validation images (the head's terms by name, as `ValLoss.means()`; None when the epoch did not validate).

    epoch: the 0-based loop index; the row says epoch + 1, the number the log shows."""
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        # the head's own terms: obj for YOLOv5's head, dfl for the anchor-free head (the other column stays empty)
        **{f"train/{name}_loss": round(value, 6) for name, value in zip(stats.names, stats.losses)},
        "images_per_s": round(stats.images_per_s, 2),
        "epoch_s": round(stats.seconds, 2),
        "skipped_steps": stats.skipped,
    }
    for name, value in (val_losses or {}).items():  # the same terms as the train columns
        row[f"val/{name}_loss"] = round(value, 6)
    for group, lr in lrs.items():
        row[f"lr/{group}"] = round(lr, 8)
    if result is not None:
        row.update({
            "metrics/precision": round(float(result.precision), 5),
            "metrics/recall": round(float(result.recall), 5),
            "metrics/mAP50": round(float(result.map50), 5),
            "metrics/mAP50-95": round(float(result.map), 5),
            "fitness": round(float(result.fitness), 5),
        })
    return row


def open_tensorboard(run_dir: Path) -> Any:
    """A SummaryWriter when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir))


def log_tensorboard(writer: Any, row: dict[str, Any], epoch: int) -> None:
    """Every numeric column of the row as a scalar at `epoch` (no-op without a writer)."""
    if writer is None:
        return
    for key, value in row.items():
        if key != "epoch" and isinstance(value, (int, float)) and not math.isnan(value):
            writer.add_scalar(key, value, epoch)
