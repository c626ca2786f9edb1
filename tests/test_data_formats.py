"""YOLO / COCO / VOC readers on tiny fixtures written here, the doctor's findings, and the records cache."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from mnv3det.data import ImageRecord, create_dataloader, load_data
from mnv3det.data.doctor import check_data
from mnv3det.errors import UserError

NAMES = ["cat", "dog"]
COCO_IDS = [3, 7]  # deliberately not 0..nc-1
# (file, width, height, [(class, x1, y1, x2, y2) pixels])
IMAGES = [
    ("a.png", 64, 48, [(0, 4, 6, 30, 40), (1, 40, 10, 60, 30)]),
    ("b.png", 40, 80, [(1, 0, 0, 20, 25)]),
    ("c.png", 50, 50, []),  # background
]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))


def _write_image(path: Path, w: int, h: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)


def write_yolo(root: Path, images=IMAGES, names=NAMES) -> Path:
    for k, (name, w, h, boxes) in enumerate(images):
        _write_image(root / "images" / "train" / name, w, h, k)
        rows = [f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}" for c, x1, y1, x2, y2 in boxes]
        label = root / "labels" / "train" / Path(name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("\n".join(rows) + ("\n" if rows else ""))
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/train", "names": names}))
    return data


def write_coco(root: Path) -> Path:
    images, anns = [], []
    for k, (name, w, h, boxes) in enumerate(IMAGES):
        _write_image(root / "images" / "train" / name, w, h, k)
        images.append({"id": 100 + k, "file_name": name, "width": w, "height": h})
        for c, x1, y1, x2, y2 in boxes:
            anns.append({"id": len(anns) + 1, "image_id": 100 + k, "category_id": COCO_IDS[c], "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0, "area": 1.0})
    cats = [{"id": i, "name": n} for i, n in zip(COCO_IDS, NAMES)]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_train.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def _voc_xml(name: str, w: int, h: int, objects: list[tuple[str, float, float, float, float, int]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, x1, y1, x2, y2, d in objects
    )
    return f"<annotation><filename>{name}</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>"


def write_voc(root: Path) -> Path:
    ids = []
    for k, (name, w, h, boxes) in enumerate(IMAGES):
        stem = Path(name).stem
        ids.append(stem)
        _write_image(root / "JPEGImages" / name, w, h, k)
        # VOC is 1-based inclusive: xmin = x1 + 1, xmax = x2.
        objects = [(NAMES[c], x1 + 1, y1 + 1, x2, y2, 0) for c, x1, y1, x2, y2 in boxes]
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(_voc_xml(name, w, h, objects))
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids) + "\n")
    return root


def _by_name(records: list[ImageRecord]) -> dict[str, ImageRecord]:
    return {r.path.name: r for r in records}


def _expected(name: str) -> tuple[np.ndarray, np.ndarray]:
    boxes = next(b for n, _, _, b in IMAGES if n == name)
    return np.array([b[1:] for b in boxes], np.float32).reshape(-1, 4), np.array([b[0] for b in boxes], np.int64)


def test_three_formats_give_the_same_records_and_samples(tmp_path: Path) -> None:
    specs = {
        "yolo": load_data(write_yolo(tmp_path / "yolo")),
        "coco": load_data(write_coco(tmp_path / "coco")),
        "voc": load_data(write_voc(tmp_path / "voc")),
    }
    assert {k: s.format for k, s in specs.items()} == {"yolo": "yolo", "coco": "coco", "voc": "voc"}
    assert all(s.names == NAMES for s in specs.values())
    assert specs["coco"].category_ids == COCO_IDS and specs["yolo"].category_ids == [0, 1]
    batches = {}
    for fmt, spec in specs.items():
        records = _by_name(spec.records("train"))
        assert sorted(records) == ["a.png", "b.png", "c.png"], fmt
        for name, w, h, _ in IMAGES:
            boxes, classes = _expected(name)
            rec = records[name]
            assert (rec.width, rec.height) == (w, h)
            np.testing.assert_allclose(rec.boxes, boxes, atol=1e-3, err_msg=f"{fmt} {name}")
            np.testing.assert_array_equal(rec.classes, classes)
            assert not rec.crowd.any() and not rec.difficult.any()
        ordered = [records[n] for n, *_ in IMAGES]
        loader = create_dataloader(ordered, imgsz=64, batch_size=3, augment=False, workers=0)
        batches[fmt] = next(iter(loader))
    assert _by_name(specs["coco"].records("train"))["b.png"].image_id == 101  # COCO's own image id
    for fmt in ("coco", "voc"):
        assert torch_equal(batches[fmt][0], batches["yolo"][0])
        np.testing.assert_allclose(batches[fmt][1].numpy(), batches["yolo"][1].numpy(), atol=1e-4)


def test_yolo_segmentation_polygons_are_read_as_their_bounding_boxes(tmp_path: Path) -> None:
    data = write_yolo(tmp_path)
    for name, w, h, boxes in IMAGES:  # the same boxes, written as polygons: a diamond inscribed in each box
        rows = [f"{c} {(x1 + x2) / 2 / w} {y1 / h} {x2 / w} {(y1 + y2) / 2 / h} {(x1 + x2) / 2 / w} {y2 / h} "
                f"{x1 / w} {(y1 + y2) / 2 / h}" for c, x1, y1, x2, y2 in boxes]
        (tmp_path / "labels" / "train" / Path(name).with_suffix(".txt")).write_text("\n".join(rows) + "\n")
    (tmp_path / "labels" / "train" / "b.txt").write_text(
        "1 0 0 0.5 0 0.5 0.3125 0 0.3125\n"  # line 1: a rectangle as 4 points -> (0, 0, 20, 25) px
        "1 0.1 0.1 0.2 0.2 0.3 0.3 0.9\n"  # line 2: an even count after the class -> a bad row
        "0 0.5 0.5 0.1 0.1 0.93\n"  # line 3: a --save-conf prediction row -> a bad row that says so
    )
    spec = load_data(data)
    records = _by_name(spec.records("train"))
    for name, *_ in IMAGES:
        boxes, classes = _expected(name)
        np.testing.assert_allclose(records[name].boxes, boxes, atol=1e-3, err_msg=name)
        np.testing.assert_array_equal(records[name].classes, classes)
    (report,) = check_data(spec, ["train"], progress=False)
    found = {(Path(p.file).name, p.line, p.kind): p.detail for p in report.problems}
    assert set(found) == {("b.txt", 2, "bad_row"), ("b.txt", 3, "bad_row")}
    assert "or a polygon" in found[("b.txt", 2, "bad_row")]
    assert "detect --save-conf" in found[("b.txt", 3, "bad_row")]


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_yaml_names_dict_txt_list_and_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ds"
    write_yolo(root)
    (root / "train.txt").write_text("images/train/a.png\nimages/train/b.png\n")
    data = tmp_path / "cfg" / "d.yaml"
    data.parent.mkdir()
    # `path: ../ds` does not exist from the working directory, so it resolves against the yaml's folder.
    data.write_text(yaml.safe_dump({"path": "../ds", "train": "train.txt", "names": {0: "cat", 1: "dog"}}))
    monkeypatch.chdir(root / "images")
    spec = load_data(data)
    assert spec.names == NAMES
    assert sorted(r.path.name for r in spec.records("train")) == ["a.png", "b.png"]
    with pytest.raises(UserError, match="no 'val' split"):
        spec.records("val")


@pytest.mark.parametrize(
    "content, message",
    [
        ("train: images/train\n", "needs `names:`"),
        ("names: [a]\n", "no `train:`"),
        ("- a\n- b\n", "must be a mapping"),
        ("train: images/train\nnames: {0: a, 2: b}\n", "without gaps"),
        ("train: images/train\nnames: [a]\nformat: kitti\n", "not one of"),
        ("train: {images: images/train}\nnames: [a]\nformat: coco\n", "must be {images: DIR, annotations: JSON}"),
    ],
)
def test_bad_yaml_is_a_clear_user_error(tmp_path: Path, content: str, message: str) -> None:
    write_yolo(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    with pytest.raises(UserError, match=message.replace("{", r"\{").replace("}", r"\}").replace("`", "`")):
        load_data(bad)


def test_missing_data_and_unknown_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_data(tmp_path / "nope.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="cannot tell the format"):
        load_data(tmp_path / "empty")


def _broken_yolo(root: Path) -> Path:
    """A YOLO set with one example of every finding (see the test below for the expectations)."""
    write_yolo(root, images=[("good.png", 64, 64, [(0, 8, 8, 24, 24)])])
    img_dir, lbl_dir = root / "images" / "train", root / "labels" / "train"
    (lbl_dir / "good.txt").write_text(
        "0 0.25 0.25 0.25 0.25\n"  # line 1: fine
        "5 0.5 0.5 0.2 0.2\n"  # line 2: class out of range (nc=2)
        "0 abc 0.5 0.2 0.2\n"  # line 3: non-numeric
        "1 0.95 0.5 0.2 0.2\n"  # line 4: reaches past the right border -> clipped
        "1 0.5 0.5 0 0.2\n"  # line 5: zero width -> dropped
        "0 0.25 0.25 0.25 0.25\n"  # line 6: duplicate of line 1
        "0 0.5 0.5\n"  # line 7: too few fields
    )
    (img_dir / "notanimage.jpg").write_text("this is text")
    (lbl_dir / "notanimage.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    full = img_dir / "full.jpg"
    cv2.imwrite(str(full), np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    data = full.read_bytes()
    (img_dir / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (lbl_dir / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # label without an image
    rotated = Image.fromarray(np.zeros((20, 40, 3), np.uint8))  # 40 wide, 20 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: displayed (and loaded by cv2) as 20 wide, 40 high
    rotated.save(img_dir / "rotated.jpg", exif=exif)
    (lbl_dir / "rotated.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    return root / "data.yaml"


def test_doctor_reports_every_finding_with_file_and_line(tmp_path: Path) -> None:
    spec = load_data(_broken_yolo(tmp_path))
    (report,) = check_data(spec, ["train"], progress=False)
    found = {(Path(p.file).name, p.line, p.kind) for p in report.problems}
    expected = {
        ("good.txt", 2, "class_out_of_range"),
        ("good.txt", 3, "bad_row"),
        ("good.txt", 4, "outside_image"),
        ("good.txt", 5, "zero_size"),
        ("good.txt", 6, "duplicate"),
        ("good.txt", 7, "bad_row"),
        ("notanimage.jpg", None, "image_unreadable"),
        ("truncated.jpg", None, "image_truncated"),
        ("ghost.txt", None, "image_missing"),
        ("rotated.jpg", None, "exif_rotated"),
    }
    assert found == expected
    records = _by_name(report.records)
    assert sorted(records) == ["full.jpg", "good.png", "rotated.jpg"]
    good = records["good.png"]
    # Line 1 kept as is, line 4 clipped at the right border (x2 = 64); everything else dropped.
    np.testing.assert_allclose(good.boxes, [[8, 8, 24, 24], [54.4, 25.6, 64, 38.4]], atol=1e-3)
    np.testing.assert_array_equal(good.classes, [0, 1])
    rot = records["rotated.jpg"]
    assert (rot.width, rot.height) == (20, 40)
    assert cv2.imread(str(rot.path)).shape[:2] == (40, 20)  # the size cv2 will load
    assert (report.usable, report.skipped, report.labelled, report.background) == (3, 2, 2, 1)
    assert report.boxes_per_class == [1, 2]


def test_voc_and_coco_findings(tmp_path: Path) -> None:
    voc = write_voc(tmp_path / "voc")
    xml = voc / "Annotations" / "a.xml"
    xml.write_text(_voc_xml("a.png", 64, 48, [("horse", 1, 1, 10, 10, 0), ("cat", 1, 1, 10, 10, 1), ("dog", 5, 5, "x", 9, 0)]))
    (voc / "Annotations" / "b.xml").write_text("<annotation><object>")  # broken xml
    # Without `names:` a VOC folder takes its names from the xml files; with them, other names are unknown.
    assert "horse" in load_data(voc).names
    data = tmp_path / "voc.yaml"
    data.write_text(yaml.safe_dump({"path": "voc", "format": "voc", "train": "train", "names": NAMES}))
    spec = load_data(data)
    records, problems = spec.check("train", use_cache=False, progress=False)
    kinds = {(Path(p.file).name, p.line, p.kind) for p in problems}
    assert kinds == {("a.xml", 1, "unknown_class"), ("a.xml", 3, "bad_row"), ("b.xml", None, "label_unreadable")}
    a = _by_name(records)["a.png"]
    assert a.difficult.tolist() == [True]

    coco = write_coco(tmp_path / "coco")
    js = coco / "annotations" / "instances_train.json"
    data = json.loads(js.read_text())
    data["annotations"].append({"id": 90, "image_id": 100, "category_id": 99, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    data["annotations"].append({"id": 91, "image_id": 555, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0})
    data["annotations"].append({"id": 92, "image_id": 100, "category_id": 3, "bbox": [2, 2, 9, 9], "iscrowd": 1})
    data["images"][0]["width"] = 65  # declared size differs from the file
    js.write_text(json.dumps(data))
    spec = load_data(coco)
    records, problems = spec.check("train", use_cache=False, progress=False)
    kinds = {(p.line, p.kind) for p in problems}
    n = len(data["annotations"])
    assert kinds == {(n - 2, "unknown_class"), (n - 1, "image_missing"), (None, "size_mismatch")}
    a = _by_name(records)["a.png"]
    assert a.crowd.tolist() == [False, False, True]  # crowd kept, flagged


def test_nothing_usable_refuses_to_start(tmp_path: Path) -> None:
    write_yolo(tmp_path, images=[("x.png", 10, 10, [])])
    (tmp_path / "images" / "train" / "x.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="no usable image"):
        load_data(tmp_path / "data.yaml").records("train")


def test_records_cache_hit_stale_and_corrupt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = write_yolo(tmp_path / "ds")
    first = load_data(data).records("train")
    files = list((tmp_path / "cache" / "records").glob("*.json"))
    assert len(files) == 1
    # A hit returns the same records without reading labels again (prove it: break a label's content in place
    # without changing size or mtime -> the cached (old) boxes come back).
    label = tmp_path / "ds" / "labels" / "train" / "a.txt"
    st = label.stat()
    text = label.read_text()
    label.write_text(text.replace("0 ", "1 ", 1))
    import os

    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = _by_name(load_data(data).records("train"))
    np.testing.assert_array_equal(again["a.png"].classes, _by_name(first)["a.png"].classes)
    # A changed label (new mtime) makes the cache stale: rebuilt with the new content, and logged.
    label.write_text("1 0.5 0.5 0.5 0.5\n")
    with caplog.at_level(logging.INFO, logger="mnv3det.data"):
        fresh = _by_name(load_data(data).records("train"))
    assert fresh["a.png"].classes.tolist() == [1]
    assert "stale" in caplog.text
    # A corrupt cache file is rebuilt, with a warning.
    files[0].write_text("{not json")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mnv3det.data"):
        rebuilt = _by_name(load_data(data).records("train"))
    assert rebuilt["a.png"].classes.tolist() == [1]
    assert "unreadable" in caplog.text
    json.loads(files[0].read_text())  # and written back as valid json
