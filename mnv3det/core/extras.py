"""Optional packages: one line naming the pip extra that installs a missing one (`require`).

Shared by the runtimes (deploy/runtime) and the export formats (deploy/export), which import their packages only
when a format is used, so the base install and `--help` need none of them.
"""

from __future__ import annotations

import importlib.util

from mnv3det.errors import UserError


def require(packages: tuple[tuple[str, str], ...], what: str) -> None:
    """UserError (one line) naming the pip extra to install when any of `packages` (import name, extra) cannot be
    imported. what: the option or action that needs them, e.g. "--format openvino"."""
    missing = [(name, extra) for name, extra in packages if importlib.util.find_spec(name) is None]
    if missing:
        names = ", ".join(name for name, _ in missing)
        extras = ",".join(sorted({extra for _, extra in missing}))
        verb = "is" if len(missing) == 1 else "are"
        raise UserError(f"{what} needs {names}, which {verb} not installed: pip install 'mnv3det[{extras}]'")
