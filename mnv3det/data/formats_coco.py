"""COCO json (`instances_*.json`) + an image folder.

Category ids are kept as the dataset's own ids (`DataSpec.category_ids`) and mapped to contiguous
class indices in ascending id order. `iscrowd` boxes stay in the record with crowd=True (training
ignores them; evaluation passes them to pycocotools). `ImageRecord.image_id` is the json's image id.
Two `images` entries with one id are reported (with both file names) and skipped with the id's
annotations: which image those boxes belong to cannot be told.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mnv3det.data.checks import IMAGE_SUFFIXES
from mnv3det.data.records import ImageRecord, Problem, RawBox, RawSample
from mnv3det.data.walk import walk_files
from mnv3det.errors import UserError


def read_coco_json(path: Path) -> dict[str, Any]:
    """The parsed json, with a clear error for a missing or malformed file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"COCO annotations {path} not found; check the `annotations` entry of the data yaml") from None
    except (OSError, ValueError) as err:
        raise UserError(f"COCO annotations {path} cannot be read as json ({err}); re-export or re-download it") from None
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise UserError(f"COCO annotations {path} has no `{key}` list; is it an instances_*.json file?")
    return data


def as_int(value: Any) -> int | None:
    """An integral json id or size (7, 7.0 or "7") as int; None for NaN, inf, fractions, bools and anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def coco_categories(path: Path) -> tuple[list[int], list[str]]:
    """(category ids ascending, their names) of a COCO json."""
    cats = read_coco_json(path)["categories"]
    ids = [as_int(c.get("id")) if isinstance(c, dict) else None for c in cats]
    if None in ids:
        k = ids.index(None) + 1
        raise UserError(f"COCO annotations {path}: `categories` entry {k} has no integer `id`; fix the json")
    if len(set(ids)) != len(ids):
        raise UserError(f"COCO annotations {path}: `categories` repeats an id; each category needs its own id")
    order = sorted(range(len(cats)), key=lambda i: ids[i])
    return [int(ids[i]) for i in order], [str(cats[i].get("name", ids[i])) for i in order]


@dataclass
class CocoSplit:
    """One COCO split: `images` folder and `annotations` json; `category_ids[i]` is class i's id."""

    images: Path
    annotations: Path
    category_ids: list[int]
    format: str = field(default="coco", init=False)

    @cached_property
    def _data(self) -> dict[str, Any]:
        return read_coco_json(self.annotations)

    def settle(self, samples: list[RawSample]) -> list[Problem]:
        return []  # every annotation is read on its own

    def label_hint(self, records: list[ImageRecord]) -> str:
        return f"boxes were looked for in {self.annotations} (annotations whose image_id names these images)"

    def location(self) -> str:
        return f"{self.images.resolve()} (annotations {self.annotations.resolve()})"

    def key_files(self) -> list[Path]:
        # The json plus every image under the folder, subfolders too (a `file_name` may hold a folder); not a
        # parse of the json (which can be 0.5 GB).
        if not self.images.is_dir():
            raise UserError(f"COCO image folder {self.images} not found; check the `images` entry of the data yaml")
        return [self.annotations] + walk_files(self.images, IMAGE_SUFFIXES, "COCO image folder")

    def items(self) -> tuple[list[RawSample], list[Problem]]:
        samples, ambiguous, problems = self._image_entries()
        name = str(self.annotations)
        id_to_class = {cid: i for i, cid in enumerate(self.category_ids)}
        dropped: dict[int, int] = defaultdict(int)  # ambiguous image id -> annotations skipped with it
        for index, ann in enumerate(self._data.get("annotations", [])):
            line = index + 1  # "line" = 1-based position in the annotations list
            ann = ann if isinstance(ann, dict) else {}
            image_id = as_int(ann.get("image_id"))
            if image_id in ambiguous:
                dropped[image_id] += 1  # reported once per image below
                continue
            sample = samples.get(image_id) if image_id is not None else None
            if sample is None:
                problems.append(Problem(name, line, "image_missing", f"annotation {ann.get('id')} names image {ann.get('image_id')} not in `images`"))
                continue
            cid = as_int(ann.get("category_id"))
            if cid not in id_to_class:
                problems.append(Problem(name, line, "unknown_class", f"category_id {ann.get('category_id')} not in `categories`", str(ann.get("category_id"))))
                continue
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (KeyError, TypeError, ValueError):
                problems.append(Problem(name, line, "bad_row", f"annotation {ann.get('id')} has no valid bbox [x, y, w, h]"))
                continue
            crowd = bool(ann.get("iscrowd", 0))
            sample.boxes.append(RawBox(id_to_class[cid], (x, y, x + w, y + h), crowd=crowd, line=line))
        for image_id, entries in ambiguous.items():
            files = [f for _, f in entries]
            for position, file_name in entries:
                others = ", ".join(f for f in files if f != file_name) or file_name
                problems.append(Problem(
                    name, None, "duplicate_image_id",
                    f"`images` entry {position} ({file_name}) shares id {image_id} with {others}; "
                    f"skipped with the id's {dropped[image_id]} annotation(s)",
                ))
        return list(samples.values()), problems

    def _image_entries(self) -> tuple[dict[int, RawSample], dict[int, list[tuple[int, str]]], list[Problem]]:
        """(id -> sample for ids used once, id -> [(entry position, file name)] for ids used twice or more, problems)."""
        name = str(self.annotations)
        entries: dict[int, list[tuple[int, str]]] = defaultdict(list)
        samples: dict[int, RawSample] = {}
        problems: list[Problem] = []
        for position, im in enumerate(self._data["images"], start=1):
            im = im if isinstance(im, dict) else {}
            image_id, file_name = as_int(im.get("id")), im.get("file_name")
            if image_id is None or not isinstance(file_name, str) or not file_name:
                problems.append(Problem(name, None, "bad_row", f"`images` entry {position} has no integer `id` or no `file_name`"))
                continue
            entries[image_id].append((position, file_name))
            if len(entries[image_id]) == 1:
                w, h = as_int(im.get("width")), as_int(im.get("height"))
                declared = (w, h) if w and h else None
                samples[image_id] = RawSample(self.images / file_name, self.annotations, [], image_id, declared)
        ambiguous = {i: e for i, e in entries.items() if len(e) > 1}
        for image_id in ambiguous:
            del samples[image_id]
        return samples, ambiguous, problems

    def parse(self, item: RawSample) -> tuple[RawSample | None, list[Problem]]:
        return item, []
