"""What one YOLO label row is: a box, a segmentation polygon, or a pose row (box + keypoints).

    class cx cy w h                          a box (5 fields)
    class x1 y1 x2 y2 x3 y3 ...              a polygon of 3 or more points: its bounding box (odd count >= 7)
    class cx cy w h px1 py1 [v1] px2 ...     a pose row: the box, then k keypoints of 2 or 3 values (5 + 2k / 5 + 3k)

An odd count of 7 or more fits both a polygon and a pose row of 2-value keypoints. The data yaml can say which:
`kpt_shape: [k, d]` makes rows of 5 + k*d fields pose rows. Without it the split decides, by this rule:

    The rows of more than 5 fields are pose rows when they all have one field count and, in at least
    POSE_FRACTION of them, the first four values form a box inside the image that holds every labelled
    keypoint. Otherwise each is a polygon where its count allows, a pose row where only that reading fits,
    and a bad row (named, skipped) where neither does.

A pose split's field count never varies, while polygons' point counts do, and a polygon's first two points read
as a box that holds the rest is a coincidence, not the rule; so pose and segmentation sets are each read right.
A pose split gets one `pose_rows` note (add `kpt_shape` to silence it).
"""

from __future__ import annotations

from dataclasses import dataclass

from mnv3det.data.records import Problem, RawBox, RawSample

Box = tuple[float, float, float, float]  # xyxy, fractions of the image size
POSE_FRACTION = 0.9  # a few pose rows whose keypoints stray outside their box do not turn a pose split into polygons
_EDGE = 0.01  # a box may overshoot the image by this much (rounding in converters)
_SLACK = 0.1  # a keypoint may lie this fraction of the box size outside it (annotators click near the edge)


@dataclass
class WideRow:
    """A row of more than 5 fields, before the split decides what it is (kept in `RawBox.pending`)."""

    fields: int
    box: Box  # the first four values read as cx cy w h
    holds_points: bool  # that box lies inside the image and holds every labelled keypoint
    polygon: Box | None  # the points' bounding box, when the count allows a polygon
    dims: int | None  # values per keypoint that split the rest: 3 (x y visibility) before 2 (x y); None: neither


def _box(cx: float, cy: float, w: float, h: float) -> Box:
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _keypoints(rest: list[float], dims: int) -> list[tuple[float, float]] | None:
    """Labelled keypoints of the values after the box (d = 3: x y visibility, 0 = not labelled; d = 2: (0, 0) is
    not labelled); None when the values do not split into keypoints of `dims` values."""
    if not rest or len(rest) % dims:
        return None
    if dims == 3:
        if any(v not in (0.0, 1.0, 2.0) for v in rest[2::3]):
            return None
        return [(x, y) for x, y, v in zip(rest[0::3], rest[1::3], rest[2::3]) if v > 0]
    return [(x, y) for x, y in zip(rest[0::2], rest[1::2]) if (x, y) != (0.0, 0.0)]


def keypoint_dims(rest: list[float]) -> int | None:
    """3 when the values after the box split into (x, y, visibility 0/1/2) keypoints, else 2 when into (x, y)."""
    return next((d for d in (3, 2) if _keypoints(rest, d) is not None), None)


def holds_points(coords: list[float]) -> bool:
    """Do the first four of `coords` (cx cy w h) form a box inside the image that holds the keypoints after them?"""
    cx, cy, w, h = coords[:4]
    x1, y1, x2, y2 = _box(cx, cy, w, h)
    dims = keypoint_dims(coords[4:])
    if dims is None or w <= 0 or h <= 0 or x1 < -_EDGE or y1 < -_EDGE or x2 > 1 + _EDGE or y2 > 1 + _EDGE:
        return False
    points = _keypoints(coords[4:], dims) or []
    dx, dy = _SLACK * w, _SLACK * h
    return all(x1 - dx <= x <= x2 + dx and y1 - dy <= y <= y2 + dy for x, y in points)


def read_wide_row(coords: list[float], kpt_shape: tuple[int, int] | None) -> tuple[Box | None, WideRow | None, str]:
    """A row of more than 5 fields (the class left out of `coords`) -> (box, pending, why not).

    With `kpt_shape` the row is a pose row of 5 + k*d fields (box now, pending None). Without it the row is kept
    pending for the split's decision, its box for now the polygon reading (or the pose one); neither reading
    possible -> (None, None, reason)."""
    fields = len(coords) + 1
    if kpt_shape is not None:
        k, d = kpt_shape
        if fields != 5 + k * d:
            return None, None, f"{fields} fields, expected 5 + {k} x {d} = {5 + k * d} (the data yaml's kpt_shape)"
        return _box(*coords[:4]), None, ""
    polygon = None
    if fields >= 7 and fields % 2 == 1:
        xs, ys = coords[0::2], coords[1::2]
        polygon = (min(xs), min(ys), max(xs), max(ys))
    row = WideRow(fields, _box(*coords[:4]), holds_points(coords), polygon, keypoint_dims(coords[4:]))
    if polygon is None and row.dims is None:
        return None, None, ""  # no reading at all: the caller's field-count message explains the forms
    return polygon or row.box, row, ""


def settle_rows(samples: list[RawSample]) -> list[Problem]:
    """Decide the pending rows of a split (see the module docstring); drops rows that fit no reading.

    Returns the problems: each dropped row, and one `pose_rows` note when the split reads as pose rows."""
    wide = [(s, b, b.pending) for s in samples for b in s.boxes if isinstance(b.pending, WideRow)]
    if not wide:
        return []
    counts = {row.fields for _, _, row in wide}
    pose = len(counts) == 1 and sum(row.holds_points for _, _, row in wide) >= POSE_FRACTION * len(wide)
    problems: list[Problem] = []
    dropped: set[int] = set()
    for sample, box, row in wide:
        box.pending = None
        if pose or (row.polygon is None and row.holds_points):
            box.xyxy = row.box
        elif row.polygon is not None:
            box.xyxy = row.polygon
        else:
            problems.append(Problem(str(sample.label_file), box.line, "bad_row",
                                    f"{row.fields} fields: not a polygon (even count), and as a pose row its box "
                                    "does not hold its keypoints"))
            dropped.add(id(box))
    for sample in {id(s): s for s, _, _ in wide}.values():
        sample.boxes = [b for b in sample.boxes if id(b) not in dropped]
    if pose:
        first_sample, first, _ = wide[0]
        n = counts.pop()
        dims = 3 if all(row.dims == 3 for _, _, row in wide) else 2
        problems.append(Problem(str(first_sample.label_file), first.line, "pose_rows",
                                f"{len(wide)} rows of {n} fields read as pose rows (one field count, boxes that hold "
                                f"their keypoints); add `kpt_shape: [{(n - 5) // dims}, {dims}]` to the data yaml to "
                                "say so"))
    return problems


def new_box(cls: int, coords: list[float], lineno: int, kpt_shape: tuple[int, int] | None) -> tuple[RawBox | None, str]:
    """A RawBox for a row of 5 or more numeric fields (class left out of `coords`), or (None, reason)."""
    if len(coords) == 4:
        return RawBox(cls, _box(*coords), normalised=True, line=lineno), ""
    box, pending, why = read_wide_row(coords, kpt_shape)
    if box is None:
        return None, why
    return RawBox(cls, box, normalised=True, line=lineno, pending=pending), ""
