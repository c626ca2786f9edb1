"""Data-yaml mistakes a new user makes (issue 10, section 2): misspelt keys, YAML syntax errors, and a
`names` list that does not fit the labels. Each is one clear line before any training starts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.core.yamlio import nearest_key, read_yaml
from mnv3det.data import load_data
from mnv3det.errors import UserError


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))


def _yolo(root: Path, rows_per_image: list[str], names: list[str], **extra) -> Path:
    """A YOLO set, one 64x64 image per entry of `rows_per_image`, and its data yaml (plus `extra` keys)."""
    for k, rows in enumerate(rows_per_image):
        img = root / "images" / "train" / f"{k}.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img), np.random.default_rng(k).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        label = root / "labels" / "train" / f"{k}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(rows)
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/train", "names": names, **extra}))
    return data


@pytest.mark.parametrize("typo, meant", [("vall", "val"), ("trian", "train"), ("name", "names"), ("fromat", "format")])
def test_misspelt_data_yaml_key_names_the_key_and_the_nearest_one(tmp_path: Path, typo: str, meant: str) -> None:
    data = _yolo(tmp_path, ["0 0.5 0.5 0.2 0.2\n"], ["a"])
    content = yaml.safe_load(data.read_text())
    content[typo] = content.pop(meant) if meant in content else "yolo"
    data.write_text(yaml.safe_dump(content))
    with pytest.raises(UserError, match=rf"unknown key `{typo}:` \(did you mean `{meant}:`\?\)"):
        load_data(data)
    # A folder holding that yaml points at the typo too (it used to say "cannot tell the format").
    if typo == "trian":
        with pytest.raises(UserError, match="did you mean `train:`"):
            load_data(tmp_path)


def test_unrelated_key_lists_the_known_ones_and_foreign_keys_are_ignored(tmp_path: Path) -> None:
    data = _yolo(tmp_path, ["0 0.5 0.5 0.2 0.2\n"], ["a"], author="me")
    with pytest.raises(UserError, match="unknown key `author:`.*path, train, val, test, names, nc, format, class_subset"):
        load_data(data)
    data = _yolo(tmp_path, ["0 0.5 0.5 0.2 0.2\n"], ["a"], download="https://x", roboflow={"workspace": "w"})
    assert load_data(data).names == ["a"]  # keys YOLOv5 / Roboflow exports write are not errors
    assert nearest_key("vall", ["val", "train"]) == "val" and nearest_key("author", ["val", "train"]) is None


@pytest.mark.parametrize(
    "text, where",
    [
        ("train: images/train\nval: [images/val\nnames: [a]\n", "line 3, column 6"),  # unclosed [ noticed on line 3
        ("train: images/train\n  names: [a]\n", "line 2, column 8"),  # bad indentation
        ("train: images/train\nnames:\t[a]\n", "line 2, column 7"),  # a tab where a value starts
    ],
)
def test_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(UserError) as info:
        load_data(bad)
    message = str(info.value)
    assert message.startswith(f"data yaml {bad}, {where}: ") and "\n" not in message
    result = CliRunner().invoke(app, ["data", "check", str(bad)])
    assert result.exit_code == 2 and where in result.output and "Traceback" not in result.output


def test_read_yaml_names_what_it_reads_for_any_yaml(tmp_path: Path) -> None:
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 0.01\nmomentum: [0.9\n")
    with pytest.raises(UserError, match=rf"^--hyp {hyp}, line 3, column 1: .*flow sequence started at line 2"):
        read_yaml(hyp, "--hyp")
    hyp.write_bytes(b"lr0: 0.01\n# caf\xe9\n")
    with pytest.raises(UserError, match="not UTF-8"):
        read_yaml(hyp, "--hyp")
    with pytest.raises(UserError, match="not found"):
        read_yaml(tmp_path / "nope.yaml", "--hyp")
    hyp.write_text("")
    assert read_yaml(hyp) is None


# 20 boxes of classes 0..9 over two images; names of 3 classes keep only classes 0..2 (6 of 20 boxes).
TEN_CLASS_ROWS = ["".join(f"{c} {0.05 + 0.09 * c:.3f} {0.3 + 0.4 * k:.3f} 0.05 0.1\n" for c in range(10)) for k in range(2)]


def test_names_for_another_dataset_stop_training_and_fail_data_check(tmp_path: Path) -> None:
    data = _yolo(tmp_path, TEN_CLASS_ROWS, ["a", "b", "c"])
    with pytest.raises(UserError, match=r"14 of 20 boxes \(70%\).*class ids up to 9 but `names` has 3 entries.*class_subset: true"):
        load_data(data).records("train")
    result = CliRunner().invoke(app, ["data", "check", str(data)])
    assert result.exit_code == 1, result.output
    assert "class ids up to 9" in " ".join(result.output.split())
    json_run = CliRunner().invoke(app, ["data", "check", str(data), "--json"])
    assert json_run.exit_code == 1 and '"names_mismatch": "split' in json_run.stdout
    train = CliRunner().invoke(app, ["train", "--data", str(data), "--epochs", "1", "--imgsz", "64", "--device", "cpu",
                                     "--workers", "0", "--project", str(tmp_path / "runs")])
    assert train.exit_code == 2 and "class_subset" in train.output and "Traceback" not in train.output


def test_class_subset_is_the_deliberate_opt_out(tmp_path: Path) -> None:
    data = _yolo(tmp_path, TEN_CLASS_ROWS, ["a", "b", "c"], class_subset=True)
    spec = load_data(data)
    assert spec.class_subset and sum(r.num_boxes for r in spec.records("train")) == 6
    assert CliRunner().invoke(app, ["data", "check", str(data)]).exit_code == 0
    bad = _yolo(tmp_path, TEN_CLASS_ROWS, ["a", "b", "c"], class_subset="yes")
    with pytest.raises(UserError, match="`class_subset` must be true or false"):
        load_data(bad)


def test_a_few_out_of_range_boxes_are_only_reported(tmp_path: Path) -> None:
    data = _yolo(tmp_path, ["0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n7 0.7 0.7 0.1 0.1\n"], ["a", "b"])
    assert sum(r.num_boxes for r in load_data(data).records("train")) == 2  # 1 of 3 dropped: not "most"


def test_misspelt_voc_name_is_named_with_its_nearest(tmp_path: Path) -> None:
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    ids = []
    for k in range(2):
        cv2.imwrite(str(voc / "JPEGImages" / f"{k}.jpg"), np.zeros((64, 64, 3), np.uint8))
        objects = "".join(
            f"<object><name>{n}</name><bndbox><xmin>{5 + 12 * i}</xmin><ymin>5</ymin><xmax>{15 + 12 * i}</xmax>"
            f"<ymax>15</ymax></bndbox></object>"
            for i, n in enumerate(["RBC", "RBC", "RBC", "WBC"])
        )
        (voc / "Annotations" / f"{k}.xml").write_text(f"<annotation>{objects}</annotation>")
        ids.append(str(k))
    (voc / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids) + "\n")
    data = tmp_path / "bccd.yaml"
    data.write_text(yaml.safe_dump({"path": "voc", "format": "voc", "train": "train", "names": ["RBCs", "WBC"]}))
    with pytest.raises(UserError, match=r"6 of 8 boxes \(75%\).*`RBC` \(6 boxes; `names` has `RBCs`\)"):
        load_data(data).records("train")
