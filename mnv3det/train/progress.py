"""What a training run prints: the live progress of an epoch and the one-line epoch summary.

On a terminal the epoch shows a rich progress bar (losses, images/s, memory, ETA). When the output
is not a terminal (a log file, CI) a bar cannot redraw, so a plain line with the batch, images/s and
ETA is printed every `PLAIN_EVERY_S` seconds instead.
"""

from __future__ import annotations

import resource
from typing import Any

import torch
from rich.console import Console
from torch import Tensor

LOSS_NAMES = ("box", "obj", "cls")
PLAIN_EVERY_S = 30.0  # seconds between progress lines when the output is not a terminal
REFRESH_S = 0.5  # seconds between updates of the display (reading the losses syncs a GPU)


def memory_text(device: torch.device) -> str:
    """GPU memory reserved, or this process's peak resident memory on CPU."""
    if device.type == "cuda":
        return f"{torch.cuda.memory_reserved(device) / 1e9:.2f}G gpu"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f}G rss"  # ru_maxrss is KiB on Linux


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class EpochProgress:
    """Progress of one epoch: a rich bar on a terminal, a plain line every PLAIN_EVERY_S seconds elsewhere."""

    def __init__(self, console: Console, enabled: bool, epoch: int, epochs: int, total: int) -> None:
        self.console, self.enabled, self.total = console, enabled, total
        self.refresh_s = REFRESH_S
        self.title = f"epoch {epoch + 1}/{epochs}"
        self.plain = enabled and not console.is_terminal
        self.last_plain = 0.0  # elapsed seconds at the last plain line
        self.bar = None
        if enabled and not self.plain:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console, transient=True,
            )
            self.task = self.bar.add_task(self.title, total=total, info="")

    def __enter__(self) -> "EpochProgress":
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()

    def show(self, done: int, mean_losses: Tensor, images: int, elapsed: float, device: torch.device,
             names: tuple[str, ...] = LOSS_NAMES) -> None:
        """`done` batches finished in `elapsed` seconds; mean_losses (3,) so far, named by `names`."""
        rate = images / max(elapsed, 1e-9)
        if self.bar is not None:
            losses = " ".join(f"{n} {v:.4f}" for n, v in zip(names, mean_losses.tolist()))
            self.bar.update(self.task, completed=done, info=f"{losses} | {rate:.1f} img/s | {memory_text(device)}")
        elif self.plain and elapsed - self.last_plain >= PLAIN_EVERY_S and done < self.total:
            eta = elapsed / done * (self.total - done)
            self.console.print(f"{self.title} batch {done}/{self.total} | {rate:.1f} img/s | ETA {_clock(eta)}",
                               highlight=False)
            self.last_plain = elapsed


def summary_line(epoch: int, epochs: int, stats: Any, result: Any, device: torch.device,
                 eta_s: float | None = None) -> str:
    """The line printed after each epoch: losses, speed and its split, memory, validation metrics, and (eta_s) the
    time the remaining epochs should take."""
    losses = " ".join(f"{n} {v:.4f}" for n, v in zip(stats.names, stats.losses))
    total = max(stats.data_s + stats.forward_s + stats.backward_s, 1e-9)
    split = (f"data {100 * stats.data_s / total:.0f}% fwd {100 * stats.forward_s / total:.0f}% "
             f"bwd {100 * stats.backward_s / total:.0f}%")
    metrics = (f" | P {result.precision:.3f} R {result.recall:.3f} mAP50 {result.map50:.4f} "
               f"mAP50-95 {result.map:.4f}") if result is not None else ""
    skipped = f" | [red]{stats.skipped} non-finite batches skipped[/]" if stats.skipped else ""
    eta = f" | run ETA {_clock(eta_s)}" if eta_s is not None and epoch + 1 < epochs else ""
    return (f"epoch {epoch + 1}/{epochs}: {losses} | {stats.images_per_s:.1f} img/s ({split}) | "
            f"{memory_text(device)}{metrics}{skipped}{eta}")


class Deferred:
    """Collects `print` calls and replays them later (messages of the set-up, shown after the config table)."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.calls.append((objects, kwargs))

    def replay(self, console: Console) -> None:
        for objects, kwargs in self.calls:
            console.print(*objects, **kwargs)
        self.calls.clear()
