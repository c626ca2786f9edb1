"""`suggest_preset`: the training preset chosen from the data when no --hyp is given (issue 10)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.data import load_data
from mnv3det.data import presets
from mnv3det.data.presets import SMALL_DATA_MAX_IMAGES, suggest_preset


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))


def _yolo(root: Path, n: int) -> Path:
    for k in range(n):
        img = root / "images" / "train" / f"{k}.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img), np.random.default_rng(k).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "train" / f"{k}.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/train", "names": ["a"]}))
    return data


def test_small_sets_get_small_data_and_larger_ones_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_data(_yolo(tmp_path, 3))
    preset, reason = suggest_preset(spec, report=False)
    assert preset == "hyp.small-data" and reason.startswith("3 training images") and str(SMALL_DATA_MAX_IMAGES) in reason
    assert 205 <= SMALL_DATA_MAX_IMAGES  # BCCD (205 train images), where hyp.scratch measurably fails, is "small"
    monkeypatch.setattr(presets, "SMALL_DATA_MAX_IMAGES", 2)  # the branch above the threshold
    assert suggest_preset(spec, report=False)[0] == "hyp.scratch"
    assert suggest_preset(spec, max_images=2, report=False)[0] == "hyp.small-data"  # counts what is trained on


@pytest.mark.slow
def test_train_without_hyp_says_which_preset_and_why(tmp_path: Path) -> None:
    data = _yolo(tmp_path / "ds", 4)
    result = CliRunner().invoke(app, [
        "train", "--data", str(data), "--epochs", "1", "--imgsz", "64", "--batch", "4", "--device", "cpu",
        "--workers", "0", "--threads", "1", "--project", str(tmp_path / "runs"), "--no-plots", "--no-autoanchor",
    ])
    assert result.exit_code == 0, result.output
    assert "no --hyp: 4 training images" in result.output and "hyp.small-data" in result.output
    saved = yaml.safe_load((tmp_path / "runs" / "exp" / "config.yaml").read_text())
    assert saved["optimizer"] == "AdamW" and saved["epochs"] == 1  # the preset's optimizer, the CLI's epochs
