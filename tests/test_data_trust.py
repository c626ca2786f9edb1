"""Which data a run used, and data that cannot be right (issue 21): each case ends in a correct result, a one-line
error or a warning. All on tiny datasets written here."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from mnv3det.data import create_dataloader, load_data
from mnv3det.data.doctor import check_data

NAMES = ["cat", "dog"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))


def _image(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _label(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _yaml(path: Path, **content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"names": NAMES, **content}))
    return path


# -- §2 TIFF: the checks and the loader decode alike -------------------------------------------------------------


def test_tiff_the_checks_accept_is_what_the_loader_reads(tmp_path: Path) -> None:
    raw = np.full((40, 60, 3), 80, np.uint8)  # stored 60 wide, 40 high
    raw[0:10, 0:20] = 255  # a white patch in the stored top-left corner
    images = tmp_path / "images" / "train"
    images.mkdir(parents=True)
    Image.fromarray(raw).save(images / "plain.tif", compression="tiff_lzw")
    Image.fromarray(raw).save(images / "rotated.tif", tiffinfo={274: 6})  # shown turned: 40 wide, 60 high
    Image.fromarray(np.random.default_rng(0).random((40, 60)).astype(np.float32)).save(images / "float.tif")
    _label(tmp_path / "labels/train/plain.txt", "0 0.5 0.5 0.2 0.2\n")
    # orientation 6 turns the stored image clockwise: the white patch lands top-right, 10 wide and 20 high.
    _label(tmp_path / "labels/train/rotated.txt", f"1 {35 / 40} {10 / 60} {10 / 40} {20 / 60}\n")
    spec = load_data(_yaml(tmp_path / "data.yaml", train="images/train"))
    (report,) = check_data(spec, ["train"], progress=False)
    records = {r.path.name: r for r in report.records}
    assert sorted(records) == ["plain.tif", "rotated.tif"]
    assert (records["rotated.tif"].width, records["rotated.tif"].height) == (40, 60)  # not swapped back again
    (bad,) = [p for p in report.problems if p.kind == "image_unreadable"]
    assert bad.file.endswith("float.tif") and "8-bit" in bad.detail
    loader = create_dataloader([records["rotated.tif"]], imgsz=64, batch_size=1, augment=False, workers=0)
    images_, targets, _, shapes = next(iter(loader))
    assert shapes[0][0] == (60, 40)
    cx, cy, w, h = (targets[0, 2:] * 64).tolist()
    patch = images_[0, 0, round(cy - h / 2) + 1 : round(cy + h / 2) - 1, round(cx - w / 2) + 1 : round(cx + w / 2) - 1]
    assert patch.numel() > 0 and (patch > 200).all()  # the box sits on the white patch
