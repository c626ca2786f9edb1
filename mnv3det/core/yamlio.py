"""Reading the yaml files a user gives (data yaml, hyp yaml): one clear line for any mistake.

PyYAML's own message for a syntax error spans several lines and quotes the parser's state; users get
`<what> <file>, line L, column C: <problem>` instead (1-based, as editors count). `nearest_key` suggests
the known key a misspelt one was probably meant to be.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable

import yaml

from mnv3det.errors import UserError


def yaml_error_line(err: yaml.YAMLError) -> str:
    """`line L, column C: problem` for a PyYAML error, plus where the construct it was reading began when that
    is elsewhere (an unclosed `[` is noticed lines later); without a position when PyYAML gives none."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "context", None) or str(err).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and start is not None and mark is not None and start.line != mark.line:
        problem = f"{problem} ({context} started at line {start.line + 1}, column {start.column + 1})"
    return f"{where}{problem}"


def read_yaml(path: str | Path, what: str = "yaml file") -> Any:
    """The parsed content of `path` (None for an empty file); a UserError naming `what`, the file and the
    line and column of a syntax error; a missing, unreadable or non-UTF-8 file is a UserError too."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} {path} not found") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise UserError(f"{what} {path} cannot be read: {err.strerror or err}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"{what} {path}, {yaml_error_line(err)}; fix the yaml syntax there") from None


def nearest_key(key: str, known: Iterable[str], cutoff: float = 0.7) -> str | None:
    """The known key most like `key` (difflib ratio >= cutoff), e.g. `vall` -> `val`; None when none is close
    (0.7: `author` is not taken for `path` (0.6), while `valid` -> `val` (0.75) still is)."""
    match = difflib.get_close_matches(str(key), list(known), n=1, cutoff=cutoff)
    return match[0] if match else None
