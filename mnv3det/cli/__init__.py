"""Command-line entry point: `mnv3det COMMAND ...` (also `python -m mnv3det`).

Each command is a thin wrapper in its own module; importing the module registers it on `app`.
"""

from __future__ import annotations

from mnv3det.core.threads import configure_openmp

# Before anything imports torch: libgomp reads its wait policy once, when it loads (see mnv3det/core/threads.py).
configure_openmp()

from mnv3det.cli.app import app  # noqa: E402

# Registration by import, in the order `--help` lists the commands.
from mnv3det.cli import train_cmd as _train  # noqa: F401,E402
from mnv3det.cli import pretrain_cmd as _pretrain  # noqa: F401,E402
from mnv3det.cli import val_cmd as _val  # noqa: F401,E402
from mnv3det.cli import detect_cmd as _detect  # noqa: F401,E402
from mnv3det.cli import export_cmd as _export  # noqa: F401,E402
from mnv3det.cli import profile_cmd as _profile  # noqa: F401,E402
from mnv3det.cli import benchmark_cmd as _benchmark  # noqa: F401,E402
from mnv3det.cli import check_app_cmd as _check_app  # noqa: F401,E402
from mnv3det.cli import data_cmd as _data  # noqa: F401,E402

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
