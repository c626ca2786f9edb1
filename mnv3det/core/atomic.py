"""Atomic outputs: every file or folder mnv3det writes for the user appears whole or not at all.

    with AtomicOutput(path) as tmp:      # tmp = PARENT/.NAME.1a2b3c4d.tmp (beside `path`: same filesystem)
        write(tmp)                       # the writer fills the temporary (a file, or a folder with folder=True)
        verify(tmp)                      # optional: load and check it before anyone sees it
    # normal exit: fsync, then os.replace(tmp, path); any exception (Ctrl-C included): tmp removed, path untouched

Why each step:
- the temporary sits in the target's folder, so the final rename is atomic (one filesystem), and a reader of
  `path` sees the earlier file or the new one, never half of one; a kill -9 at any moment leaves `path` whole;
- a random name per writer, created with O_EXCL: two writers of one target never share (or verify) a temporary;
  the last rename wins, and both files were complete;
- the writer holds an flock on its temporary while it lives, so `remove_stale(path)` deletes only what a killed
  writer left (a live one keeps its lock) and can run at the start of every write;
- files are created with mode 0666 minus the umask (mkstemp would force 0600), folders 0777 minus the umask.

`durable=False` leaves out the fsync (run outputs such as plots and labels: still whole or absent after a crash
of the process, though not after a power cut). `keep_suffix=True` ends the temporary's name with the target's suffix (`.best.onnx.1a2b3c4d.tmp.onnx`), for
writers and loaders that pick the format by suffix. Errors creating the temporary are OSErrors; `unwritable`
turns one into the standard one-line UserError naming the option.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
from pathlib import Path
from types import TracebackType

from mnv3det.errors import UserError

TMP_MARK = ".tmp"


class AtomicOutput:
    """Context manager: a fresh temporary beside `path`, renamed over `path` on success, removed on failure.

    `target` may be changed inside the block (e.g. to keep a file that failed its check under another name)."""

    def __init__(self, path: str | Path, *, folder: bool = False, keep_suffix: bool = False, durable: bool = True):
        self.path = Path(path)
        self.durable = durable  # fsync before the rename (False: whole or absent, but a power cut may lose it)
        self.target = self.path
        self.folder = folder
        self.keep_suffix = keep_suffix
        self.tmp: Path | None = None
        self._fd: int | None = None

    def __enter__(self) -> Path:
        return self.open()

    def open(self) -> Path:
        """Make the temporary now (an OSError when the folder cannot hold it) and return it; `with` then uses it."""
        if self.tmp is not None:
            return self.tmp
        self.path.parent.mkdir(parents=True, exist_ok=True)
        suffix = self.path.suffix if self.keep_suffix else ""
        while True:  # O_EXCL (or mkdir) on a random name: no two writers share a temporary
            tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}{TMP_MARK}{suffix}")
            try:
                if self.folder:
                    os.mkdir(tmp, 0o777)
                    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
                else:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until __exit__: remove_stale leaves a live writer's temporary alone
        self.tmp, self._fd = tmp, fd
        return tmp

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        assert self.tmp is not None and self._fd is not None
        done = False
        try:
            if kind is None:
                if not self.folder and self.durable:
                    _fsync(self.tmp)  # the data is on disk before the name points at it
                _replace(self.tmp, self.target)
                done = True
        finally:
            if not done:  # the block failed, or the rename did (e.g. a folder where the file should go)
                _remove(self.tmp)
            os.close(self._fd)


def _replace(staged: Path, final: Path) -> None:
    """Move `staged` to `final`; an earlier folder at `final` is moved aside first and deleted only afterwards."""
    if staged.is_dir() and final.is_dir() and not final.is_symlink():
        old = final.with_name(f".{final.name}.{secrets.token_hex(4)}.old{TMP_MARK}")
        os.replace(final, old)
        os.replace(staged, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, final)


def _fsync(path: Path) -> None:
    """fsync the file now at `path` (a writer may have replaced the inode the temporary was created with)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale(path: str | Path) -> list[Path]:
    """Delete the temporaries of `path` that killed writers left (`.NAME.*.tmp*`); a live writer's (locked) stays."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*{TMP_MARK}*"):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: someone is writing it now
            os.close(fd)
            continue
        try:
            _remove(tmp)
            removed.append(tmp)
        finally:
            os.close(fd)
    return removed


def unwritable(path: str | Path, err: OSError, option: str = "--output") -> UserError:
    """The one-line error for an output that cannot be written: a read-only folder, a path under a file, ..."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            return UserError(f"{option} {path}: {parent} is a file, not a folder; choose another {option}")
    if err.errno in (errno.EISDIR,) or path.is_dir():
        return UserError(f"{option} {path} is a folder; give a file name, e.g. {path / 'model'}")
    reason = err.strerror or type(err).__name__
    return UserError(f"{option} {path}: cannot write in {path.parent} ({reason}); choose a writable folder with "
                     f"{option}")


__all__ = ["AtomicOutput", "remove_stale", "unwritable", "TMP_MARK"]
