"""Listing the files of a dataset folder: the one walk every format uses (images, labels, cache keys).

- Symlinked folders inside a split are followed, each real folder once (a link back to a parent ends there), so
  a split assembled from links trains on all of its images, and their labels are found the same way.
- Entries that cannot be read or vanish during the walk (a busy /proc, a broken link) are skipped.
- A walk is bounded: the root of the file system is refused outright (`path: /` with `train: .`), pseudo file
  systems (/proc, /sys, /dev) are never entered, and more than MAX_WALK_ENTRIES entries is an error that says
  to point the split at its images folder, instead of minutes of walking a disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from mnv3det.errors import UserError

# Files and folders one split folder may hold: Open Images' 1.7 million training images fit; a whole disk does not.
MAX_WALK_ENTRIES = 3_000_000
_NEVER_ENTERED = ("/proc", "/sys", "/dev")  # kernel views, never a dataset


def walk_files(folder: Path, suffixes: tuple[str, ...], what: str = "split folder") -> list[Path]:
    """Sorted files under `folder` (recursively) whose lower-case suffix is in `suffixes`.

    what: how errors name the folder ("YOLO split folder", "COCO image folder").
    """
    real = Path(os.path.realpath(folder))
    if real == Path(real.anchor):
        raise UserError(f"{what} {folder} is the root of the file system; point the split at the dataset's images "
                        "folder (check `path:` and the split entries of the data yaml)")
    files: list[Path] = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of every folder walked: ends symlink loops
    entries = 0
    stack = [Path(folder)]
    while stack:
        current = stack.pop()
        try:
            st = current.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen or os.path.realpath(current) in _NEVER_ENTERED:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            listing = os.scandir(current)
        except OSError:
            continue
        with listing:
            for entry in listing:
                entries += 1
                if entries > MAX_WALK_ENTRIES:
                    raise UserError(f"{what} {folder} holds more than {MAX_WALK_ENTRIES:,} files and folders (the "
                                    "listing stopped there); point the split at the folder of its images")
                try:
                    if entry.is_dir(follow_symlinks=True):
                        stack.append(Path(entry.path))
                    elif os.path.splitext(entry.name)[1].lower() in suffixes and entry.is_file(follow_symlinks=True):
                        files.append(Path(entry.path))
                except OSError:  # vanished or unreadable
                    continue
    return sorted(files)
