"""PyTorch, as the format records see it (deploy/formats.py "pytorch"): a .pt checkpoint run by backends.TorchBackend."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from mnv3det.deploy.runtime.backends import TorchBackend


def Backend(path: str | Path, device: Any = "cpu", threads: int | None = None) -> TorchBackend:  # noqa: N802
    """The checkpoint's model, BN fused, in eval mode."""
    return TorchBackend.from_checkpoint(path, torch.device(device), threads)


def runner(path: Path, threads: int) -> tuple[Callable[[Any], Any], None]:
    """(run, None): one forward of the fused model on a float32 array; any input shape."""
    from mnv3det.models.checkpoint import load_model

    torch.set_num_threads(threads)
    module, _ = load_model(path, device="cpu", fuse=True)

    def run(x: Any) -> Any:
        with torch.inference_mode():
            return module(torch.as_tensor(x))

    return run, None


def runs_here() -> bool:
    """PyTorch runs on every system mnv3det supports."""
    return True
