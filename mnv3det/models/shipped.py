"""The pretrained weights that ship inside the package: `mnv3det/weights/<recipe>.pt`.

Each file is a weights-only checkpoint (fp16 EMA weights, its recipe, class names of the pretext task and a
`provenance` entry: generator settings, seed, samples seen, wall time, commit), written by `mnv3det pretrain`
(`weights/pretrained.pt` of a run) and copied here. README "Pretrained weights" has the command that re-makes
each one. Nothing is downloaded: a recipe without a file here trains from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def shipped_weights_path(recipe: str) -> Path | None:
    """The shipped file for a recipe name (`mnv3-small-min`, or a path whose stem is one), None when none ships."""
    name = Path(str(recipe)).stem if str(recipe).endswith((".yaml", ".yml")) else str(recipe)
    path = WEIGHTS_DIR / f"{name}.pt"
    return path if path.is_file() else None


def shipped_recipes() -> list[str]:
    """Recipe names with shipped weights."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def describe_provenance(provenance: dict[str, Any] | None) -> str:
    """One phrase for logs and tables: "16-class synthetic scenes, 61,440 samples, 1.3 CPU h, commit abc"."""
    if not provenance:
        return "no provenance recorded"
    generator = provenance.get("generator") or {}
    classes = 1 if generator.get("single_class") else len(generator.get("families") or [])
    hours = float(provenance.get("wall_s") or 0) / 3600
    return (f"{classes}-class synthetic scenes at {generator.get('size', '?')}, {int(provenance.get('samples_seen', 0)):,} "
            f"samples, {hours:.1f} h on {provenance.get('device', '?')}, commit {provenance.get('commit', '?')}")


__all__ = ["WEIGHTS_DIR", "describe_provenance", "shipped_recipes", "shipped_weights_path"]
