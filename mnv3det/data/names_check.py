"""Does the `names` list fit the labels? When most boxes of a split have a class outside `names`, it almost
certainly does not (3 names for 80-class labels, `RBCs` written for `RBC`), and training on what is left
would quietly learn the wrong thing. `names_mismatch` explains the likely cause; a data yaml that lists a
subset of the classes on purpose says `class_subset: true` and is not stopped.
"""

from __future__ import annotations

from collections import Counter

from mnv3det.core.yamlio import nearest_key
from mnv3det.data.records import ImageRecord, Problem

CLASS_DROP_KINDS = ("class_out_of_range", "unknown_class")
MISMATCH_FRACTION = 0.5  # "most boxes": more than half of a split's boxes dropped for their class


def _cause(dropped: Counter[tuple[str, str]], names: list[str]) -> str:
    """The likely cause, from the class ids or names the labels use that `names` lacks."""
    ids = [int(v) for (kind, v) in dropped if kind == "class_out_of_range" and v.lstrip("-").isdigit()]
    if ids and max(ids) >= len(names):
        return (
            f"the labels use class ids up to {max(ids)} but `names` has {len(names)} entries "
            f"(0..{len(names) - 1}): it probably belongs to another dataset"
        )
    values = Counter({v: n for (_, v), n in dropped.items()})
    shown = []
    for value, n in values.most_common(5):
        near = nearest_key(value, names)
        shown.append(f"`{value}` ({n} boxes{f'; `names` has `{near}`' if near else ''})")
    more = f" and {len(values) - 5} more" if len(values) > 5 else ""
    return f"the labels use classes that `names` lacks: {', '.join(shown)}{more}"


def names_mismatch(records: list[ImageRecord], problems: list[Problem], names: list[str], split: str) -> str | None:
    """A one-line explanation when more than MISMATCH_FRACTION of the split's boxes were dropped for their
    class, else None. Kept boxes are those in `records`; dropped ones are the class problems."""
    dropped = Counter((p.kind, p.value or "?") for p in problems if p.kind in CLASS_DROP_KINDS)
    n_dropped = sum(dropped.values())
    total = n_dropped + sum(r.num_boxes for r in records)
    if n_dropped == 0 or n_dropped <= MISMATCH_FRACTION * total:
        return None
    return (
        f"split '{split}': {n_dropped} of {total} boxes ({100 * n_dropped / total:.0f}%) have a class that is not in "
        f"`names`; {_cause(dropped, names)}. Fix `names:` in the data yaml, or, to train on the listed classes "
        "only and drop the others on purpose, add `class_subset: true` to it"
    )
