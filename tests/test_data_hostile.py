"""Hostile and damaged data (issue 12): each is reported with its file and skipped, never a crash.

NaN/inf label rows, non-UTF-8 file names, decompression bombs, duplicate COCO image ids, a label file with a
million rows (the per-image box cap) and tiny boxes; all on tiny data written by the tests themselves.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.data import create_dataloader, load_data
from mnv3det.data.doctor import check_data
from mnv3det.data.records import MAX_BOXES_PER_IMAGE, TINY_BOX_PX

NAMES = ["cat", "dog"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))


def _image(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _yolo(root: Path, labels: dict[str, str]) -> Path:
    """A YOLO set: one 64x48 PNG per entry of `labels` (stem -> label text)."""
    for k, (stem, text) in enumerate(labels.items()):
        _image(root / "images" / "train" / f"{stem}.png", seed=k)
        label = root / "labels" / "train" / f"{stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(text)
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/train", "names": NAMES}))
    return data


def _found(problems) -> set[tuple[str, int | None, str]]:
    return {(Path(p.file).name, p.line, p.kind) for p in problems}


NAN_ROWS = (
    "0 0.5 0.5 0.2 0.2\n"  # line 1: fine
    "0 nan 0.5 0.2 0.2\n"  # line 2: NaN coordinate
    "1 0.5 0.5 inf 0.2\n"  # line 3: infinite size
    "nan 0.5 0.5 0.2 0.2\n"  # line 4: NaN class (int(nan) raised ValueError)
    "inf 0.5 0.5 0.2 0.2\n"  # line 5: infinite class (int(inf) raised OverflowError)
    "-inf 0.3 0.3 0.1 0.1\n"  # line 6
)


def test_nan_and_inf_rows_are_reported_and_skipped_in_check_and_loading(tmp_path: Path) -> None:
    data = _yolo(tmp_path, {"a": NAN_ROWS, "b": "1 0.25 0.25 0.3 0.3\n"})
    (report,) = check_data(load_data(data), ["train"], progress=False)
    assert _found(report.problems) == {("a.txt", n, "bad_row") for n in (2, 3, 4, 5, 6)}
    assert all("NaN or infinite" in p.detail for p in report.problems)
    records = {r.path.name: r for r in load_data(data).records("train")}  # the path training takes
    assert records["a.png"].classes.tolist() == [0] and np.isfinite(records["a.png"].boxes).all()
    images, targets, _, _ = next(iter(create_dataloader(list(records.values()), imgsz=64, batch_size=2, augment=True, workers=0)))
    assert images.shape[0] == 2 and torch_finite(targets)


def torch_finite(t) -> bool:
    return bool(t.isfinite().all())


def test_nan_in_coco_and_voc_coordinates_are_bad_rows(tmp_path: Path) -> None:
    _image(tmp_path / "coco" / "images" / "train" / "a.png")
    js = tmp_path / "coco" / "annotations" / "instances_train.json"
    js.parent.mkdir(parents=True)
    # json allows NaN/Infinity literals; ids given as NaN must not crash int().
    js.write_text(
        '{"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}, {"id": NaN, "file_name": "x.png"}],'
        ' "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, NaN, 4]},'
        ' {"id": 2, "image_id": Infinity, "category_id": 1, "bbox": [1, 2, 3, 4]},'
        ' {"id": 3, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20]}],'
        ' "categories": [{"id": 1, "name": "cat"}]}'
    )
    (coco,) = check_data(load_data(tmp_path / "coco"), ["train"], progress=False)
    kinds = sorted((p.line, p.kind) for p in coco.problems if p.line is not None)
    assert kinds == [(1, "bad_row"), (2, "image_missing")]
    assert any(p.kind == "bad_row" and "`images` entry 2" in p.detail for p in coco.problems)
    assert [r.num_boxes for r in coco.records] == [1]

    voc = tmp_path / "voc"
    _image(voc / "JPEGImages" / "a.jpg")
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax>"
        "</bndbox></object><object><name>cat</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>20</xmax><ymax>20</ymax>"
        "</bndbox></object></annotation>"
    )
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (rep,) = check_data(load_data(voc), ["train"], progress=False)
    assert _found(rep.problems) == {("a.xml", 1, "bad_row")} and rep.records[0].num_boxes == 1


@pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that stores arbitrary bytes in names")
def test_non_utf8_file_name_is_reported_and_skipped(tmp_path: Path) -> None:
    data = _yolo(tmp_path, {"good": "0 0.5 0.5 0.2 0.2\n"})
    raw_dir = os.fsencode(tmp_path / "images" / "train")
    bad_name = os.path.join(raw_dir, b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    with open(bad_name, "wb") as f:
        f.write((tmp_path / "images" / "train" / "good.png").read_bytes())
    with open(os.path.join(os.fsencode(tmp_path / "labels" / "train"), b"caf\xe9.txt"), "w") as f:
        f.write("1 0.5 0.5 0.2 0.2\n")
    spec = load_data(data)
    (report,) = check_data(spec, ["train"], progress=False)
    assert [(p.kind, Path(p.file).name) for p in report.problems] == [("bad_file_name", "caf\\xe9.png")]
    assert [r.path.name for r in report.records] == ["good.png"]
    assert [r.path.name for r in spec.records("train")] == ["good.png"]  # and again from the cache
    # The doctor prints it (tables and json) without an encoding error.
    result = CliRunner().invoke(app, ["data", "check", str(data)])
    assert result.exit_code == 0 and "bad_file_name" in result.stdout, result.output
    result = CliRunner().invoke(app, ["data", "check", str(data), "--json"])
    assert result.exit_code == 0, result.output
    (problem,) = json.loads(result.stdout)["splits"][0]["problems"]
    assert problem["file"].endswith("caf\\xe9.png") and problem["kind"] == "bad_file_name"


def test_decompression_bomb_png_is_reported_and_skipped(tmp_path: Path) -> None:
    data = _yolo(tmp_path, {"good": "0 0.5 0.5 0.2 0.2\n"})
    bomb = tmp_path / "images" / "train" / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb, optimize=True)  # a few KB on disk, 400 megapixels claimed
    assert bomb.stat().st_size < 100_000
    (report,) = check_data(load_data(data), ["train"], progress=False)
    assert _found(report.problems) == {("bomb.png", None, "image_too_large")}
    assert "exceeds limit" in report.problems[0].detail
    assert [r.path.name for r in report.records] == ["good.png"]
    assert report.skipped == 1


def _coco_with_duplicate_id(root: Path) -> Path:
    for k, name in enumerate(("a.png", "b.png", "c.png")):
        _image(root / "images" / "train" / name, seed=k)
    images = [
        {"id": 25, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 26, "file_name": "c.png", "width": 64, "height": 48},
        {"id": 25, "file_name": "b.png", "width": 64, "height": 48},  # the same id again
    ]
    anns = [
        {"id": 1, "image_id": 25, "category_id": 1, "bbox": [1, 1, 10, 10]},
        {"id": 2, "image_id": 26, "category_id": 1, "bbox": [2, 2, 10, 10]},
        {"id": 3, "image_id": 25, "category_id": 1, "bbox": [30, 30, 10, 10]},
    ]
    js = root / "annotations" / "instances_train.json"
    js.parent.mkdir(parents=True)
    js.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cat"}]}))
    return root


def test_duplicate_coco_image_ids_are_reported_with_both_files_and_skipped(tmp_path: Path) -> None:
    spec = load_data(_coco_with_duplicate_id(tmp_path))
    (report,) = check_data(spec, ["train"], progress=False)
    dups = [p for p in report.problems if p.kind == "duplicate_image_id"]
    assert len(dups) == 2 and all("a.png" in p.detail and "b.png" in p.detail and "id 25" in p.detail for p in dups)
    assert all("2 annotation(s)" in p.detail for p in dups)
    assert report.problems == dups  # the skipped annotations are not reported again as "image missing"
    assert [(r.path.name, r.image_id, r.num_boxes) for r in report.records] == [("c.png", 26, 1)]
    assert report.skipped == 2


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB


def test_a_million_row_label_file_is_capped_and_reported(tmp_path: Path) -> None:
    rows = "0 0.5 0.5 0.2 0.2\n" * 1_000_000  # 18 MB of label text
    data = _yolo(tmp_path, {"huge": rows, "small": "1 0.25 0.25 0.3 0.3\n"})
    rss_before, t0 = _peak_rss_mb(), time.perf_counter()
    spec = load_data(data)
    records = {r.path.name: r for r in spec.records("train")}
    seconds, grown = time.perf_counter() - t0, _peak_rss_mb() - rss_before
    problems = spec._loaded["train"][1]
    capped = [p for p in problems if p.kind == "too_many_boxes"]
    assert len(capped) == 1 and capped[0].file.endswith("huge.txt") and capped[0].line == MAX_BOXES_PER_IMAGE + 1
    assert "1000000 rows" in capped[0].detail
    # The first N rows are read (all the same box: one kept, the rest duplicates), nothing past them.
    assert records["huge.png"].num_boxes == 1
    assert sum(p.kind == "duplicate" for p in problems) == MAX_BOXES_PER_IMAGE - 1
    assert seconds < 20 and grown < 300, (seconds, grown)  # was 10 GB and 78 s for a 1-epoch run
    cache = next((tmp_path / "cache" / "records").glob("*.json"))
    assert cache.stat().st_size < 2_000_000


def test_box_cap_applies_to_coco_too(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "train" / "a.png", 640, 480)
    anns = [
        {"id": i, "image_id": 1, "category_id": 1, "bbox": [i % 600, (i // 600) % 450, 5, 5]}
        for i in range(MAX_BOXES_PER_IMAGE + 10)
    ]
    js = tmp_path / "annotations" / "instances_train.json"
    js.parent.mkdir(parents=True)
    js.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": anns, "categories": [{"id": 1, "name": "c"}]}))
    (report,) = check_data(load_data(tmp_path), ["train"], progress=False)
    assert [p.kind for p in report.problems] == ["too_many_boxes"]
    assert report.records[0].num_boxes == MAX_BOXES_PER_IMAGE


def test_tiny_boxes_are_reported_and_kept(tmp_path: Path) -> None:
    # 64x48 image: a 1x1 px box (BCCD's BloodImage_00338 has one), a 1 px wide sliver, and a 2x2 box (fine).
    one = f"0 {10.5 / 64:.6f} {10.5 / 48:.6f} {1 / 64:.6f} {1 / 48:.6f}\n"
    sliver = f"1 {30.5 / 64:.6f} {20 / 48:.6f} {1 / 64:.6f} {20 / 48:.6f}\n"
    fine = f"1 {50 / 64:.6f} {40 / 48:.6f} {2 / 64:.6f} {2 / 48:.6f}\n"
    data = _yolo(tmp_path, {"a": one + sliver + fine})
    (report,) = check_data(load_data(data), ["train"], progress=False)
    assert _found(report.problems) == {("a.txt", 1, "tiny_box"), ("a.txt", 2, "tiny_box")}
    assert TINY_BOX_PX == 2 and "1.0 x 1.0 pixels" in report.problems[0].detail
    assert report.records[0].num_boxes == 3  # reported, not dropped


@pytest.mark.slow
def test_train_and_data_check_run_through_a_hostile_set(tmp_path: Path) -> None:
    """One CLI training epoch and the doctor on a set holding every item above: both finish, nothing crashes."""
    labels = {f"ok{k}": "0 0.5 0.5 0.4 0.4\n1 0.3 0.3 0.2 0.2\n" for k in range(3)}
    labels["nan"] = NAN_ROWS
    labels["many"] = "0 0.5 0.5 0.2 0.2\n" * (MAX_BOXES_PER_IMAGE + 500)
    data = _yolo(tmp_path / "ds", labels)
    Image.new("1", (20000, 20000)).save(tmp_path / "ds" / "images" / "train" / "bomb.png")
    with open(os.path.join(os.fsencode(tmp_path / "ds" / "images" / "train"), b"\xff.png"), "wb") as f:
        f.write((tmp_path / "ds" / "images" / "train" / "ok0.png").read_bytes())
    runner = CliRunner()
    check = runner.invoke(app, ["data", "check", str(data), "--json"])
    assert check.exit_code == 0, check.output
    kinds = {p["kind"] for p in json.loads(check.stdout)["splits"][0]["problems"]}
    assert {"bad_row", "too_many_boxes", "image_too_large", "bad_file_name"} <= kinds
    train = runner.invoke(app, [
        "train", "--data", str(data), "--device", "cpu", "--epochs", "1", "--imgsz", "64", "--batch", "4",
        "--workers", "0", "--threads", "1", "--project", str(tmp_path / "runs"), "--no-plots", "--no-autoanchor",
    ])
    assert train.exit_code == 0, train.output
    assert (tmp_path / "runs" / "exp" / "weights" / "last.pt").is_file()
