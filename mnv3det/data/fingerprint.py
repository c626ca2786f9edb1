"""What a run was trained on, as a checkpoint records it (`DataInfo`), and what changed since.

`data_info(spec, {"train": records, ...})` fills names, nc, the dataset's ids and, per split, a fingerprint of its
file list: the image count and a sha1 of the sorted image paths relative to the dataset root (so a dataset moved
as a whole keeps its fingerprint). `data_changes(saved, now)` lists the differences in words, for `--resume` to
refuse a run whose classes were reordered or added, or whose splits hold other files.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from mnv3det.core.checkpoint import DataInfo
from mnv3det.data.records import ImageRecord


def file_list_fingerprint(records: list[ImageRecord], root: Any) -> dict[str, Any]:
    """{"images": count, "files": sha1 hex of the sorted image paths relative to `root` (a folder)}."""
    paths = sorted(os.path.relpath(r.path, root) for r in records)
    digest = hashlib.sha1("\n".join(paths).encode("utf-8", "surrogateescape")).hexdigest()
    return {"images": len(paths), "files": digest}


def data_info(spec: Any, splits: dict[str, list[ImageRecord]]) -> DataInfo:
    """The DataInfo a checkpoint records for `spec` (a DataSpec) and the records each split used."""
    return DataInfo(names=list(spec.names), category_ids=[int(c) for c in spec.category_ids], format=str(spec.format),
                    source=str(spec.source), nc=len(spec.names),
                    splits={k: file_list_fingerprint(v, spec.root) for k, v in splits.items() if v})


def _names_change(saved: list[str], now: list[str]) -> str | None:
    if saved == now:
        return None
    if sorted(saved) == sorted(now):
        return f"the class names were reordered (then {', '.join(saved[:8])}; now {', '.join(now[:8])})"
    added = [n for n in now if n not in saved]
    removed = [n for n in saved if n not in now]
    parts = [f"nc {len(saved)} -> {len(now)}"] if len(saved) != len(now) else []
    parts += [f"added {', '.join(added[:5])}"] if added else []
    parts += [f"removed {', '.join(removed[:5])}"] if removed else []
    return "the class names changed (" + "; ".join(parts or ["renamed"]) + ")"


def data_changes(saved: DataInfo, now: DataInfo) -> list[str]:
    """What differs between the data a checkpoint recorded and the data now, in words ([] = the same)."""
    changes = [c for c in [_names_change(list(saved.names), list(now.names))] if c]
    if saved.nc is not None and now.nc is not None and saved.nc != now.nc and not changes:
        changes.append(f"nc {saved.nc} -> {now.nc}")
    for split, then in saved.splits.items():
        current = now.splits.get(split)
        if current is None:
            changes.append(f"split '{split}' is gone")
        elif current != then:
            count = (f"{then.get('images')} images then, {current.get('images')} now"
                     if then.get("images") != current.get("images") else f"{current.get('images')} images, other files")
            changes.append(f"split '{split}' holds other images ({count})")
    if saved.splits:  # written by a version that records splits: one that appeared since is a change too
        changes += [f"split '{split}' is new" for split in now.splits if split not in saved.splits]
    return changes
