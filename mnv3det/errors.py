"""User-facing errors.

Anything the user can fix (a bad option, a missing file, a malformed yaml or label) is raised as
`UserError` with a message that names the thing and says what to do. The CLI prints the message
without a traceback and exits with status 2; everything else is a bug and keeps its traceback.
"""


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
