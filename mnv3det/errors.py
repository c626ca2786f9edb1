"""User-facing errors.

Anything the user can fix (a bad option, a missing file, a malformed yaml or label) is raised as
`UserError` with a message that names the thing and says what to do. The CLI prints the message
without a traceback and exits with status 2; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

_NO_VALUE = object()  # `option(name)` without a value


class UserError(Exception):
    """An error the user can fix; its message is shown as is."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, carrying one line that says what was (not) written; the CLI prints it and exits with status 130."""


def error_line(err: BaseException, *, last: bool = False, limit: int | None = None) -> str:
    """One line of `err`'s message for a one-line error: the first (or `last`) non-empty line, cut to `limit`
    characters; the exception's type name when it has no message. (torch puts its "[enforce fail at ...]" location
    first and the reason last.)"""
    lines = str(err).strip().splitlines() or [type(err).__name__]
    line = lines[-1] if last else lines[0]
    return line if limit is None else line[:limit]


# How a message names an option: `--split test` on the command line, `split='test'` in Python. The CLI's command
# wrapper (cli/app.py `user_errors`) switches to the command-line spelling for the command's duration; everything
# else (the Python API, scripts, notebooks) gets the Python one. One switch, so no message is rewritten afterwards.
_CLI_SPELLING: ContextVar[bool] = ContextVar("mnv3det_cli_spelling", default=False)


def option(name: str, value: object = _NO_VALUE) -> str:
    """Option `name` (a config field, `max_det`) as the user wrote it: `--max-det 5` on the command line,
    `max_det=5` in Python; without `value`, `--max-det` / `max_det=`."""
    if _CLI_SPELLING.get():
        flag = "--" + name.replace("_", "-")
        return flag if value is _NO_VALUE else f"{flag} {value}"
    return f"{name}=" if value is _NO_VALUE else f"{name}={value!r}"


@contextmanager
def cli_spelling() -> Iterator[None]:
    """Messages raised inside name options as the command line spells them (`--split`)."""
    token = _CLI_SPELLING.set(True)
    try:
        yield
    finally:
        _CLI_SPELLING.reset(token)
