"""COCO json (`instances_*.json`) + an image folder.

Category ids are kept as the dataset's own ids (`DataSpec.category_ids`) and mapped to contiguous
class indices in ascending id order. `iscrowd` boxes stay in the record with crowd=True (training
ignores them; evaluation passes them to pycocotools). `ImageRecord.image_id` is the json's image id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mnv3det.data.records import Problem, RawBox, RawSample
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


def coco_categories(path: Path) -> tuple[list[int], list[str]]:
    """(category ids ascending, their names) of a COCO json."""
    cats = sorted(read_coco_json(path)["categories"], key=lambda c: c["id"])
    return [int(c["id"]) for c in cats], [str(c.get("name", c["id"])) for c in cats]


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

    def key_files(self) -> list[Path]:
        # The json plus the image folder's listing; not a parse of the json (which can be 0.5 GB).
        if not self.images.is_dir():
            raise UserError(f"COCO image folder {self.images} not found; check the `images` entry of the data yaml")
        return [self.annotations] + sorted(p for p in self.images.iterdir())

    def items(self) -> tuple[list[RawSample], list[Problem]]:
        data = self._data
        name = str(self.annotations)
        id_to_class = {cid: i for i, cid in enumerate(self.category_ids)}
        samples: dict[int, RawSample] = {}
        problems: list[Problem] = []
        for im in data["images"]:
            image_id = int(im["id"])
            declared = (int(im["width"]), int(im["height"])) if "width" in im and "height" in im else None
            samples[image_id] = RawSample(self.images / im["file_name"], self.annotations, [], image_id, declared)
        for index, ann in enumerate(data.get("annotations", [])):
            line = index + 1  # "line" = 1-based position in the annotations list
            sample = samples.get(int(ann.get("image_id", -1)))
            if sample is None:
                problems.append(Problem(name, line, "image_missing", f"annotation {ann.get('id')} names image {ann.get('image_id')} not in `images`"))
                continue
            cid = ann.get("category_id")
            if cid not in id_to_class:
                problems.append(Problem(name, line, "unknown_class", f"category_id {cid} not in `categories`"))
                continue
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (KeyError, TypeError, ValueError):
                problems.append(Problem(name, line, "bad_row", f"annotation {ann.get('id')} has no valid bbox [x, y, w, h]"))
                continue
            crowd = bool(ann.get("iscrowd", 0))
            sample.boxes.append(RawBox(id_to_class[cid], (x, y, x + w, y + h), crowd=crowd, line=line))
        return list(samples.values()), problems

    def parse(self, item: RawSample) -> tuple[RawSample | None, list[Problem]]:
        return item, []
