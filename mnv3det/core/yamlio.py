"""Reading the yaml files a user gives (data yaml, hyp yaml): one clear line for any mistake.

PyYAML's own message for a syntax error spans several lines and quotes the parser's state; users get
`<what> <file>, line L, column C: <problem>` instead (1-based, as editors count). `nearest_key` suggests
the known key a misspelt one was probably meant to be.

Aliases (`*a`) let a few hundred bytes stand for billions of values ("billion laughs"): PyYAML builds them as
shared references in no time, but anything that walks or prints the result (`str(names)`) then hangs. So a
document that expands to more than MAX_YAML_VALUES values, counting every alias at its full size, is refused.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable

import yaml

from mnv3det.errors import UserError

# Values a user's yaml may hold once aliases are expanded: a data yaml with 10 000 class names or a hyp file is
# far below; a nested-alias bomb is far above (and is counted only up to here, so the check itself is quick).
MAX_YAML_VALUES = 200_000


def expanded_size(value: Any, limit: int = MAX_YAML_VALUES) -> int:
    """The number of values in `value` with every shared (aliased) part counted at each use; counting stops
    past `limit` (so a self-referencing or exponentially nested document costs at most `limit` steps)."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)
    return count


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
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"{what} {path}, {yaml_error_line(err)}; fix the yaml syntax there") from None
    except RecursionError:  # deeply nested brackets
        raise UserError(f"{what} {path} nests too deeply to read; write it out flat") from None
    if expanded_size(data) > MAX_YAML_VALUES:
        raise UserError(f"{what} {path} expands to more than {MAX_YAML_VALUES} values (nested aliases `*name`?); "
                        "write the values out instead of aliasing them")
    return data


def nearest_key(key: str, known: Iterable[str], cutoff: float = 0.7) -> str | None:
    """The known key most like `key` (difflib ratio >= cutoff), e.g. `vall` -> `val`; None when none is close
    (0.7: `author` is not taken for `path` (0.6), while `valid` -> `val` (0.75) still is)."""
    match = difflib.get_close_matches(str(key), list(known), n=1, cutoff=cutoff)
    return match[0] if match else None
