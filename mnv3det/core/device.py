"""`--device` parsing shared by every command, and the one GPU sync the timers use."""

from __future__ import annotations

import torch

from mnv3det.errors import UserError


def select_device(spec: str | None = None) -> torch.device:
    """'' / None -> cuda:0 when available else cpu; 'cpu'; '0' or 'cuda:0' -> that GPU.

    A GPU that is not there is a clear error, never a silent fall-back to CPU.
    """
    spec = (spec or "").strip().lower()
    if spec in ("", "auto"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    index = spec.removeprefix("cuda:").removeprefix("cuda")
    if index == "":
        index = "0"
    if not index.isdigit():
        raise UserError(f"--device {spec!r} is not understood; use 'cpu', a GPU index such as '0', or 'cuda:0'")
    if not torch.cuda.is_available():
        raise UserError(f"--device {spec!r} asks for a GPU but CUDA is not available here; use --device cpu")
    if int(index) >= torch.cuda.device_count():
        raise UserError(f"--device {spec!r}: only {torch.cuda.device_count()} GPU(s) visible")
    return torch.device(f"cuda:{index}")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (so a timer measures it); nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
