"""Memory a step needs against memory the machine has: a one-line error before the work, never a kill in the middle.

    require(needed_bytes, "export --format onnx-int8 at 640", "use a smaller --imgsz or free memory")

`available_bytes()` is the kernel's MemAvailable (what can be allocated without swapping; page cache counts as
free), read from /proc/meminfo, else psutil, else unknown (no check). Estimates of what a step needs live with the
step (e.g. `deploy.export.pipeline.require_export_memory`); `activation_bytes(model, shape)` measures the part that grows
with the input: the float tensors one forward produces, as an exporter's or calibrator's runtime holds them.
"""

from __future__ import annotations

from typing import Any

from mnv3det.errors import UserError

MB = 2**20


def available_bytes() -> int | None:
    """MemAvailable in bytes, or None when this system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # psutil absent or unsupported here: no check
        return None


def gigabytes(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


def require(needed: int, step: str, remedy: str) -> None:
    """A one-line UserError when `step` needs `needed` bytes more than this process holds now, and the machine has
    less than that available."""
    available = available_bytes()
    if available is not None and needed > available:
        raise UserError(f"{step} needs about {gigabytes(needed)} of memory and {gigabytes(available)} is available; "
                        f"{remedy}")


def activation_bytes(model: Any, shape: tuple[int, int, int, int]) -> int:
    """Bytes of the float tensors every module of `model` outputs on one zero input of `shape` (B, 3, H, W), run in
    eval mode (the model's mode is restored; nothing else changes)."""
    import torch

    total = 0

    def count(module: Any, args: Any, out: Any) -> None:
        nonlocal total
        for t in out if isinstance(out, (list, tuple)) else [out]:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                total += t.numel() * t.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    training = model.training
    model.eval()  # eval: BN statistics are not touched
    try:
        with torch.no_grad():
            model(torch.zeros(shape, dtype=next(model.parameters()).dtype, device=next(model.parameters()).device))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return total


__all__ = ["MB", "activation_bytes", "available_bytes", "gigabytes", "require"]
