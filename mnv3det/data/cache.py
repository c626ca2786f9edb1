"""On-disk cache of checked records, so a second start of a large dataset does not re-parse it.

One json file per split under `cache_dir()/records/` (`$MNV3DET_CACHE`, else ~/.cache/mnv3det),
named by a hash of the split's description and keyed by the size and mtime of every image and label
file. json, not pickle: a cache file is data, never code. A stale or unreadable cache is rebuilt and
the reason logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from mnv3det.data.records import ImageRecord, Problem

log = logging.getLogger("mnv3det.data")
CACHE_VERSION = 4  # 2: problems carry a value; tiny / too-many-boxes checks; 3: pose rows, repeated images; 4: strips


def cache_dir() -> Path:
    """`$MNV3DET_CACHE` or ~/.cache/mnv3det."""
    env = os.environ.get("MNV3DET_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mnv3det"


def files_key(files: list[Path], extra: str) -> str:
    """sha1 over (path, size, mtime_ns) of every file (missing files count as absent) and `extra`.

    Paths enter as their bytes (os.fsencode), so a file name that is not valid UTF-8 keys the cache too.
    """
    h = hashlib.sha1(f"v{CACHE_VERSION}|{extra}".encode("utf-8", "surrogateescape"))
    for p in files:
        h.update(os.fsencode(p))
        try:
            st = os.stat(p)
            h.update(f"|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(b"|-\n")
    return h.hexdigest()


def cache_path(description: str) -> Path:
    digest = hashlib.sha1(description.encode("utf-8", "surrogateescape")).hexdigest()
    return cache_dir() / "records" / (digest[:16] + ".json")


def load_cache(path: Path, key: str) -> tuple[list[ImageRecord], list[Problem]] | None:
    """Records and problems from `path` when its key matches `key`; None (and a log line) otherwise."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("key") != key:
            log.info("records cache %s is stale (files changed); rebuilding", path)
            return None
        records = [ImageRecord.from_json(r) for r in data["records"]]
        problems = [Problem.from_json(p) for p in data["problems"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("records cache %s is unreadable (%s); rebuilding", path, err)
        return None
    return records, problems


def save_cache(path: Path, key: str, records: list[ImageRecord], problems: list[Problem]) -> None:
    """Write atomically (temp file + rename); a read-only cache dir only costs a log line."""
    data = {
        "key": key,
        "version": CACHE_VERSION,
        "records": [r.to_json() for r in records],
        "problems": [p.to_json() for p in problems],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError as err:
        log.warning("could not write records cache %s: %s", path, err)


def first_report(description: str, problems: list[Problem]) -> bool:
    """True the first time these `problems` of the split `description` are to be shown (then remembered beside
    the records cache), False when the same list was shown before: later commands print a one-line count instead
    of the same tables again. A changed list (the data was edited) counts as new."""
    digest = hashlib.sha1(json.dumps([p.to_json() for p in problems], sort_keys=True).encode("utf-8", "surrogateescape"))
    marker = cache_path(description).with_suffix(".reported")
    try:
        if marker.is_file() and marker.read_text() == digest.hexdigest():
            return False
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(digest.hexdigest())
    except OSError as err:  # a read-only cache: show the tables every time
        log.warning("could not remember shown problems in %s: %s", marker, err)
    return True
