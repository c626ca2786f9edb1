"""`check-app`: reading an app's boxes, matching them, and naming the mistake an app made.

The planted mistakes are made independently of check_app's own mistake table: each runs the public prediction path
(`predictor.predict`) on real BCCD images with the mistake done by hand (a BGR image, a pre-stretched image, a
backend wrapper that skips 1/255 or applies sigmoid again, boxes shifted or left in input pixels, another NMS IoU),
and writes YOLO txt files as `detect --save-txt --save-conf` does. The model is the shipped mnv3-small-min (trained
on synthetic shapes): at conf 0.05 it finds about 25 boxes per BCCD image, enough to tell the pipelines apart.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.core.imgsz import ImgSize
from mnv3det.data.letterbox import letterbox
from mnv3det.deploy.check_app.check import check_app
from mnv3det.deploy.check_app.matching import Tally, match
from mnv3det.deploy.check_app.mistakes import ImageRunner, Steps, detections, mistakes, references
from mnv3det.deploy.check_app.predictions import list_images, read_predictions
from mnv3det.deploy.runtime.backends import load_backend
from mnv3det.deploy.runtime.predictor import NmsSettings, predict
from mnv3det.deploy.runtime.sources import read_image
from mnv3det.errors import UserError

WEIGHTS = Path(__file__).resolve().parents[1] / "mnv3det" / "weights" / "mnv3-small-min.pt"
IMGSZ = 320  # BCCD's 640x480 images letterbox to 320x240 + 40 px of padding above and below
CONF = 0.05  # the shipped model's BCCD scores are low: ~25 boxes per image at 0.05, ~1 at 0.25
IMAGES = 4
runner = CliRunner()


# ---------------------------------------------------------------------------------------------------- matching


def test_match_pairs_same_class_boxes_highest_iou_first():
    app = np.array([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 12, 0.8, 0], [50, 50, 60, 60, 0.7, 1]], dtype=float)
    ref = np.array([[0, 0, 10, 11, 0.85, 0], [50, 50, 60, 60, 0.6, 2]], dtype=float)
    m = match(app, ref)
    # app 0 vs ref 0: IoU 100/110; app 1 vs ref 0: 110/120 (higher, taken first); app 2 has another class
    assert m.pairs == [(1, 0)]
    assert m.ious[0] == pytest.approx(110 / 120)
    assert m.score_diffs[0] == pytest.approx(0.8 - 0.85)
    assert (m.missed, m.extra) == (1, 2)
    tally = Tally()
    tally.add(m)
    assert tally.disagreement == pytest.approx(1 + 2 + (1 - 110 / 120) + 0.05)


def test_match_counts_boxes_clipped_to_nothing_at_the_border_when_their_corners_agree():
    app = np.array([[640, 10, 640, 30, 0.5, 3]], dtype=float)  # zero width: no IoU exists
    assert match(app, app + [0, 0.5, 0, 0, 0, 0]).matched == 1
    assert match(app, app + [0, 5, 0, 0, 0, 0]).matched == 0
    assert match(app, np.zeros((0, 6))).extra == 1


def test_sigmoid_twice_applies_to_the_score_columns_of_both_head_layouts():
    shape = ((64, 64), ((1.0, 1.0), (0.0, 0.0)))
    box = [32.0, 32.0, 10.0, 10.0]
    nms = NmsSettings(conf=0.0)
    yolo = torch.tensor([[box + [0.8, 0.1, 0.9]]])  # (1, 1, 5 + nc): obj, 2 class probs
    free = torch.tensor([[box + [0.1, 0.9]]])  # (1, 1, 4 + nc): class scores, no obj
    once_yolo = detections(yolo, (64, 64), shape, Steps(), nms, nc=2)
    twice_yolo = detections(yolo, (64, 64), shape, Steps(sigmoid_twice=True), nms, nc=2)
    twice_free = detections(free, (64, 64), shape, Steps(sigmoid_twice=True), nms, nc=2)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    assert once_yolo[0, 4] == pytest.approx(0.8 * 0.9)
    assert twice_yolo[0, 4] == pytest.approx(sig(0.8) * sig(0.9), rel=1e-6)
    assert twice_free[0, 4] == pytest.approx(sig(0.9), rel=1e-6)
    assert twice_yolo[0, 5] == twice_free[0, 5] == 1


def test_the_mistake_table_skips_the_reference_iou_and_keys_are_unique():
    keys = [m.key for m in references(static=False) + mistakes(0.5)]
    assert "nms-iou-0.5" not in keys and "nms-iou-0.6" in keys
    assert len(keys) == len(set(keys))
    assert [m.key for m in references(static=True)] == ["reference"]


# ---------------------------------------------------------------------------------------------------- reading


def _images(folder: Path, names=("a.jpg", "b.png")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), np.full((48, 64, 3), 100, np.uint8))
    return folder


def _error(fn, *args) -> str:
    with pytest.raises(UserError) as info:
        fn(*args)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_txt_rows_are_read_and_an_image_without_a_file_has_no_boxes(tmp_path):
    files = list_images(_images(tmp_path / "imgs"))
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "a.txt").write_text("2 0.5 0.5 0.25 0.5 0.9\n\n")
    boxes = read_predictions(pred, files, nc=3)
    assert len(boxes["b.png"].rows) == 0
    np.testing.assert_allclose(boxes["a.jpg"].xyxy(48, 64), [[24, 12, 40, 36, 0.9, 2]])


def test_json_rows_map_by_file_name_or_stem_and_bbox_is_xywh_pixels(tmp_path):
    files = list_images(_images(tmp_path / "imgs"))
    pred = tmp_path / "app.json"
    pred.write_text(json.dumps([{"file_name": "some/dir/a.jpg", "bbox": [1, 2, 3, 4], "score": 0.5, "category_id": 1},
                                {"image": "b", "bbox": [0, 0, 8, 8], "score": 0.7, "category": 0}]))
    boxes = read_predictions(pred, files, nc=2)
    np.testing.assert_allclose(boxes["a.jpg"].xyxy(48, 64), [[1, 2, 4, 6, 0.5, 1]])
    np.testing.assert_allclose(boxes["b.png"].xyxy(48, 64), [[0, 0, 8, 8, 0.7, 0]])


def test_bad_predictions_are_one_line_naming_file_and_row(tmp_path):
    imgs = _images(tmp_path / "imgs")
    files = list_images(imgs)
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "a.txt").write_text("0 0.5 0.5 0.2 0.2 0.9\n0 0.5 0.5 0.2 0.2\n")
    assert f"{pred / 'a.txt'} row 2: expected 6 values" in _error(read_predictions, pred, files, 3)
    (pred / "a.txt").write_text("5 0.5 0.5 0.2 0.2 0.9\n")
    assert "row 1: class 5 is not a class index of the model (0..2)" in _error(read_predictions, pred, files, 3)
    (pred / "a.txt").write_text("0 320 240 20 20 0.9\n")
    assert "fractions of the image" in _error(read_predictions, pred, files, 3)
    (pred / "a.txt").unlink()
    (pred / "zebra.txt").write_text("0 0.5 0.5 0.2 0.2 0.9\n")
    assert f"{pred / 'zebra.txt'}: predictions for an unknown image" in _error(read_predictions, pred, files, 3)
    (pred / "zebra.txt").unlink()
    assert "no .txt files" in _error(read_predictions, pred, files, 3)
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps([{"image_id": 7, "bbox": [1, 2, 3, 4], "score": 0.5, "category_id": 1}]))
    assert f"{coco} row 0: no \"file_name\" (a COCO image_id" in _error(read_predictions, coco, files, 3)
    coco.write_text(json.dumps([{"file_name": "c.jpg", "bbox": [1, 2, 3, 4], "score": 0.5, "category_id": 1}]))
    assert "row 0: predictions for an unknown image 'c.jpg'" in _error(read_predictions, coco, files, 3)
    assert "no such folder" in _error(list_images, tmp_path / "nope")
    assert "no image files" in _error(list_images, pred)


def test_predictions_for_none_of_the_images_is_an_error(tmp_path):
    files = list_images(_images(tmp_path / "imgs"))
    empty = tmp_path / "app.json"
    empty.write_text("[]")
    assert "no predictions for any image" in _error(read_predictions, empty, files, 3)


# ---------------------------------------------------------------------------------------------------- planted


@pytest.fixture(scope="module")
def bccd_images(bccd_dir: Path, tmp_path_factory) -> Path:
    """A handful of BCCD val images in a folder of their own."""
    ids = (bccd_dir / "ImageSets" / "Main" / "val.txt").read_text().split()[:IMAGES]
    folder = tmp_path_factory.mktemp("bccd_val")
    for name in ids:
        shutil.copy(bccd_dir / "JPEGImages" / f"{name}.jpg", folder)
    return folder


@pytest.fixture(scope="module")
def backend():
    return load_backend(WEIGHTS, torch.device("cpu"), 1, one_image=True)


class _Wrapped:
    """A backend whose call is changed, as an app that prepares inputs or reads outputs differently."""

    def __init__(self, inner, change_input=None, change_output=None):
        self.inner, self.change_input, self.change_output = inner, change_input, change_output
        self.names, self.stride, self.fixed_shape = inner.names, inner.stride, inner.fixed_shape
        self.device, self.imgsz = inner.device, inner.imgsz

    def __call__(self, x):
        out = self.inner(self.change_input(x) if self.change_input else x)
        return self.change_output(out) if self.change_output else out


def _sigmoid_scores(out):
    out = out.clone()
    out[..., 4:] = out[..., 4:].sigmoid()
    return out


def _square(backend, image, **kw):
    return predict(backend, [image], imgsz=IMGSZ, square=True, conf=CONF, **kw)


def _shifted(backend, image, shift):
    """Boxes mapped back with the letterbox offset `shift` input px off (only the top/bottom is padded here)."""
    _, (ratio_h, _), (_, pad_h) = letterbox(image, IMGSZ)
    assert pad_h > 0
    det = _square(backend, image).detections[0].numpy().copy()
    det[:, [1, 3]] = np.clip(det[:, [1, 3]] - shift / ratio_h, 0, image.shape[0])
    return det


def _stretched(backend, image):
    h0, w0 = image.shape[:2]
    resized = cv2.resize(image, (IMGSZ, IMGSZ), interpolation=cv2.INTER_LINEAR)
    det = _square(backend, resized).detections[0].numpy().copy()
    det[:, [0, 2]] *= w0 / IMGSZ
    det[:, [1, 3]] *= h0 / IMGSZ
    return det


def _input_pixels(backend, image, remove_padding):
    det = _square(backend, image).input_detections[0].double().numpy().copy()
    if not remove_padding:
        ratio, _ = letterbox(image, IMGSZ)[1:]
        det[:, [1, 3]] /= ratio[0]
        det[:, [0, 2]] /= ratio[1]
    return det


PLANTED = {  # key check_app must name -> the app's boxes for one image, made without check_app's table
    "reference": lambda b, im: predict(b, [im], imgsz=IMGSZ, conf=CONF).detections[0].numpy(),
    "reference-square": lambda b, im: _square(b, im).detections[0].numpy(),
    "stretch": _stretched,
    "bgr": lambda b, im: _square(b, np.ascontiguousarray(im[..., ::-1])).detections[0].numpy(),
    "no-1/255": lambda b, im: _square(_Wrapped(b, change_input=lambda x: x * 255), im).detections[0].numpy(),
    "input-space": lambda b, im: _input_pixels(b, im, remove_padding=True),
    "padding-kept": lambda b, im: _input_pixels(b, im, remove_padding=False),
    "pad-1": lambda b, im: _shifted(b, im, -1),
    "pad+2": lambda b, im: _shifted(b, im, 2),
    "sigmoid-twice": lambda b, im: _square(_Wrapped(b, change_output=_sigmoid_scores), im).detections[0].numpy(),
    "nms-iou-0.3": lambda b, im: _square(b, im, iou=0.3).detections[0].numpy(),
    "nms-iou-0.5": lambda b, im: _square(b, im, iou=0.5).detections[0].numpy(),
    "nms-iou-0.6": lambda b, im: _square(b, im, iou=0.6).detections[0].numpy(),
    "nms-iou-0.7": lambda b, im: _square(b, im, iou=0.7).detections[0].numpy(),
}


def _write_txt(folder: Path, images: Path, make) -> int:
    """The app's boxes as `detect --save-txt --save-conf` writes them (no file for an image without boxes)."""
    folder.mkdir()
    total = 0
    for path in sorted(images.iterdir()):
        image = read_image(path)
        h, w = image.shape[:2]
        det = make(image)
        total += len(det)
        if len(det):
            (folder / f"{path.stem}.txt").write_text("".join(
                f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f} "
                f"{s:.5f}\n" for x1, y1, x2, y2, s, c in det))
    return total


@pytest.mark.parametrize("planted", list(PLANTED))
def test_check_app_names_each_planted_mistake_on_real_images(planted, bccd_images, backend, tmp_path):
    pred = tmp_path / "app_labels"
    boxes = _write_txt(pred, bccd_images, lambda image: PLANTED[planted](backend, image))
    assert boxes >= 5 * IMAGES  # enough boxes to tell pipelines apart (0-255 input finds the fewest, ~30)
    result = check_app(WEIGHTS, bccd_images, pred, imgsz=IMGSZ, threads=1)
    if planted.startswith("reference"):
        assert result.verdict == "agrees", result.line
        assert result.reference.key == planted
        assert result.line.startswith("agrees")
    else:
        assert (result.verdict, result.mistake) == ("mistake", planted), result.line
        assert result.line.startswith("your app")
        assert result.candidates[0].key == planted
    assert result.candidates[0].tally.of_app > 0.95  # the named pipeline finds the app's boxes


def test_the_reference_steps_are_the_prediction_path_itself(bccd_images, backend):
    image = read_image(sorted(bccd_images.iterdir())[0])
    nms = NmsSettings(conf=CONF)
    run = ImageRunner(backend, image, ImgSize(IMGSZ, IMGSZ), nms)
    for square in (False, True):
        expected = predict(backend, [image], imgsz=IMGSZ, nms=nms, square=square).detections[0].numpy()
        np.testing.assert_array_equal(run(Steps(square=square)), expected)


def test_cli_prints_the_verdict_and_exits_1_when_the_app_differs(bccd_images, backend, tmp_path):
    pred = tmp_path / "app_labels"
    _write_txt(pred, bccd_images, lambda image: PLANTED["bgr"](backend, image))
    args = ["check-app", "-w", str(WEIGHTS), "--images", str(bccd_images), "--predictions", str(pred),
            "--imgsz", str(IMGSZ), "--threads", "1"]
    shown = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert shown.exit_code == 1, shown.output
    assert "your app likely feeds BGR" in shown.output and "Closest pipelines" in shown.output
    as_json = runner.invoke(app, [*args, "--json"])
    payload = json.loads(as_json.output)
    assert (payload["verdict"], payload["mistake"]) == ("mistake", "bgr")
    assert len(payload["images"]) == IMAGES
    missing = runner.invoke(app, ["check-app", "-w", str(WEIGHTS), "--images", str(tmp_path / "nope"),
                                  "--predictions", str(pred)])
    assert missing.exit_code == 2 and "no such folder" in missing.output


def test_thresholds_out_of_range_are_one_line_errors_before_the_model_loads(tmp_path):
    imgs = _images(tmp_path / "imgs")
    assert "--conf 1.5" in _error(lambda: check_app(tmp_path / "none.pt", imgs, tmp_path, conf=1.5))
    assert "--max-det 0" in _error(lambda: check_app(tmp_path / "none.pt", imgs, tmp_path, max_det=0))


def test_detects_own_txt_and_json_outputs_agree(bccd_images, tmp_path):
    detect = runner.invoke(app, ["detect", str(bccd_images), "-w", str(WEIGHTS), "--imgsz", str(IMGSZ), "--conf",
                                 str(CONF), "--save-txt", "--save-conf", "--save-json", "--nosave", "--project",
                                 str(tmp_path), "--threads", "1"])
    assert detect.exit_code == 0, detect.output
    for pred in (tmp_path / "exp" / "labels", tmp_path / "exp" / "predictions.json"):
        result = check_app(WEIGHTS, bccd_images, pred, imgsz=IMGSZ, threads=1)
        assert result.verdict == "agrees", result.line
        assert result.reference.tally.matched == result.reference.tally.app >= 5 * IMAGES
