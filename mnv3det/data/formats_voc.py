"""Pascal VOC xml: `Annotations/ID.xml`, `JPEGImages/ID.jpg`, `ImageSets/Main/{split}.txt`.

VOC pixel coordinates are 1-based and inclusive; a box `xmin..xmax` becomes `xmin - 1 .. xmax` in the
0-based continuous coordinates used everywhere else. `difficult` is kept as a flag; the image size is
taken from the image itself (a different `<size>` in the xml is reported).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # the xml files are the user's own local files, not untrusted input
from dataclasses import dataclass, field
from pathlib import Path

from mnv3det.data.checks import IMAGE_SUFFIXES
from mnv3det.data.records import ImageRecord, Problem, RawBox, RawSample
from mnv3det.data.walk import walk_files
from mnv3det.errors import UserError

# The 20 Pascal VOC classes in their usual order; orders a dataset's names when they are all among them.
VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip


def read_split_ids(list_file: Path) -> list[str]:
    if not list_file.is_file():
        raise UserError(f"VOC split list {list_file} not found; expected ImageSets/Main/<split>.txt with one image id per line")
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"VOC split list {list_file} cannot be read ({err}); save it as UTF-8 text") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def voc_class_names(root: Path, list_files: list[Path]) -> list[str]:
    """Class names used by the xml files of the given splits: in VOC's order if all are VOC classes, else sorted."""
    names: set[str] = set()
    for lf in list_files:
        for image_id in read_split_ids(lf):
            xml = root / "Annotations" / f"{image_id}.xml"
            try:
                for obj in ET.parse(xml).getroot().iter("object"):
                    name = (obj.findtext("name") or "").strip()
                    if name:
                        names.add(name)
            except (OSError, ET.ParseError):
                continue  # reported when the split is checked
    if not names:
        raise UserError(f"no object names found in {root / 'Annotations'}; add `names:` to a data yaml")
    if names <= set(VOC_CLASSES):
        return [n for n in VOC_CLASSES if n in names]
    return sorted(names)


def find_image(root: Path, image_id: str, filename: str | None) -> Path:
    images = root / "JPEGImages"
    if filename:
        p = images / filename
        if p.is_file():
            return p
    for suffix in IMAGE_SUFFIXES:
        p = images / f"{image_id}{suffix}"
        if p.is_file():
            return p
    return images / (filename or f"{image_id}.jpg")


def _number(obj: ET.Element, tag: str) -> float:
    text = obj.findtext(f"bndbox/{tag}")
    if text is None:
        raise ValueError(f"<bndbox> has no <{tag}>")
    return float(text)


@dataclass
class VocSplit:
    """One VOC split: the VOC `root` and its `ImageSets/Main/<split>.txt` list; `names` in class order."""

    root: Path
    list_file: Path
    names: list[str]
    format: str = field(default="voc", init=False)

    def settle(self, samples: list[RawSample]) -> list[Problem]:
        return []  # every annotation is read on its own

    def label_hint(self, records: list[ImageRecord]) -> str:
        return f"boxes were looked for in {self.root / 'Annotations'}/<id>.xml (<object> entries)"

    def location(self) -> str:
        return f"{self.root.resolve()} (list {self.list_file.resolve()})"

    def key_files(self) -> list[Path]:
        ids = read_split_ids(self.list_file)
        images = self.root / "JPEGImages"  # every image, subfolders too: a <filename> may name one
        listed = walk_files(images, IMAGE_SUFFIXES, "VOC image folder") if images.is_dir() else []
        return [self.list_file] + [self.root / "Annotations" / f"{i}.xml" for i in ids] + listed

    def items(self) -> tuple[list[tuple[int, str]], list[Problem]]:
        return list(enumerate(read_split_ids(self.list_file))), []

    def parse(self, item: tuple[int, str]) -> tuple[RawSample | None, list[Problem]]:
        index, image_id = item
        xml = self.root / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            # An id listed without an xml: the image (if any) has no annotations we could trust.
            return None, [Problem(str(self.list_file), index + 1, "label_unreadable", f"{xml.name} not found")]
        try:
            root = ET.parse(xml).getroot()
        except (OSError, ET.ParseError) as err:
            return None, [Problem(str(xml), None, "label_unreadable", str(err)[:120])]
        declared = None
        try:
            declared = (int(root.findtext("size/width") or 0), int(root.findtext("size/height") or 0))
            declared = declared if min(declared) > 0 else None
        except ValueError:
            declared = None
        image = find_image(self.root, image_id, root.findtext("filename"))
        class_index = {n: i for i, n in enumerate(self.names)}
        boxes: list[RawBox] = []
        problems: list[Problem] = []
        for k, obj in enumerate(root.iter("object"), start=1):  # "line" = 1-based <object> index
            name = (obj.findtext("name") or "").strip()
            if name not in class_index:
                problems.append(Problem(str(xml), k, "unknown_class", f"object name {name!r} not in names", name))
                continue
            try:
                x1, y1, x2, y2 = (_number(obj, t) for t in ("xmin", "ymin", "xmax", "ymax"))
            except ValueError as err:
                problems.append(Problem(str(xml), k, "bad_row", str(err)))
                continue
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            boxes.append(RawBox(class_index[name], (x1 - 1, y1 - 1, x2, y2), difficult=difficult, line=k))
        return RawSample(image, xml, boxes, index, declared), problems
