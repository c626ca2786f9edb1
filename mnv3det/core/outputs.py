"""The one path for files a run writes (detect, val): whole or absent, one line when the disk refuses, recorded.

    files = RunFiles(run_dir)                              # reads run_dir/.mnv3det-files (what earlier runs wrote)
    files.remove_earlier("labels")                         # --exist-ok: only files an mnv3det run wrote there go
    files.write(run_dir / "labels" / "a.txt", b"0 0.5 ...") # temporary + rename; recorded in the manifest
    write_output(path, data)                               # the same without a manifest (plots, json, ...)

Why: `--exist-ok` reuses a folder that may be the user's own (`--project . --name mydata`), so a run removes only
what the manifest says an mnv3det run wrote, never anything else. The manifest is appended one whole line per
file (one `write` on an O_APPEND descriptor: a kill leaves at most a cut last line, which is ignored) and is
rewritten atomically when files are removed. Every write goes through `AtomicOutput`, so a full or read-only
disk leaves no empty or partial file and becomes one `UserError` naming the folder (`disk_error`).

`refuse_overlap(output, sources, option)`: an output folder that is, holds or lies inside a source (the images
being read, a dataset root) is refused in one line before anything runs.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterable

from mnv3det.core.atomic import AtomicOutput, unwritable
from mnv3det.errors import UserError

MANIFEST_NAME = ".mnv3det-files"  # one relative POSIX path per line: the files mnv3det runs wrote in this folder
_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_error(path: str | Path, err: OSError, option: str = "--project") -> UserError:
    """The one line for a write the disk refused: full (ENOSPC, quota) or read-only / not permitted."""
    path = Path(path)
    if err.errno in _FULL:
        return UserError(f"cannot write {path.name} in {path.parent}: the disk is full ({os.strerror(err.errno)}); "
                         f"free space there or choose another folder with {option}")
    return unwritable(path, err, option)


def write_output(path: str | Path, data: bytes | str, *, option: str = "--project", durable: bool = False) -> Path:
    """Write `data` to `path` whole or not at all (temporary beside it, then a rename); an OSError (full disk,
    read-only folder) becomes `disk_error`. durable: fsync before the rename (checkpoints; a plot need not)."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with AtomicOutput(path, durable=durable) as tmp:
            _fill(tmp, payload)
    except OSError as err:
        raise disk_error(path, err, option) from None
    return path


def _fill(tmp: Path, payload: bytes) -> None:
    """The bytes into the temporary (the one raw write of run outputs; tests make it fail as a full disk would)."""
    with open(tmp, "wb") as f:
        f.write(payload)


class RunFiles:
    """The files mnv3det runs wrote in one run folder (its manifest), and the one way to write more of them."""

    def __init__(self, run_dir: str | Path, *, option: str = "--project"):
        self.run_dir = Path(run_dir)
        self.option = option
        self.manifest = self.run_dir / MANIFEST_NAME
        self.recorded: set[str] = set(self._read())

    def _read(self) -> list[str]:
        try:
            text = self.manifest.read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        return [line for line in lines[:-1] if line]  # the last piece has no newline: cut by a kill, or empty

    def _relative(self, path: Path) -> str:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(self.run_dir)).as_posix()

    def record(self, path: str | Path) -> None:
        """Add `path` (inside the run folder) to the manifest: one whole line, appended."""
        rel = self._relative(Path(path))
        if rel in self.recorded:
            return
        line = (rel + "\n").encode("utf-8", "surrogateescape")
        try:
            fd = os.open(self.manifest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                if os.write(fd, line) != len(line):  # a short write: the disk filled up under it
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            finally:
                os.close(fd)
        except OSError as err:
            raise disk_error(self.manifest, err, self.option) from None
        self.recorded.add(rel)

    def write(self, path: str | Path, data: bytes | str) -> Path:
        """`write_output` into the run folder, recorded in the manifest first (so a kill never hides a file)."""
        path = Path(path)
        self.claim(path)
        return write_output(path, data, option=self.option)

    def claim(self, path: str | Path) -> Path:
        """Record `path` before writing it; a file already there that no mnv3det run recorded is the user's:
        a UserError, never overwritten."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise disk_error(path, err, self.option) from None
        if (path.exists() or path.is_symlink()) and self._relative(path) not in self.recorded:
            raise UserError(f"{path} exists and no mnv3det run wrote it (not in {self.manifest.name}); it is left "
                            f"as it is: choose another --name or {self.option}")
        self.record(path)
        return path

    def remove_earlier(self, *names: str) -> int:
        """Remove what earlier runs recorded under each of `names` (a file such as "results.csv", or a subfolder
        such as "labels": every recorded file in it); nothing else. Returns how many files were removed."""
        gone = [rel for rel in self.recorded if any(rel == n or rel.startswith(n.rstrip("/") + "/") for n in names)]
        removed = 0
        for rel in gone:
            target = self.run_dir / rel
            if target.is_file() and not target.is_symlink():
                target.unlink()
                removed += 1
        if gone:
            self.recorded -= set(gone)
            body = "".join(f"{rel}\n" for rel in sorted(self.recorded))
            write_output(self.manifest, body.encode("utf-8", "surrogateescape"), option=self.option)
            for name in names:
                _remove_empty_folders(self.run_dir / name)
        return removed


def _remove_empty_folders(top: Path) -> None:
    """Remove `top` and folders under it that are empty now (an earlier run made them; a user's files keep theirs)."""
    if not top.is_dir() or top.is_symlink():
        return
    for folder in sorted((p for p in top.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts)):
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: something that is not ours
    try:
        top.rmdir()
    except OSError:
        pass


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def refuse_overlap(output: str | Path, sources: Iterable[str | Path], option: str = "--project", *,
                   inside: bool = True) -> None:
    """A UserError when the folder `output` is or holds one of `sources` (files or folders being read), or, with
    `inside`, lies inside a source folder. Paths are compared resolved (`./mydata` and `a/../mydata` meet)."""
    out = Path(output).resolve()
    for source in sources:
        src = Path(source).resolve()
        if _inside(src, out):
            what = "is" if src == out else "holds"
            raise UserError(f"{option}: the output folder {output} {what} the source {source}; writing there could "
                            "overwrite or remove your files: choose another --project or --name")
        if inside and src.is_dir() and _inside(out, src):
            raise UserError(f"{option}: the output folder {output} lies inside the source {source}; choose a "
                            "--project outside it")


__all__ = ["MANIFEST_NAME", "RunFiles", "disk_error", "refuse_overlap", "write_output"]
