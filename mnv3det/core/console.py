"""The one place rich consoles are made, so every command wraps (or does not) the same way.

On a terminal, output uses the terminal's width. Piped or redirected to a file, nothing is wrapped or cut:
a line is as long as its text and a table as wide as its content (rich would otherwise assume 80 columns and
break file names mid-word). `COLUMNS=N` still sets a width when a user wants one.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

PIPE_WIDTH = 100_000  # "unbounded": tables only take the width their content needs (no `expand`)


def make_console(*, stderr: bool = False, quiet: bool = False, **options: Any) -> Console:
    """A rich Console on stdout (or stderr): the terminal's width, else no wrapping (see the module docstring)."""
    console = Console(stderr=stderr, quiet=quiet, **options)
    if console.is_terminal or "width" in options or os.environ.get("COLUMNS"):
        return console
    return Console(stderr=stderr, quiet=quiet, width=PIPE_WIDTH, soft_wrap=True, **options)
