"""Run folders: `runs/train/exp`, `runs/train/exp2`, ... shared by train, val and detect.

    run_dir = claim_run_dir(Path("runs/val"), "exp")          # created, and ours alone
    with run_lock(run_dir):                                   # (train) no second process writes into it
        ...

`claim_run_dir` creates the folder with an exclusive mkdir and takes the next name when another
process got there first, so two runs started together never share a folder. Call it only once the
run can start (after its inputs were checked), so failed starts leave no empty folders behind.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator

from mnv3det.errors import UserError

LOCK_NAME = ".mnv3det.lock"


def increment_path(base: Path, name: str, exist_ok: bool = False) -> Path:
    """The first free run folder name `base/name`, `base/name2`, `base/name3`, ... (not created).

    base: the project folder (e.g. runs/val); name: the run name (e.g. exp).
    With exist_ok, `base/name` is returned even when it exists (reuse the folder).
    A name that already ends in digits (exp3) gets the next free number after the highest one in use
    (exp4, exp5...), never a glued name like exp32. Only a suggestion: `claim_run_dir` creates it.
    """
    base = Path(base)
    first = base / name
    if exist_ok or not first.exists():
        return first
    match = re.fullmatch(r"(.*?)(\d*)", name)
    stem = match.group(1) if match and match.group(1) else name
    pattern = re.compile(rf"{re.escape(stem)}(\d*)")
    used = [1]  # the plain name counts as number 1
    if base.is_dir():
        for entry in base.iterdir():
            found = pattern.fullmatch(entry.name)
            if found and found.group(1):
                used.append(int(found.group(1)))
    n = max(used) + 1
    while (base / f"{stem}{n}").exists():
        n += 1
    return base / f"{stem}{n}"


def claim_run_dir(base: Path, name: str, exist_ok: bool = False, *, option: str = "--project") -> Path:
    """Create and return a run folder that no other process holds: `base/name`, else the next free name.

    With exist_ok, `base/name` is reused when it exists. A project folder that cannot be written (read-only,
    a file in the way) is a UserError naming `option`.
    """
    base = Path(base)
    try:
        base.mkdir(parents=True, exist_ok=True)
        if exist_ok:
            (base / name).mkdir(exist_ok=True)
            return base / name
        for _ in range(1000):  # each failed mkdir means another process took that name: try the next
            candidate = increment_path(base, name)
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as err:  # PermissionError, NotADirectoryError, FileExistsError (a file named like the folder)
        raise UserError(f"{option} {base}: cannot create the run folder {base / name} ({err.strerror or err}); "
                        f"pass a writable folder with {option}") from None
    raise UserError(f"{option} {base}: no free run folder name after {name}..{name}1000; pass another --name")


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `run_dir` for the block (released when the process ends, even by kill -9).

    A second process that tries to write into the same run folder (--exist-ok, or --resume of a run that
    still runs) gets a UserError instead of interleaving its results with the first one's.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    path = Path(run_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{run_dir} is in use by another running mnv3det process; wait for it to end or pass "
                            "another --name") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock; the empty lock file stays (removing it would race)
