"""COCO128 and BCCD from ../shared load with the expected counts; `mnv3det data check` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.data import load_data


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))


def test_coco128_yolo_yaml_and_coco_json_agree(coco128_dir: Path, tmp_path: Path) -> None:
    spec = load_data(coco128_dir / "coco128.yaml")  # as shipped: `path: .` resolves to the yaml's folder
    assert spec.format == "yolo" and spec.nc == 80 and spec.names[0] == "person"
    train, val = spec.records("train"), spec.records("val")
    assert len(train) == 128 and sum(r.num_boxes > 0 for r in train) == 126
    assert len(val) == 128
    # The val split is a different set of images, not a copy of train.
    assert not {r.path.name for r in train} & {r.path.name for r in val}
    assert load_data(coco128_dir).source == spec.source  # the folder finds its yaml

    coco_yaml = tmp_path / "coco.yaml"
    coco_yaml.write_text(yaml.safe_dump({
        "path": str(coco128_dir), "format": "coco",
        "train": {"images": "images/train2017", "annotations": "annotations/instances_train2017.json"},
    }))
    coco = load_data(coco_yaml)
    assert coco.names == spec.names and coco.category_ids[:3] == [1, 2, 3] and coco.category_ids[-1] == 90
    coco_train = {r.path.name: r for r in coco.records("train")}
    assert len(coco_train) == 128 and sum(r.crowd.sum() for r in coco_train.values()) == 10
    assert coco_train["000000000009.jpg"].image_id == 9
    for rec in train:  # same non-crowd boxes as the YOLO labels, to label-rounding precision
        other = coco_train[rec.path.name]
        boxes, classes = other.boxes[~other.crowd], other.classes[~other.crowd]
        assert len(boxes) == len(rec.boxes)
        for box, cls in zip(rec.boxes, rec.classes):
            diff = np.abs(boxes - box).max(1) + 1e6 * (classes != cls)
            assert diff.min() <= 1.0, (rec.path.name, box)


def test_bccd_voc_folder(bccd_dir: Path) -> None:
    spec = load_data(bccd_dir)
    assert spec.format == "voc" and spec.names == ["Platelets", "RBC", "WBC"]
    assert set(spec.splits) == {"train", "val", "test"}
    train = spec.records("train")
    assert len(train) == 205 and all(r.width == 640 and r.height == 480 for r in train)
    assert sum(r.num_boxes for r in train) > 2000


def test_data_check_cli(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    import cv2

    cv2.imwrite(str(root / "images" / "train" / "a.png"), np.zeros((32, 32, 3), np.uint8))
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n7 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "names": ["a", "b"]}))
    runner = CliRunner()
    result = runner.invoke(app, ["data", "check", str(root), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (train,) = out["splits"]
    assert (train["images"], train["labelled"], train["boxes"]) == (1, 1, 1)
    assert [(p["line"], p["kind"]) for p in train["problems"]] == [(2, "class_out_of_range")]
    result = runner.invoke(app, ["data", "check", str(root / "data.yaml"), "--strict"])
    assert result.exit_code == 1 and "class_out_of_range" in result.stdout
    result = runner.invoke(app, ["data", "check", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
