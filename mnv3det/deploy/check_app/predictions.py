"""Read what the user's app found: a folder of YOLO txt files or a COCO-style results json, keyed by image.

    list_images(folder)                 the folder's own image files, by file name (as `detect DIR` reads it)
    read_predictions(pred, images, nc)  AppBoxes per image, every row checked; one-line errors name file and row

Formats (docs in README "Check your app"):
- A folder of `<stem>.txt`, one per image `<stem>.<ext>` in the images folder, rows `class cx cy w h conf`
  normalised to the image (what `mnv3det detect --save-txt --save-conf` writes). An image without a txt file has
  no boxes (detect writes no file for an image where it found nothing).
- A json list of objects, one per box: `"file_name"` (or `"image"`: a name or path; matched to the images folder
  by file name, else by stem), `"bbox"` [x, y, w, h] in image pixels, `"score"`, `"category_id"` (or
  `"category"`): the model's class index (0-based, as in the model's names). A COCO results file carries an
  integer `image_id` instead of a file name; that is refused with a line saying to add `file_name`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnv3det.deploy.runtime.sources import is_image
from mnv3det.errors import UserError

TXT_FIELDS = 6  # class cx cy w h conf


@dataclass
class AppBoxes:
    """One image's boxes from the app: rows (n, 6) = class, a, b, c, d, score; `normalised` says which box form."""

    rows: np.ndarray  # float64 (n, 6): txt: class cx cy w h (0..1) score; json: class x y w h (pixels) score
    normalised: bool  # True: cx cy w h as fractions of the image (txt), False: x y w h pixels (json)
    source: str  # the file (and row) the boxes came from, for messages

    def xyxy(self, height: int, width: int) -> np.ndarray:
        """(n, 6) x1, y1, x2, y2 (image pixels), score, class: the layout of the reference's detections."""
        cls, a, b, c, d, score = (self.rows[:, k] for k in range(6))
        if self.normalised:
            x1, y1 = (a - c / 2) * width, (b - d / 2) * height
            x2, y2 = (a + c / 2) * width, (b + d / 2) * height
        else:
            x1, y1, x2, y2 = a, b, a + c, b + d
        return np.stack([x1, y1, x2, y2, score, cls], axis=1) if len(self.rows) else np.zeros((0, 6))


def list_images(folder: Path, option: str = "--images") -> dict[str, Path]:
    """File name -> path for the image files directly in `folder` (sorted); a UserError when there are none."""
    if not folder.is_dir():
        raise UserError(f"{option} {folder}: no such folder; give the folder of images your app ran on")
    images = {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and is_image(p)}
    if not images:
        raise UserError(f"{option} {folder}: no image files in it (.jpg, .png, ...); give the folder of images "
                        "your app ran on")
    stems: dict[str, str] = {}
    for name in images:
        stem = Path(name).stem
        if stem in stems:
            raise UserError(f"{option} {folder}: {stems[stem]} and {name} share the name {stem!r}, so a prediction "
                            f"file {stem}.txt could be either; rename one")
        stems[stem] = name
    return images


def read_predictions(
    pred: Path, images: dict[str, Path], nc: int, option: str = "--predictions"
) -> dict[str, AppBoxes]:
    """AppBoxes per image file name (every image of `images`; those the app found nothing in get none).

    A prediction for an image not in `images`, a malformed row or a class index outside 0..nc-1 is a UserError
    naming the file and row; so is a PRED that gives no image any prediction (the wrong folder, most likely).
    """
    if not pred.exists():
        raise UserError(f"{option} {pred}: no such file or folder; give the folder of YOLO txt files or the json "
                        "your app wrote")
    found = _read_txt_folder(pred, images, nc) if pred.is_dir() else _read_json(pred, images, nc)
    if not found:
        folder = next(iter(images.values())).parent
        raise UserError(f"{option} {pred}: no predictions for any image in {folder} (expected "
                        f"{'<stem>.txt files' if pred.is_dir() else 'rows naming these images'}, "
                        f"e.g. for {next(iter(images))}); is it the right folder?")
    none = np.zeros((0, 6))  # an image the app found nothing in (detect writes no txt file for it)
    return {name: found.get(name) or AppBoxes(none, pred.is_dir(), str(pred)) for name in images}


def _read_txt_folder(folder: Path, images: dict[str, Path], nc: int) -> dict[str, AppBoxes]:
    by_stem = {Path(name).stem: name for name in images}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".txt")
    if not files:
        raise UserError(f"--predictions {folder}: no .txt files in it; write one per image, rows "
                        "`class cx cy w h conf` (as `mnv3det detect --save-txt --save-conf` does), or give a json")
    out = {}
    for file in files:
        name = by_stem.get(file.stem)
        if name is None:
            raise UserError(f"{file}: predictions for an unknown image: no {file.stem}.* in the images folder; "
                            "remove the file or add the image")
        rows = []
        for k, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != TXT_FIELDS:
                hint = " (write scores too: --save-conf)" if len(fields) == TXT_FIELDS - 1 else ""
                raise UserError(f"{file} row {k}: expected {TXT_FIELDS} values `class cx cy w h conf`, got "
                                f"{len(fields)}{hint}")
            values = _numbers(fields, f"{file} row {k}")
            _check_class(values[0], nc, f"{file} row {k}")
            if not all(-0.5 <= v <= 1.5 for v in values[1:5]):
                raise UserError(f"{file} row {k}: cx cy w h must be fractions of the image (0..1), got "
                                f"{' '.join(fields[1:5])}; pixel boxes go in a json (bbox [x, y, w, h])")
            rows.append(values)
        out[name] = AppBoxes(np.array(rows, dtype=np.float64).reshape(-1, 6), True, str(file))
    return out


def _read_json(path: Path, images: dict[str, Path], nc: int) -> dict[str, AppBoxes]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a json file ({err}); give a list of boxes or a folder of YOLO txt "
                        "files") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a json list of boxes ({{\"file_name\", \"bbox\" [x, y, w, h], \"score\", "
                        "\"category_id\"}), got a " + type(data).__name__)
    by_stem = {Path(name).stem: name for name in images}
    rows: dict[str, list[list[float]]] = {}
    for k, item in enumerate(data):
        where = f"{path} row {k}"
        if not isinstance(item, dict):
            raise UserError(f"{where}: expected an object with file_name, bbox, score, category_id")
        file = item.get("file_name", item.get("image"))
        if file is None:
            extra = " (a COCO image_id: add the image's file name as \"file_name\")" if "image_id" in item else ""
            raise UserError(f"{where}: no \"file_name\"{extra}")
        base = Path(str(file).replace("\\", "/")).name
        name = base if base in images else by_stem.get(Path(base).stem)
        if name is None:
            raise UserError(f"{where}: predictions for an unknown image {file!r}: not in the images folder")
        bbox = item.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise UserError(f"{where}: \"bbox\" must be [x, y, w, h] in pixels, got {bbox!r}")
        cls = item.get("category_id", item.get("category"))
        if cls is None or "score" not in item:
            raise UserError(f"{where}: needs \"score\" and \"category_id\" (the model's class index)")
        values = _numbers([cls, *bbox, item["score"]], where)
        _check_class(values[0], nc, where)
        rows.setdefault(name, []).append(values)
    return {name: AppBoxes(np.array(r, dtype=np.float64), False, str(path)) for name, r in rows.items()}


def _numbers(fields: list, where: str) -> list[float]:
    try:
        values = [float(f) for f in fields]
    except (TypeError, ValueError):
        raise UserError(f"{where}: not numbers: {' '.join(map(str, fields))}") from None
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"{where}: holds nan or inf")
    return values


def _check_class(value: float, nc: int, where: str) -> None:
    if value != int(value) or not 0 <= value < nc:
        raise UserError(f"{where}: class {value:g} is not a class index of the model (0..{nc - 1})")
