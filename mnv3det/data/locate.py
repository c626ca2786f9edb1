"""Is `--data` something that can be read at all? A check of names and paths only (no image, label or OpenCV), so
the command line answers a mistyped path before it imports torch; `spec.load_data` asks the same question."""

from __future__ import annotations

from pathlib import Path

from mnv3det.errors import UserError, option

DEMO_NAMES = ("demo",)  # `--data demo` (or none) is the built-in demo set


def check_data_path(data: str | Path | None) -> Path | None:
    """The path `data` names, or None for the demo set; a UserError when it is neither a yaml nor a folder."""
    if data is None or str(data) in DEMO_NAMES:
        return None
    path = Path(data).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() in (".yaml", ".yml")):
        return path
    if not path.exists():
        raise UserError(f"{option('data', str(data))}: no such file or folder; give a data yaml or a dataset folder")
    raise UserError(f"{option('data', str(data))}: expected a data yaml (.yaml) or a dataset folder "
                    "(see datasets/README.md)")
