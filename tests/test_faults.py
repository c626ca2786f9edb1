"""Faults and hostile input (issue 31 B): the user's files are never touched, a full disk is one line, images
that decode but cannot be processed are skipped, and the API checks what the CLI checks."""

from __future__ import annotations

import errno
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import mnv3det
from mnv3det.cli import app
from mnv3det.core import outputs
from mnv3det.core.imgsz import MAX_SIDE, ImgSize
from mnv3det.core.outputs import MANIFEST_NAME, RunFiles, write_output
from mnv3det.data.checks import read_image_header
from mnv3det.data.imageio import UnprocessableImage, read_image
from mnv3det.errors import UserError
from tests.test_detect import make_checkpoint, write_image


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("faults") / "best.pt")


def _detect(weights: Path, source: Path, *extra: str):
    args = ["detect", str(source), "-w", str(weights), "--imgsz", "96", "--conf", "0.01", *extra]
    return CliRunner().invoke(app, args, env={"COLUMNS": "300"})


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


# ------------------------------------------------------------- B.0 never touch what the user has


def test_detect_into_the_dataset_it_reads_is_refused_and_labels_stay(weights, tmp_path, monkeypatch):
    data = tmp_path / "mydata"
    (data / "images" / "val").mkdir(parents=True)
    (data / "labels" / "val").mkdir(parents=True)
    write_image(data / "images" / "val" / "a.jpg")
    (data / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    monkeypatch.chdir(tmp_path)
    result = _detect(weights, Path("mydata/images/val"), "--save-txt", "--project", ".", "--name", "mydata",
                     "--exist-ok")
    assert "holds the source" in _one_line_error(result)
    assert (data / "labels" / "val" / "a.txt").read_text() == "0 0.5 0.5 0.2 0.2\n"
    assert sorted(p.name for p in data.rglob("*")) == ["a.jpg", "a.txt", "images", "labels", "val", "val"]


def test_detect_into_its_own_source_folder_is_refused_and_images_stay(weights, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    before = write_image(photos / "p.jpg").read_bytes()
    result = _detect(weights, photos, "--project", str(tmp_path), "--name", "photos", "--exist-ok")
    assert "is the source" in _one_line_error(result)
    assert (photos / "p.jpg").read_bytes() == before and sorted(p.name for p in photos.iterdir()) == ["p.jpg"]
    inside = _detect(weights, photos, "--project", str(photos / "runs"))
    assert "lies inside the source" in _one_line_error(inside) and not (photos / "runs").exists()


def test_exist_ok_removes_only_what_an_earlier_run_recorded(weights, tmp_path):
    run = tmp_path / "runs" / "exp"
    (run / "labels").mkdir(parents=True)
    (run / "labels" / "mine.txt").write_text("the user's own file\n")
    source = tmp_path / "src"
    source.mkdir()
    write_image(source / "a.jpg")
    first = _detect(weights, source, "--save-txt", "--project", str(tmp_path / "runs"), "--exist-ok")
    assert first.exit_code == 0, first.output
    assert "labels/a.txt" in (run / MANIFEST_NAME).read_text().split()
    (source / "a.jpg").rename(source / "b.jpg")
    again = _detect(weights, source, "--save-txt", "--project", str(tmp_path / "runs"), "--exist-ok")
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in (run / "labels").iterdir()) == ["b.txt", "mine.txt"]  # a.txt (ours) went
    assert (run / "labels" / "mine.txt").read_text() == "the user's own file\n"


def test_a_run_never_overwrites_a_file_it_did_not_write(tmp_path):
    (tmp_path / "summary.txt").write_text("notes\n")
    files = RunFiles(tmp_path)
    with pytest.raises(UserError, match="no mnv3det run wrote it"):
        files.write(tmp_path / "summary.txt", "new")
    assert (tmp_path / "summary.txt").read_text() == "notes\n"
    files.write(tmp_path / "results.json", "{}")
    files.write(tmp_path / "results.json", "{}")  # its own file: rewritten
    assert RunFiles(tmp_path).recorded == {"results.json"}


def test_train_exist_ok_keeps_a_results_csv_no_run_wrote(tmp_path):
    from mnv3det.train.trainer import open_run_dir

    run = tmp_path / "exp"
    (run / "weights").mkdir(parents=True)
    (run / "results.csv").write_text("the user's table\n")
    cfg = SimpleNamespace(project=str(tmp_path), name="exp", exist_ok=True)
    with pytest.raises(UserError, match="results.csv exists and no mnv3det run wrote it"):
        with open_run_dir(cfg, None):
            pass
    assert (run / "results.csv").read_text() == "the user's table\n"
    (run / "results.csv").unlink()
    with open_run_dir(cfg, None):
        (run / "results.csv").write_text("epoch\n")  # what a run writes, recorded by open_run_dir
    with open_run_dir(cfg, None):
        assert not (run / "results.csv").exists()  # an earlier run's: removed


# ------------------------------------------------------------- B.1 a full or read-only disk


def _fail_writes(monkeypatch, code: int) -> None:
    def fill(tmp, payload):
        Path(tmp).write_bytes(payload[: len(payload) // 2])  # part of it landed, then the disk refused
        raise OSError(code, "simulated")

    monkeypatch.setattr(outputs, "_fill", fill)


def test_detect_on_a_full_disk_is_one_line_and_leaves_no_partial_file(weights, tmp_path, monkeypatch):
    source = tmp_path / "src"
    source.mkdir()
    write_image(source / "a.jpg")
    _fail_writes(monkeypatch, errno.ENOSPC)
    result = _detect(weights, source, "--save-txt", "--save-json", "--project", str(tmp_path / "runs"))
    assert "the disk is full" in _one_line_error(result) and str(tmp_path / "runs" / "exp") in result.output
    left = [p.name for p in (tmp_path / "runs" / "exp").rglob("*") if p.is_file()]
    assert set(left) <= {MANIFEST_NAME}, left  # no image, label, json or temporary, whole or partial


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "cannot write in")])
def test_val_plots_and_json_on_a_refusing_disk_are_one_line(tmp_path, monkeypatch, code, words):
    from mnv3det.evaluate.plots import plot_confusion_matrix
    from mnv3det.evaluate.write import write_json

    _fail_writes(monkeypatch, code)
    with pytest.raises(UserError, match=words):
        plot_confusion_matrix(np.eye(4), ["a", "b", "c"], tmp_path / "confusion_matrix.png")
    with pytest.raises(UserError, match=str(tmp_path)):
        write_json([{"image_id": 1}], tmp_path / "predictions.json")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert write_output(tmp_path / "ok.txt", "fine").read_text() == "fine"


# ------------------------------------------------------------- B.2 images that decode but cannot be processed


def _png_header(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header claims width x height (a decompression bomb: the pixels are never there)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * (width * 3 + 1))) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_strips_and_bombs_are_skipped_by_detect_with_one_line_each(weights, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    cv2.imwrite(str(source / "strip.png"), np.full((5, 10000, 3), 128, np.uint8))
    _png_header(source / "bomb.png", 60000, 60000)
    write_image(source / "good.jpg")
    result = _detect(weights, source, "--project", str(tmp_path / "runs"))
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "strip.png: image is 10000x5 pixels, a strip" in result.output
    assert "bomb.png: Image size (3600000000 pixels) exceeds limit" in result.output
    assert (tmp_path / "runs" / "exp" / "good.jpg").is_file()


def test_the_doctor_and_the_decoder_apply_one_rule(tmp_path):
    strip = tmp_path / "strip.png"
    cv2.imwrite(str(strip), np.zeros((5, 10000, 3), np.uint8))
    bomb = _png_header(tmp_path / "bomb.png", 60000, 60000)
    for path, kind in ((strip, "image_unreadable"), (bomb, "image_too_large")):
        with pytest.raises(UnprocessableImage) as decoded:
            read_image(path)
        width, height, problems = read_image_header(path)
        assert (width, height) == (0, 0) and [p.kind for p in problems] == [kind]
        assert problems[0].detail == decoded.value.reason


def test_an_imgsz_that_cannot_fit_in_memory_is_refused_before_any_work():
    with pytest.raises(UserError, match=f"--imgsz 100000: at most {MAX_SIDE} pixels"):
        ImgSize.parse(100000)
    result = CliRunner().invoke(app, ["val", "-w", "missing.pt", "--imgsz", "100000"])
    assert result.exit_code == 2 and "at most" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------- B.3 the API checks what the CLI checks


@pytest.fixture(scope="module")
def detector(weights):
    return mnv3det.load(weights, device="cpu", imgsz=96)


@pytest.mark.parametrize("options, words", [
    (dict(conf=2), "conf=2: must be a number between 0 and 1"),
    (dict(conf=-1), "conf=-1"),
    (dict(iou=5), "iou=5"),
    (dict(max_det=0), "max_det=0: must be an integer"),
    (dict(classes=[7]), r"classes=\[7\]: not among this model's classes"),
])
def test_predict_refuses_what_detect_refuses(weights, detector, tmp_path, options, words):
    path = write_image(tmp_path / "a.jpg")
    with pytest.raises(UserError, match=words):
        detector.predict(path, **options)
    cli_option = "--" + next(iter(options)).replace("_", "-")
    value = ",".join(map(str, options["classes"])) if "classes" in options else str(next(iter(options.values())))
    result = _detect(weights, path, cli_option, value, "--project", str(tmp_path / "runs"))
    assert cli_option in _one_line_error(result)


@pytest.mark.parametrize("shape", [(0, 0, 3), (5, 10000, 3)])
def test_predict_refuses_arrays_it_cannot_process(detector, shape):
    with pytest.raises(UserError, match="image is"):
        detector.predict(np.zeros(shape, np.uint8))


def test_a_16_bit_png_gives_the_same_boxes_by_path_and_as_a_pil_image(detector, tmp_path):
    from PIL import Image

    eight = cv2.cvtColor(cv2.imread(str(write_image(tmp_path / "a.png", 96, 128, seed=4))), cv2.COLOR_BGR2GRAY)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), eight.astype(np.uint16) * 257)  # 16-bit grey, the full range
    with Image.open(path) as im:
        assert im.mode.startswith("I")
        from_pil = detector.predict(im, conf=0.01)
    by_path = detector.predict(path, conf=0.01)
    assert len(by_path) > 0
    np.testing.assert_allclose(from_pil.boxes, by_path.boxes)
    np.testing.assert_array_equal(from_pil.image, by_path.image)


def test_the_loader_skips_an_image_that_became_a_strip_with_one_line(tmp_path, capsys):
    from mnv3det.data.loader import create_dataloader
    from mnv3det.data.records import ImageRecord

    def record(path: Path, image_id: int) -> ImageRecord:
        return ImageRecord(path=path, width=128, height=96, boxes=np.zeros((0, 4), np.float32),
                           classes=np.zeros(0, np.int64), crowd=np.zeros(0, bool), difficult=np.zeros(0, bool),
                           image_id=image_id)

    good = write_image(tmp_path / "good.jpg")
    strip = tmp_path / "strip.png"  # checked as a normal image, replaced by a strip before the loader reads it
    cv2.imwrite(str(strip), np.zeros((5, 10000, 3), np.uint8))
    loader = create_dataloader([record(good, 0), record(strip, 1)], imgsz=64, batch_size=2, augment=False,
                               workers=0)
    images, targets, paths, _ = next(iter(loader))
    assert images.shape[0] == 2 and paths == [str(good), str(strip)]
    assert (images[1] == 114).all()  # the gray stand-in keeps the record order
    out = capsys.readouterr()
    assert "strip.png (image is 10000x5 pixels, a strip" in out.out + out.err
