"""`DataSpec` (names, category ids, splits) and `load_data`: a data yaml, a dataset folder, or the demo set.

Data yaml (YOLOv5's form plus `format`):
    path: ../datasets/x        # root; a relative path (or none) is taken from the yaml's folder (see _resolve_root)
    train: images/train        # yolo: folder / txt list / list of those
    val: images/val
    names: [a, b] or {0: a, 1: b}
    format: yolo | coco | voc  # detected when absent
    class_subset: true         # optional: `names` lists only some of the label classes, on purpose
    kpt_shape: [17, 3]         # optional, YOLO: label rows are pose rows, box + 17 keypoints of 3 values
Any other key is an error naming the nearest known key (`vall:` -> `val`), except keys other tools write
and mnv3det ignores (`download`, `roboflow`). COCO splits are `{images: DIR, annotations: JSON}`; VOC splits are a list name (`train` ->
ImageSets/Main/train.txt) or a txt path. See datasets/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnv3det.core.yamlio import nearest_key, read_yaml
from mnv3det.data.cache import first_report
from mnv3det.data.formats_coco import CocoSplit, coco_categories
from mnv3det.data.formats_voc import VocSplit, voc_class_names
from mnv3det.data.formats_yolo import YoloSplit
from mnv3det.data.locate import check_data_path
from mnv3det.data.empty_split import has_boxes, no_boxes
from mnv3det.data.names_check import names_mismatch
from mnv3det.data.records import ImageRecord, Problem
from mnv3det.data.report import console, print_load_summary
from mnv3det.data.scan import SplitSource, scan_split
from mnv3det.errors import UserError

SPLIT_KEYS = ("train", "val", "test")
FORMATS = ("yolo", "coco", "voc")
DATA_KEYS = ("path", *SPLIT_KEYS, "names", "nc", "format", "class_subset", "kpt_shape")
FOREIGN_KEYS = ("download", "roboflow", "flip_idx")  # written by YOLOv5/Ultralytics and Roboflow exports; ignored here


@dataclass
class DataSpec:
    """A dataset: class names, the dataset's own id per class, its format, where it came from and its splits.

    `records(split)` returns the checked records (cached in memory and on disk); problems are printed once.
    class_subset: `names` deliberately lists only some of the label classes (the data yaml's `class_subset`),
    so a split whose boxes are mostly of other classes is not an error.
    """

    names: list[str]
    category_ids: list[int]
    format: str
    source: Path
    splits: dict[str, SplitSource]
    class_subset: bool = False
    notes: list[str] = field(default_factory=list)  # how the data yaml was read (which folder), for the user
    _loaded: dict[str, tuple[list[ImageRecord], list[Problem]]] = field(default_factory=dict, init=False, repr=False)

    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def root(self) -> Path:
        """The folder problems are shown relative to: the dataset folder, or the data yaml's folder."""
        return self.source if self.source.is_dir() else self.source.parent

    def location(self, split: str) -> str:
        """Where `split` is read from, as absolute paths (printed by data check, train and val)."""
        return self._split(split).location()

    def _split(self, split: str) -> SplitSource:
        if split not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise UserError(f"dataset {self.source} has no '{split}' split (it has: {have}); add `{split}:` to the data yaml")
        return self.splits[split]

    def _description(self, split: str) -> str:
        """A stable text naming the split (format, files, names): it keys the records cache."""
        return f"{self.format}|{split}|{self._split(split)!r}|{self.names}"

    def check(self, split: str, *, use_cache: bool = True, progress: bool | None = None) -> tuple[list[ImageRecord], list[Problem]]:
        """All usable records of `split` and every problem found (no printing; the doctor uses this)."""
        source = self._split(split)
        description = self._description(split)
        progress = console.is_terminal if progress is None else progress and console.is_terminal
        return scan_split(source, self.nc, description=description, use_cache=use_cache, progress=progress)

    def records(self, split: str, *, report: bool = True) -> list[ImageRecord]:
        """Checked records of `split`; bad samples are reported (once; report=False for DDP ranks > 0) and skipped.

        Raises UserError when no usable image is left, when no usable box is (see `mismatch`), or when most boxes
        were dropped for a class outside `names` and the data yaml does not say `class_subset: true`.
        """
        if split not in self._loaded:
            records, problems = self.check(split)
            if report:  # the tables once per dataset; a one-line count when the same problems were shown before
                brief = bool(problems) and not first_report(self._description(split), problems)
                print_load_summary(problems, split, len(records), root=self.root, brief=brief, source=self.source)
            if not records:
                raise UserError(
                    f"split '{split}' of {self.source} has no usable image left after the checks; "
                    f"run `mnv3det data check {self.source}` to see why"
                )
            mismatch = self.mismatch(split, records, problems)
            if mismatch:
                raise UserError(f"{self.source}, {mismatch} (`mnv3det data check {self.source}` lists the boxes)")
            self._loaded[split] = (records, problems)
        return self._loaded[split][0]

    def mismatch(self, split: str, records: list[ImageRecord], problems: list[Problem]) -> str | None:
        """Why `split` cannot be trained or scored as it is, or None: `names` does not fit its labels (most boxes
        dropped for their class; not with class_subset), or its images hold no usable box at all."""
        names = None if self.class_subset else names_mismatch(records, problems, self.names, split)
        if names or has_boxes(records):
            return names
        return no_boxes(split, records, problems, self._split(split).label_hint(records))


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path, "data yaml")
    if not isinstance(data, dict):
        raise UserError(f"data yaml {path} must be a mapping with `train`, `val` and `names`")
    return data


def _check_keys(data: dict[str, Any], path: Path) -> None:
    """Unknown keys are an error naming the nearest known key: a typo (`vall:`) must not silently drop a split."""
    for key in data:
        if key in DATA_KEYS or key in FOREIGN_KEYS:
            continue
        near = nearest_key(str(key), DATA_KEYS)
        hint = f"did you mean `{near}:`?" if near else f"the keys mnv3det reads are {', '.join(DATA_KEYS)}"
        raise UserError(f"data yaml {path}: unknown key `{key}:` ({hint}); rename or remove it")


def _parse_names(raw: Any, where: str) -> list[str] | None:
    """`names` as a list, or a dict {0: a, 1: b} with keys 0..nc-1."""
    if raw is None:
        return None
    if isinstance(raw, list):
        return [_name(n, k, where) for k, n in enumerate(raw)]
    if isinstance(raw, dict):
        try:
            keys = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            raise UserError(f"{where}: `names` keys must be class indices 0..nc-1") from None
        if keys != list(range(len(keys))):
            shown = ", ".join(map(str, keys[:20])) + (", ..." if len(keys) > 20 else "")
            raise UserError(f"{where}: `names` keys must be 0..{len(keys) - 1} without gaps, got {shown}")
        return [_name(raw[k] if k in raw else raw[str(k)], k, where) for k in keys]
    raise UserError(f"{where}: `names` must be a list or a {{index: name}} mapping")


def _name(value: Any, index: int, where: str) -> str:
    """One class name: a plain value (a string, or a number written as one); a list or mapping is a mistake."""
    if isinstance(value, (dict, list, tuple, set)):
        raise UserError(f"{where}: `names` entry {index} is a {type(value).__name__}, not a class name; "
                        "give each class one name")
    return str(value)


def _entry_paths(entry: Any) -> list[str]:
    """The path strings a split entry names (for resolving the root)."""
    if isinstance(entry, dict):
        return [str(v) for v in entry.values()]
    if isinstance(entry, list):
        return [str(v) for v in entry]
    return [str(entry)]


def _resolve_root(data: dict[str, Any], yaml_path: Path) -> tuple[Path, str | None]:
    """(root, note): a relative `path` (or none, or `.`) is taken from the yaml's own folder, as users read it.

    Only when that folder does not hold the train split but the current folder does (a YOLOv5 yaml whose
    `path: ../datasets/x` is written from the repository root) is the current folder used. Whenever the other
    folder would hold a train split too, the note says which one was used and which one was not.
    """
    shown = data.get("path")
    written = Path(str(shown or "."))
    if written.is_absolute():
        return written, None
    own, cwd = (yaml_path.parent / written).resolve(), (Path.cwd() / written).resolve()
    train = data.get("train")

    def holds_train(root: Path) -> bool:
        return train is not None and all((root / p).exists() for p in _entry_paths(train))

    entry = f"`path: {shown}`" if shown is not None else "no `path:`"
    if own != cwd and holds_train(cwd):
        if holds_train(own):
            return own, (f"data yaml {yaml_path} ({entry}): using {own}, beside the yaml; the current folder {cwd} "
                         "holds a train split too and is not used (earlier versions looked there first)")
        return cwd, (f"data yaml {yaml_path} ({entry}): the yaml's folder {own} holds no train split; using the "
                     f"current folder {cwd}. Write an absolute `path:` to make it independent of where you start")
    return own, None


def _detect_format(data: dict[str, Any], root: Path) -> str:
    entries = [data[k] for k in SPLIT_KEYS if k in data]
    if any(isinstance(e, dict) and "annotations" in e for e in entries):
        return "coco"
    if (root / "Annotations").is_dir() and (root / "ImageSets" / "Main").is_dir():
        return "voc"
    return "yolo"


def spec_from_yaml(path: Path) -> DataSpec:
    """A DataSpec from a data yaml (see the module docstring)."""
    data = _read_yaml(path)
    _check_keys(data, path)
    if "train" not in data:
        raise UserError(f"data yaml {path} has no `train:` entry")
    subset = data.get("class_subset", False)
    if not isinstance(subset, bool):
        raise UserError(f"data yaml {path}: `class_subset` must be true or false, got {subset!r}")
    root, note = _resolve_root(data, path)
    notes = [note] if note else []
    fmt = str(data.get("format") or _detect_format(data, root)).lower()
    if fmt not in FORMATS:
        raise UserError(f"data yaml {path}: format {fmt!r} is not one of {', '.join(FORMATS)}")
    names = _parse_names(data.get("names"), str(path))
    if names is not None and "nc" in data and int(data["nc"]) != len(names):
        raise UserError(f"data yaml {path}: nc={data['nc']} but {len(names)} names")
    entries = {k: data[k] for k in SPLIT_KEYS if data.get(k)}
    if fmt == "yolo":
        if names is None:
            raise UserError(f"data yaml {path}: YOLO data needs `names:` (a list, or {{index: name}})")
        kpt_shape = _kpt_shape(data.get("kpt_shape"), path)
        splits: dict[str, SplitSource] = {
            k: YoloSplit([root / p for p in _entry_paths(v)], kpt_shape) for k, v in entries.items()
        }
        return DataSpec(names, list(range(len(names))), fmt, path, splits, subset, notes)
    if fmt == "coco":
        for k, v in entries.items():
            if not (isinstance(v, dict) and "images" in v and "annotations" in v):
                raise UserError(f"data yaml {path}: COCO split `{k}` must be {{images: DIR, annotations: JSON}}")
        first = next(iter(entries.values()))
        ids, json_names = coco_categories(root / first["annotations"])
        if names is not None and len(names) != len(ids):
            raise UserError(f"data yaml {path}: {len(names)} names but the COCO json has {len(ids)} categories")
        splits = {k: CocoSplit(root / v["images"], root / v["annotations"], ids) for k, v in entries.items()}
        return DataSpec(names or json_names, ids, fmt, path, splits, subset, notes)
    lists = {k: _voc_list(root, v) for k, v in entries.items()}
    names = names or voc_class_names(root, list(lists.values()))
    splits = {k: VocSplit(root, lf, names) for k, lf in lists.items()}
    return DataSpec(names, list(range(len(names))), fmt, path, splits, subset, notes)


def _kpt_shape(raw: Any, path: Path) -> tuple[int, int] | None:
    """`kpt_shape: [k, d]` (Ultralytics' pose datasets): k >= 1 keypoints of d = 2 (x y) or 3 (x y visibility)."""
    if raw is None:
        return None
    ok = isinstance(raw, list) and len(raw) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in raw)
    if not ok or raw[0] < 1 or raw[1] not in (2, 3):
        raise UserError(f"data yaml {path}: `kpt_shape` must be [keypoints, 2 or 3] (e.g. [17, 3]), got {raw!r:.60}")
    return int(raw[0]), int(raw[1])


def _voc_list(root: Path, entry: Any) -> Path:
    """`train` -> root/ImageSets/Main/train.txt; a path ending in .txt is taken as the list itself."""
    text = str(entry)
    return root / text if text.endswith(".txt") else root / "ImageSets" / "Main" / f"{text}.txt"


def spec_from_dir(root: Path) -> DataSpec:
    """A dataset folder: a single data yaml inside, a VOC root, or a COCO root with annotations/instances_*.json."""
    yamls, unreadable = [], []
    for p in sorted(root.glob("*.y*ml")):
        try:
            keys = [str(k) for k in _read_yaml(p)]
        except UserError as err:
            unreadable.append(err)  # some other yaml beside the data, or the data yaml with a syntax error
            continue
        if any(k == "train" or nearest_key(k, ["train"]) for k in keys):  # `trian:` too: its error names the typo
            yamls.append(p)
    if len(yamls) == 1:
        return spec_from_yaml(yamls[0])
    if (root / "Annotations").is_dir() and (root / "ImageSets" / "Main").is_dir():
        lists = {k: root / "ImageSets" / "Main" / f"{k}.txt" for k in SPLIT_KEYS}
        lists = {k: v for k, v in lists.items() if v.is_file()}
        if "train" not in lists and (root / "ImageSets/Main/trainval.txt").is_file():
            lists["train"] = root / "ImageSets/Main/trainval.txt"  # VOC2007-style: trainval + test
            if "val" not in lists and "test" in lists:
                lists["val"] = lists["test"]
        if not lists:
            raise UserError(f"VOC root {root} has no ImageSets/Main/{{train,val,test}}.txt lists")
        names = voc_class_names(root, list(lists.values()))
        return DataSpec(names, list(range(len(names))), "voc", root, {k: VocSplit(root, v, names) for k, v in lists.items()})
    jsons = sorted((root / "annotations").glob("instances_*.json"))
    if jsons:
        splits: dict[str, SplitSource] = {}
        ids, names = coco_categories(jsons[0])
        for js in jsons:
            stem = js.stem.removeprefix("instances_")  # e.g. train2017
            split = next((k for k in SPLIT_KEYS if stem.startswith(k)), stem)
            images = next((d for d in (root / "images" / stem, root / stem) if d.is_dir()), root / "images" / stem)
            splits[split] = CocoSplit(images, js, ids)
        return DataSpec(names, ids, "coco", root, splits)
    if unreadable:
        raise unreadable[0]
    raise UserError(
        f"cannot tell the format of {root}: expected a data yaml inside it, a VOC root (Annotations/, ImageSets/Main/) "
        "or a COCO root (annotations/instances_*.json); see datasets/README.md"
    )


def load_data(data: str | Path | DataSpec | None) -> DataSpec:
    """A data yaml, a dataset folder, a DataSpec (returned as is), or None / 'demo' for the built-in demo set."""
    if isinstance(data, DataSpec):
        return data
    if data is None or str(data) == "demo":
        from mnv3det.data.demo import demo_data_yaml

        return spec_from_yaml(demo_data_yaml())
    path = check_data_path(data)  # a UserError for a path that is neither a yaml nor a folder
    return spec_from_dir(path) if path.is_dir() else spec_from_yaml(path)
