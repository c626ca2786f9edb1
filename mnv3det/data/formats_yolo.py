"""YOLO txt: one `labels/....txt` per image, rows `class cx cy w h` as fractions of the image size
(segmentation polygons, `class x1 y1 x2 y2 ...`, are read as their bounding boxes; pose rows, box + keypoints,
as their box: yolo_rows.py says how the two are told apart).

A split is an images folder (searched recursively, symlinked folders followed: see walk.py), a txt file
listing images (one path per line, relative to the txt's folder), or a list of these. The label of `.../images/a/b.jpg` is
`.../labels/a/b.txt` (the last `images` part of the path becomes `labels`); images outside any
`images` folder take the `.txt` beside them. A missing or empty label file means a background image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from mnv3det.data.checks import IMAGE_SUFFIXES
from mnv3det.data.empty_split import nearby_labels
from mnv3det.data.records import MAX_BOXES_PER_IMAGE, ImageRecord, Problem, RawBox, RawSample, printable
from mnv3det.data.walk import walk_files
from mnv3det.data.yolo_rows import new_box, settle_rows
from mnv3det.errors import UserError


def label_path_for(image: Path) -> Path:
    """`.../images/x/y.jpg` -> `.../labels/x/y.txt`; no `images` part -> `y.txt` beside the image."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def list_images(source: Path) -> list[Path]:
    """Images of one split source: a folder (recursive) or a txt file listing image paths."""
    if source.is_dir():
        return walk_files(source, IMAGE_SUFFIXES, "YOLO split folder")
    if source.is_file() and source.suffix.lower() == ".txt":
        images = []
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"YOLO image list {printable(source)} cannot be read ({err}); save it as UTF-8 text") from None
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(line)
                images.append(p if p.is_absolute() else (source.parent / p))
        return images
    raise UserError(f"YOLO split {source} is neither an images folder nor a .txt list of images; fix the data yaml")


def parse_label_file(label: Path, max_rows: int = MAX_BOXES_PER_IMAGE,
                     kpt_shape: tuple[int, int] | None = None) -> tuple[list[RawBox], list[Problem]]:
    """Rows `class cx cy w h` (normalised) -> RawBoxes with 1-based line numbers; bad rows -> Problems.

    Reads line by line and stops after `max_rows` non-empty rows (the rest is counted and reported once),
    so a runaway label file costs neither memory nor time. A file that cannot be read or decoded gives
    one `label_unreadable` problem and no boxes.
    """
    boxes: list[RawBox] = []
    problems: list[Problem] = []
    name = str(label)
    rows = 0
    try:
        with open(label, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                rows += 1
                if rows > max_rows:
                    total = rows + sum(1 for rest in f if rest.strip())
                    problems.append(Problem(name, lineno, "too_many_boxes", f"{total} rows; only the first {max_rows} are read"))
                    break
                box = _parse_row(fields, name, lineno, problems, kpt_shape)
                if box is not None:
                    boxes.append(box)
    except (OSError, UnicodeDecodeError) as err:
        return [], [Problem(name, None, "label_unreadable", str(err)[:120])]
    return boxes, problems


def _parse_row(fields: list[str], label: str, lineno: int, problems: list[Problem],
               kpt_shape: tuple[int, int] | None = None) -> RawBox | None:
    """One row -> a RawBox, or None with the reason appended to `problems`.

    A box row is `class cx cy w h`; longer rows are polygons or pose rows, decided as yolo_rows.py states
    (a polygon is read as its bounding box, so a segmentation dataset trains a detector as it is).
    """
    forms = "expected 5: class cx cy w h, or a polygon: class x1 y1 x2 y2 x3 y3 ..., or a pose row: class cx cy w h + keypoints"
    if len(fields) < 7 and len(fields) != 5:
        hint = " (a 6th field is the score `detect --save-conf` writes; drop it to train on these rows)" if len(fields) == 6 else ""
        problems.append(Problem(label, lineno, "bad_row", f"{len(fields)} fields, {forms}{hint}"))
        return None
    try:
        cls_f, *coords = (float(v) for v in fields)
    except ValueError:
        problems.append(Problem(label, lineno, "bad_row", f"non-numeric field in {' '.join(fields)[:60]!r}"))
        return None
    if not all(math.isfinite(v) for v in (cls_f, *coords)):
        problems.append(Problem(label, lineno, "bad_row", f"NaN or infinite value in {' '.join(fields)[:60]!r}"))
        return None
    if cls_f != int(cls_f):
        problems.append(Problem(label, lineno, "bad_row", f"class {fields[0]!r} is not an integer"))
        return None
    box, why = new_box(int(cls_f), coords, lineno, kpt_shape)
    if box is None:
        problems.append(Problem(label, lineno, "bad_row", why or f"{len(fields)} fields, {forms}"))
    return box


@dataclass
class YoloSplit:
    """One YOLO split: image sources (folders or txt lists)."""

    sources: list[Path]
    kpt_shape: tuple[int, int] | None = None  # the data yaml's `kpt_shape: [k, d]`: rows are box + k keypoints
    format: str = field(default="yolo", init=False)

    def images(self) -> list[Path]:
        images: list[Path] = []
        for src in self.sources:
            if not src.exists():
                raise UserError(f"YOLO split source {src} does not exist; check `path` and the split entries of the data yaml")
            images.extend(list_images(src))
        return images

    def location(self) -> str:
        return ", ".join(str(s.resolve()) for s in self.sources)

    def label_hint(self, records: list[ImageRecord]) -> str:
        """Where the labels of `records` were looked for, and label-like folders nearby (for a split without boxes)."""
        image = records[0].path
        label = label_path_for(image)
        how = ("as the image path with its last `images` folder replaced by `labels`" if label.parent != image.parent
               else "beside each image (its path has no folder named `images`, so there is no `labels` twin)")
        near = nearby_labels(image.parent, label.parent)
        return (f"labels were looked for {how}, e.g. {label}; "
                + (f"label-like files nearby: {', '.join(near)}" if near else "no label-like files nearby"))

    def label_dirs(self) -> list[Path]:
        """The `labels` folders that mirror folder sources (searched for labels without an image)."""
        dirs = []
        for src in self.sources:
            if src.is_dir():
                label_dir = label_path_for(src / "x.jpg").parent
                if label_dir != src and label_dir.is_dir():
                    dirs.append(label_dir)
        return dirs

    def key_files(self) -> list[Path]:
        files = [p for img in self.images() for p in (img, label_path_for(img))]
        files += [label for d in self.label_dirs() for label in walk_files(d, (".txt",), "YOLO label folder")]
        return files + [s for s in self.sources if s.is_file()]

    def items(self) -> tuple[list[tuple[int, Path]], list[Problem]]:
        """(index, image path) for every image, plus labels that name no image."""
        images = self.images()
        problems: list[Problem] = []
        # A label with no image beside it is a common sign of a half-copied dataset: report it.
        image_labels = {label_path_for(p) for p in images}
        for label_dir in self.label_dirs():
            for label in walk_files(label_dir, (".txt",), "YOLO label folder"):
                if label not in image_labels:
                    problems.append(Problem(str(label), None, "image_missing", "label file has no image"))
        return list(enumerate(images)), problems

    def parse(self, item: tuple[int, Path]) -> tuple[RawSample | None, list[Problem]]:
        index, image = item
        label = label_path_for(image)
        if not label.is_file():
            return RawSample(image, label, [], image_id=index), []  # background image
        boxes, problems = parse_label_file(label, kpt_shape=self.kpt_shape)
        if any(p.kind == "label_unreadable" for p in problems):
            return None, problems  # its boxes are unknown: training it as a background image would teach misses
        return RawSample(image, label, boxes, image_id=index), problems

    def settle(self, samples: list[RawSample]) -> list[Problem]:
        """Rows a whole split decides: polygon or pose rows (yolo_rows.settle_rows)."""
        return settle_rows(samples)
