"""How verification results read: a pass must not read like a failure, and a change in mAP says which way it went.

Shared by `export` (onnx/torchscript) and the edge formats' table, so both say the same thing the same way.
"""

from __future__ import annotations


def raw_diff_text(passed: bool, abs_diff: float, tolerance: float, rel_diff: float | None = None,
                  excess: float | None = None) -> str:
    """The raw-output comparison with PyTorch. The test is |diff| <= tol + tol x |PyTorch value| per element, so a
    largest |diff| above `tol` alone (on a box coordinate of hundreds of pixels) is still a pass: say the test first.
    """
    rule = f"|diff| <= {tolerance:g} + {tolerance:g} x |PyTorch value|"
    largest = f"largest |diff| {abs_diff:.1e}" + (f", relative {rel_diff:.1e}" if rel_diff is not None else "")
    if passed:
        return f"[green]ok[/]: {rule} on every output ({largest})"
    over = f" by up to {excess:.1e}" if excess is not None else ""
    return f"[red]MISMATCH[/]: outputs break {rule}{over} ({largest})"


def map_change_text(before: float, after: float) -> str:
    """'lost 0.85 points', 'gained 0.12 points' or 'unchanged' for mAP going from `before` to `after` (0..1)."""
    points = (after - before) * 100
    if abs(points) < 0.005:
        return "unchanged"
    return f"{'gained' if points > 0 else 'lost'} {abs(points):.2f} points"
