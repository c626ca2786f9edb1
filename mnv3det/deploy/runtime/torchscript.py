"""TorchScript, as the format records see it (deploy/formats.py): a .torchscript file run by
backends.TorchScriptBackend (torch.jit.load; torchvision is imported first, for the nms op of an --nms file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from mnv3det.deploy.runtime.backends import TorchScriptBackend


def Backend(path: str | Path, device: Any = "cpu", threads: int | None = None) -> TorchScriptBackend:  # noqa: N802
    return TorchScriptBackend(path, torch.device(device), threads)


def runner(path: Path, threads: int) -> tuple[Callable[[Any], Any], tuple[int, ...] | None]:
    """(run, input shape or None) for the timing worker: one call of the traced module on a float32 array."""
    torch.set_num_threads(threads)
    backend = TorchScriptBackend(path, torch.device("cpu"), threads)

    def run(x: Any) -> Any:
        with torch.inference_mode():
            return backend.module(torch.as_tensor(x))

    return run, backend.fixed_shape


def runs_here() -> bool:
    """torch.jit runs on every system mnv3det supports."""
    return True
