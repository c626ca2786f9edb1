"""The Python API (`mnv3det.load`, `mnv3det.val`) and what it promises: the trained size by default, the same
boxes from a .pt and its default export, one prediction path under val, one colour per class, typed configs."""

from __future__ import annotations

import json
import sys
import types

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mnv3det
from mnv3det.cli import app
from mnv3det.core.checkpoint import load_checkpoint, save_checkpoint
from mnv3det.core.imgsz import ImgSize
from mnv3det.errors import UserError
from tests.test_detect import NAMES, _same_boxes, make_checkpoint, write_image

runner = CliRunner()


class _FakeFrame:
    """Stands in for pandas.DataFrame (pandas is not a dependency): keeps what it was given."""

    def __init__(self, rows, columns):
        self.rows, self.columns = rows, columns


@pytest.fixture
def fake_pandas(monkeypatch):
    module = types.ModuleType("pandas")
    module.DataFrame = _FakeFrame
    monkeypatch.setitem(sys.modules, "pandas", module)
    return module


@pytest.fixture
def no_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError


def test_detections_plot_save_and_convert(weights, tmp_path, fake_pandas, monkeypatch):
    detector = mnv3det.load(weights, device="cpu", conf=0.32)
    path = write_image(tmp_path / "a.jpg", 96, 160, seed=3)
    result = detector.predict(path)
    assert len(result) > 0 and result.path == path
    drawn = result.plot()
    original = cv2.imread(str(path))
    assert drawn.shape == original.shape and drawn.dtype == np.uint8 and not np.array_equal(drawn, original)
    assert np.array_equal(result.image, original)  # plot draws on a copy
    saved = result.save(tmp_path / "out" / "a_pred.png")
    assert np.array_equal(cv2.imread(str(saved)), drawn)  # png: lossless, the same pixels
    with pytest.raises(UserError, match="give a .jpg"):
        result.save(tmp_path / "a_pred.txt")

    payload = json.loads(result.to_json())
    assert payload["path"] == str(path) and payload["image_shape"] == [96, 160]
    first = payload["detections"][0]
    assert set(first) == {"x1", "y1", "x2", "y2", "score", "class", "name"} and first["name"] in NAMES
    assert first["x1"] == pytest.approx(float(result.boxes[0, 0]))
    frame = result.to_df()
    assert frame.columns == ["x1", "y1", "x2", "y2", "score", "class", "name"] and frame.rows == result.rows()

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(UserError, match=r"Detections.to_df\(\) needs pandas, which is not installed: pip install pandas"):
        result.to_df()
    array = detector.predict(original)  # from an array: drawn the same, no path
    assert array.path is None and np.array_equal(array.plot(), drawn)


def test_export_from_python_takes_the_cli_option_names(weights, tmp_path):
    pytest.importorskip("onnxruntime")
    result = mnv3det.export(weights, format="onnx", imgsz=96, dynamic=False, output=tmp_path / "m.onnx", runs=1)
    assert result.passed and result.path == tmp_path / "m.onnx" and result.path.is_file()
    payload = json.loads(result.to_json())
    assert payload["format"] == "onnx" and payload["dynamic"] is False and payload["path"] == str(tmp_path / "m.onnx")
    with pytest.raises(UserError, match="--dynamic applies to --format onnx/torchscript; openvino exports are static"):
        mnv3det.export(weights, format="openvino", dynamic=True)
    with pytest.raises(UserError, match="'paddle'"):
        mnv3det.export(weights, format="paddle")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A checkpoint that says it was trained at 96 (make_checkpoint's model with a config)."""
    folder = tmp_path_factory.mktemp("api")
    plain = make_checkpoint(folder / "plain.pt")
    return save_checkpoint({**load_checkpoint(plain).to_dict(), "config": {"imgsz": 96, "recipe": "mnv3-small"}}, folder / "best.pt")


def test_load_and_predict_a_path_an_array_and_a_list(weights, tmp_path):
    detector = mnv3det.load(weights, device="cpu", conf=0.32)
    assert detector.names == NAMES and detector.imgsz == ImgSize(96, 96)  # the trained size by default
    path = write_image(tmp_path / "a.jpg", 96, 160, seed=3)
    result = detector.predict(path)
    assert isinstance(result, mnv3det.Detections) and len(result) > 0
    assert result.boxes.shape == (len(result), 4) and result.boxes.dtype == np.float32
    assert result.scores.min() >= 0.32 and set(result.labels) <= set(NAMES)
    assert result.image_shape == (96, 160)
    assert (result.boxes[:, 2] <= 160).all() and (result.boxes[:, 3] <= 96).all()  # original-image pixels

    same = detector.predict(cv2.imread(str(path)))  # a BGR array as OpenCV reads it
    np.testing.assert_allclose(same.boxes, result.boxes)
    Image = pytest.importorskip("PIL.Image")
    from_pil = detector.predict(Image.open(path))  # PIL gives RGB; converted to BGR like the rest
    np.testing.assert_allclose(from_pil.boxes, result.boxes)
    both = detector([path, path], conf=0.9)  # a list gives a list; a per-call threshold overrides the default
    assert isinstance(both, list) and len(both) == 2 and all(len(d) == 0 for d in both)


def test_predict_refuses_what_is_not_an_image(weights, tmp_path):
    detector = mnv3det.load(weights, device="cpu")
    with pytest.raises(UserError, match="expected an image array"):
        detector.predict(np.zeros((4, 4), np.float32))
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="bad.jpg"):
        detector.predict(tmp_path / "bad.jpg")


def test_val_returns_its_result_and_run_folder(tmp_path):
    from mnv3det.data import load_data
    from mnv3det.models import build_model

    names = load_data(None).names
    torch.manual_seed(0)
    model = build_model("mnv3-small", nc=len(names))
    path = save_checkpoint({"recipe": model.recipe, "nc": model.nc, "names": list(names), "model": model.state_dict(),
                            "epoch": -1, "config": {"imgsz": 64}}, tmp_path / "demo.pt")
    result = mnv3det.val(path, imgsz=64, batch=16, workers=0, plots=False, device="cpu", project=tmp_path / "runs")
    assert result.source == "pycocotools" and 0.0 <= result.map <= 1.0
    assert result.save_dir == str(tmp_path / "runs" / "exp") and (tmp_path / "runs" / "exp" / "results.json").is_file()
    with pytest.raises(TypeError, match="confidence"):  # a misspelt option is an error, never silently ignored
        mnv3det.val(path, confidence=0.1)
    saved = json.loads((tmp_path / "runs" / "exp" / "results.json").read_text())
    as_json = json.loads(result.to_json())
    assert as_json["map"] == saved["map"] and [c["name"] for c in as_json["per_class"]] == list(names)


def test_val_result_as_a_dataframe(tmp_path, fake_pandas):
    from mnv3det.evaluate.score import ClassResult, EvalResult

    nan = float("nan")
    result = EvalResult(map50=0.5, map=0.3, map75=0.2, ap_small=nan, ap_medium=nan, ap_large=nan, ar1=nan, ar10=nan,
                        ar100=nan, precision=0.6, recall=0.4,
                        per_class=[ClassResult("cat", 3, 2, 5, 0.6, 0.4, 0.5, 0.3)], images=2, instances=5,
                        detections=9, speed_ms={}, source="fast", fast_map50=0.5, fast_map=0.3, best_conf=0.2)
    frame = result.to_df()
    assert frame.columns == ["name", "category_id", "images", "instances", "precision", "recall", "ap50", "ap"]
    assert frame.rows == [{"name": "cat", "category_id": 3, "images": 2, "instances": 5, "precision": 0.6,
                           "recall": 0.4, "ap50": 0.5, "ap": 0.3}]
    assert json.loads(result.to_json())["ap_small"] is None  # NaN is null in json


def test_val_scores_a_pt_and_its_default_export_alike(tmp_path):
    pytest.importorskip("onnxruntime")
    from mnv3det.data import load_data
    from mnv3det.deploy.export.pipeline import export_checkpoint
    from mnv3det.models import build_model

    names = load_data(None).names
    torch.manual_seed(0)
    model = build_model("mnv3-small", nc=len(names))
    for module in model.modules():  # as make_checkpoint does: scores that depend on the image
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 64, 64))
    weights = save_checkpoint({"recipe": model.recipe, "nc": model.nc, "names": list(names),
                               "model": model.eval().state_dict(), "epoch": -1, "config": {"imgsz": 64}},
                              tmp_path / "demo.pt")
    onnx = export_checkpoint(weights, runs=1).path  # defaults: dynamic, at the trained size
    options = dict(workers=0, plots=False, device="cpu", project=tmp_path / "runs")
    a, b = mnv3det.val(weights, **options), mnv3det.val(onnx, **options)
    assert a.detections > 0 and abs(a.detections - b.detections) <= 1e-3 * a.detections  # float noise at conf 0.001
    assert b.map == pytest.approx(a.map, abs=1e-4) and b.map50 == pytest.approx(a.map50, abs=1e-4)


def test_detect_defaults_to_the_trained_size_and_says_so(weights, tmp_path, monkeypatch):
    import mnv3det.deploy.runtime.predictor as predictor

    seen = []
    real = predictor.run_batch
    monkeypatch.setattr(predictor, "run_batch", lambda b, batch, *a: seen.append(tuple(batch.shape)) or real(b, batch, *a))
    image = write_image(tmp_path / "a.jpg", 64, 160)
    result = runner.invoke(app, ["detect", str(image), "-w", str(weights), "--project", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"imgsz 96: the size {weights} was trained at" in " ".join(result.output.split())
    assert seen[-1] == (1, 3, 64, 96)  # 160 wide -> 96: 38 x 96, padded to the stride: 64 x 96
    explicit = runner.invoke(app, ["detect", str(image), "-w", str(weights), "--project", str(tmp_path), "--imgsz", "64"])
    assert explicit.exit_code == 0 and "trained at" not in explicit.output
    assert seen[-1] == (1, 3, 32, 64)  # 160 wide -> 64: 26 x 64, padded to 32 x 64


def test_pt_and_its_default_export_give_the_same_boxes_on_a_non_square_image(weights, tmp_path):
    pytest.importorskip("onnxruntime")
    from mnv3det.deploy.export.pipeline import export_checkpoint

    result = export_checkpoint(weights, output=tmp_path / "best.onnx", runs=1)  # every option at its default
    assert result.imgsz == (96, 96) and result.dynamic  # the trained size; any input shape
    assert result.boxes[0] == result.boxes[1] and result.max_box_diff < 1e-2  # export verified the boxes too
    assert result.notes == [f"imgsz 96: the size {weights} was trained at (set --imgsz to change it)"]
    pt, onnx = mnv3det.load(weights, conf=0.32), mnv3det.load(result.path, conf=0.32)
    assert onnx.imgsz == pt.imgsz == ImgSize(96, 96)
    found = 0
    for k, (h, w) in enumerate([(96, 160), (150, 90)]):
        image = cv2.imread(str(write_image(tmp_path / f"{k}.jpg", h, w, seed=k)))
        a, b = pt.predict(image), onnx.predict(image)
        _same_boxes(torch.from_numpy(np.c_[a.boxes, a.scores, a.classes]), torch.from_numpy(np.c_[b.boxes, b.scores, b.classes]))
        found += len(a)
    assert found > 0


def test_a_static_export_says_it_letterboxes_to_a_square(weights, tmp_path):
    pytest.importorskip("onnxruntime")
    from mnv3det.deploy.export.pipeline import export_checkpoint

    path = export_checkpoint(weights, output=tmp_path / "static.onnx", dynamic=False, runs=1).path
    image = write_image(tmp_path / "a.jpg", 96, 160)
    result = runner.invoke(app, ["detect", str(image), "-w", str(path), "--project", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "static export: every image is letterboxed to 96x96" in text and "export without --static" in text


@pytest.mark.parametrize("fmt", ["openvino", "openvino-int8", "ncnn", "onnx-int8"])
def test_the_static_note_of_an_edge_format_says_what_is_true_for_it(fmt):
    from types import SimpleNamespace

    from mnv3det.deploy.runtime.predictor import resolve_imgsz

    backend = SimpleNamespace(fixed_shape=(1, 3, 96, 96), stride=32, imgsz=None, meta={"format": fmt})
    size, note = resolve_imgsz(backend, None, "best_openvino_model")
    assert size == ImgSize(96, 96)
    assert "without --static" not in note  # these formats refuse --dynamic
    assert f"{fmt} exports are always static; the .pt or a dynamic --format onnx export matches it" in note


def test_val_runs_the_prediction_path_of_detect(monkeypatch):
    """evaluate() has no NMS or scale-back of its own: a change to the prediction path reaches val."""
    import mnv3det.deploy.runtime.predictor as predictor
    from mnv3det.data import load_data
    from mnv3det.evaluate.config import EvalConfig
    from mnv3det.evaluate.evaluator import evaluate
    from mnv3det.models import build_model

    calls = []
    real = predictor.nms_per_image
    monkeypatch.setattr(predictor, "nms_per_image", lambda pred, nms, nc=None: calls.append(nms) or real(pred, nms, nc))
    spec = load_data(None)
    torch.manual_seed(0)
    model = build_model("mnv3-small", nc=len(spec.names))
    evaluate(model, spec.records("val")[:8], spec, EvalConfig(imgsz=64, batch=4, coco=False, workers=0),
             progress=False)
    assert len(calls) == 2 and calls[0].conf == EvalConfig().conf and calls[0].iou == EvalConfig().iou


def test_one_colour_per_class_in_val_mosaics_and_detect_images(tmp_path):
    from mnv3det.deploy.runtime.annotate import class_color, draw_detections
    from mnv3det.evaluate.plots import plot_image_mosaic

    rgb = np.full((1, 3, 64, 64), 255, np.uint8)
    plot_image_mosaic(rgb, [np.array([[8.0, 8.0, 56.0, 56.0, 0.9, 2]])], NAMES, tmp_path / "m.png", max_size=64)
    mosaic = cv2.imread(str(tmp_path / "m.png"))  # lossless, BGR again
    drawn = draw_detections(np.full((64, 64, 3), 255, np.uint8), np.array([[8, 8, 56, 56, 0.9, 2]]), NAMES)
    bgr = np.array(class_color(2))
    assert np.abs(drawn[32, 8].astype(int) - bgr).max() <= 1
    assert np.abs(mosaic[32, 8].astype(int) - bgr).max() <= 1
    assert class_color(2, "rgb") == class_color(2)[::-1]


@pytest.mark.parametrize(
    ("command", "module", "config"),
    [("val", "mnv3det.api", "ValConfig"), ("detect", "mnv3det.deploy.detect_runner", "DetectConfig"),
     ("export", "mnv3det.deploy.export.pipeline", "ExportConfig")],
)
def test_cli_options_left_out_keep_the_config_defaults(command, module, config, weights, tmp_path, monkeypatch):
    import dataclasses
    import importlib

    captured = []
    target = {"val": "run_val", "detect": "run_detect", "export": "export_checkpoint"}[command]
    mod = importlib.import_module("mnv3det.evaluate.runner" if command == "val" else module)

    def fake(*args, **kwargs):
        captured.append(next(a for a in args if dataclasses.is_dataclass(a)))
        raise UserError("stop here")

    monkeypatch.setattr(mod, target, fake)
    args = {"val": ["val", "-w", str(weights)], "detect": ["detect", str(tmp_path), "-w", str(weights)],
            "export": ["export", "-w", str(weights)]}[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "stop here" in result.output
    (cfg,) = captured
    defaults = type(cfg)(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING})
    assert cfg == defaults
