"""The format records (deploy/formats.py) and end-to-end exports (`export --nms`, deploy/export/end_to_end.py).

Every record is complete (writer and runtime modules exist with their interface, every capability stated); the
README's per-format table is the one the records render; an --nms file's detections are `predict`'s, in ONNX and
OpenVINO, and `detect`, `val` and `mnv3det.load` run it through the one prediction path.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.deploy.config import ExportConfig
from mnv3det.deploy.formats import COMMON_OPTIONS, FORMATS, export_formats, find_format, io_table
from mnv3det.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"dynamic", "half", "device", "opset", "simplify", "calib_images", "int8_max_drop"}


def _functions(module_file: Path) -> set[str]:
    """Top-level names a module defines (functions, classes, assignments), read with ast: no optional import."""
    tree = ast.parse(module_file.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):  # `from ...backends import onnx_runner as runner`
            names.update(a.asname or a.name for a in node.names)
    return names


@pytest.mark.parametrize("fmt", list(FORMATS.values()), ids=list(FORMATS))
def test_every_format_record_is_complete(fmt):
    runtime = ROOT / "mnv3det" / "deploy" / "runtime" / f"{fmt.runtime}.py"
    assert runtime.is_file() and {"Backend", "runner", "runs_here"} <= _functions(runtime)
    if fmt.writer is not None:
        writer = ROOT / "mnv3det" / "deploy" / "export" / f"{fmt.writer}.py"
        assert writer.is_file() and "write" in _functions(writer)
        if fmt.int8:  # the mAP report goes into the file's metadata after the check
            assert "update_metadata" in _functions(writer)
        assert fmt.packages or fmt.name == "torchscript"
    assert fmt.title and fmt.suffix and fmt.opens and fmt.input
    assert fmt.folder == (fmt.folder_glob is not None or fmt.suffix.endswith(".mlpackage"))
    assert not fmt.calibration or fmt.int8  # calibrated formats are judged by mAP
    assert set(fmt.options) <= FIELDS | {"calib_images"} and set(fmt.options).isdisjoint(COMMON_OPTIONS)
    assert fmt.end_to_end or len(fmt.nms_refusal.splitlines()) == 1  # the refusal is one line
    assert find_format(fmt.name) is fmt and all(find_format(a) is fmt for a in fmt.aliases)


def test_every_config_option_a_format_may_refuse_is_an_export_config_field():
    from dataclasses import fields

    from mnv3det.deploy.config import FORMAT_OPTIONS

    names = {f.name for f in fields(ExportConfig)}
    assert set(FORMAT_OPTIONS) == FIELDS and FIELDS | set(COMMON_OPTIONS) <= names


def test_the_readme_table_is_the_one_the_records_render():
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- formats:start -->\n", "\n<!-- formats:end -->"
    assert start in readme and end in readme, "README.md lacks the generated formats table"
    assert readme.split(start)[1].split(end)[0] == io_table(), "run: python -m mnv3det.deploy.formats > table"
    assert all(f"`{f.name}`" in io_table() for f in export_formats())


@pytest.mark.parametrize("fmt", ["ncnn", "litert", "coreml"])
def test_nms_where_a_format_cannot_hold_it_is_a_one_line_refusal_saying_why(fmt):
    with pytest.raises(UserError, match=rf"--nms: --format {fmt} cannot hold NMS: ") as err:
        ExportConfig(format=fmt, nms=True).check()
    assert len(str(err.value).splitlines()) == 1


def test_nms_thresholds_without_nms_are_refused_and_checked_with_it():
    with pytest.raises(UserError, match="--conf, --max-det set"):
        ExportConfig(conf=0.5, max_det=10).check()
    with pytest.raises(UserError, match=r"iou[= ]1\.5: must be"):
        ExportConfig(nms=True, iou=1.5).check()
    assert ExportConfig(nms=True, conf=0.4, max_det=20).nms_settings() == {"conf": 0.4, "iou": 0.45, "max_det": 20}


# --- end-to-end files on a tiny trained-like model (test_edge_formats' checkpoint and scenes) ---
pytest.importorskip("onnxruntime")
from test_edge_formats import SIZE, data, scene, weights  # noqa: E402,F401 (data, weights: fixtures)


def _predict(backend, images, **nms):
    from mnv3det.deploy.runtime.predictor import predict

    return [predict(backend, [im], **nms).detections[0] for im in images]


def test_end_to_end_module_gives_what_predicts_nms_gives_for_both_layouts():
    from mnv3det.core.postprocess import non_max_suppression
    from mnv3det.deploy.export.end_to_end import EndToEnd

    class Head(torch.nn.Module):  # decoded rows of either layout, fixed: cx, cy, w, h, [obj,] scores
        def __init__(self, rows):
            super().__init__()
            self.rows, self.nc, self.stride = rows, 2, torch.tensor([8.0])

        def forward(self, x):
            return self.rows.expand(x.shape[0], -1, -1)

    boxes = torch.tensor([[20, 20, 10, 10], [21, 20, 10, 10], [60, 60, 8, 8], [20, 20, 10, 10]], dtype=torch.float)
    for extra in ([[0.9, 0.9, 0.1], [0.8, 0.9, 0.2], [0.5, 0.1, 0.9], [0.9, 0.2, 0.7]],  # obj + 2 classes
                  [[0.9, 0.1], [0.8, 0.2], [0.1, 0.6], [0.2, 0.7]]):  # anchor-free: 2 class scores
        rows = torch.cat((boxes, torch.tensor(extra)), 1)[None]
        dets, count = EndToEnd(Head(rows), conf=0.25, iou=0.45, max_det=5)(torch.zeros(2, 3, 8, 8))
        expected = non_max_suppression(rows, 0.25, 0.45, 5, nc=2)[0]
        assert dets.shape == (2, 5, 6) and count.tolist() == [len(expected)] * 2
        torch.testing.assert_close(dets[1, : len(expected)], expected)
        assert (dets[:, len(expected):] == 0).all()  # padding rows are zeros


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("openvino", marks=pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino needs pip install 'mnv3det[edge]'"))])
def test_nms_export_agrees_with_predict_and_runs_in_detect_val_and_load(fmt, weights, data, tmp_path):
    import mnv3det
    from mnv3det.deploy.export.pipeline import export_checkpoint
    from mnv3det.deploy.runtime.backends import load_backend

    out = tmp_path / f"e2e{FORMATS[fmt].suffix}"
    result = export_checkpoint(weights, format=fmt, imgsz=SIZE, output=out, nms=True, conf=0.3, max_det=50,
                               data=data, runs=1)
    assert result.passed and result.agreement.reference > 0 and result.agreement.unmatched == 0, result.as_dict()
    assert result.nms == {"conf": 0.3, "iou": 0.45, "max_det": 50} and result.max_abs_diff is None

    backend = load_backend(out, "cpu")
    assert backend.nms == result.nms
    raw = backend(torch.zeros(1, 3, SIZE, SIZE))
    assert raw.shape == (1, 50, 6)
    reference = load_backend(weights, "cpu")
    reference.fixed_shape, reference.imgsz = backend.fixed_shape, backend.imgsz
    images = [scene(20), scene(21, 60, 140)]
    for got, want in zip(_predict(backend, images, conf=0.3), _predict(reference, images, conf=0.3, max_det=50)):
        assert got.shape == want.shape  # boxes scaled back to the original image by the same path
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)

    detector = mnv3det.load(out)  # the API
    assert len(detector.predict(images[0], conf=0.3)) == len(_predict(reference, images[:1], conf=0.3, max_det=50)[0])
    run = CliRunner().invoke(app, ["val", "--weights", str(out), "--data", str(data), "--project", str(tmp_path)])
    assert run.exit_code == 0 and "ends in NMS (conf 0.3" in " ".join(run.output.split()), run.output
    run = CliRunner().invoke(app, ["detect", str(data.parent / "images"), "--weights", str(out), "--conf", "0.3",
                                   "--project", str(tmp_path), "--nosave"])
    assert run.exit_code == 0, run.output


def test_int8_nms_export_keeps_the_map_report(weights, data, tmp_path):
    from mnv3det.deploy.export.pipeline import export_checkpoint

    result = export_checkpoint(weights, format="onnx-int8", imgsz=SIZE, output=tmp_path / "q.onnx", nms=True,
                               data=data, calib_images=4, runs=0)
    q = result.quantization
    assert q["val_images"] == 6 and "map50_95_int8" in q and result.nms is not None
    meta = json.loads(__import__("onnx").load(str(result.path)).metadata_props[0].value)
    assert meta["quantization"]["map50_95_int8"] == q["map50_95_int8"] and meta["nms"] == result.nms


def test_nms_metadata_that_does_not_match_the_outputs_is_one_line(weights, tmp_path):
    import onnx

    from mnv3det.deploy.export.pipeline import export_checkpoint
    from mnv3det.deploy.runtime.backends import load_backend

    path = export_checkpoint(weights, format="onnx", imgsz=SIZE, output=tmp_path / "m.onnx", runs=0).path
    proto = onnx.load(str(path))
    meta = json.loads(proto.metadata_props[0].value)
    proto.metadata_props[0].value = json.dumps({**meta, "nms": {"conf": 0.25, "iou": 0.45, "max_det": 300}})
    onnx.save(proto, str(path))
    with pytest.raises(UserError, match=r"ends in NMS \(max_det 300\) but its output has shape") as err:
        load_backend(path, "cpu")
    assert len(str(err.value).splitlines()) == 1


def test_timing_opens_an_end_to_end_file_like_any_other(weights, tmp_path):
    from mnv3det.deploy.export.pipeline import export_checkpoint
    from mnv3det.deploy.runtime.timing import runner_for

    path = export_checkpoint(weights, format="onnx", imgsz=SIZE, output=tmp_path / "m.onnx", nms=True, runs=0).path
    run, x = runner_for("onnx+nms", path, 1, (SIZE, SIZE))
    detections, count = run(x)
    assert detections.shape == (1, 300, 6) and count.shape == (1,)
    assert np.all(detections[0, int(count[0]):] == 0)


def test_benchmark_nms_rows_follow_the_formats_that_hold_nms():
    from mnv3det.deploy.benchmark import reference_formats, timed_formats, with_nms_rows

    assert with_nms_rows(["pytorch", "onnx", "ncnn", "openvino"]) == ["pytorch", "onnx", "onnx+nms", "ncnn",
                                                                      "openvino", "openvino+nms"]
    assert timed_formats()[:3] == ["pytorch", "torchscript", "onnx"] and "coreml" not in timed_formats()
    assert set(reference_formats()) <= set(timed_formats()) and "pytorch" not in reference_formats()


def test_torchscript_nms_file_agrees_and_takes_any_batch(weights, tmp_path):
    from mnv3det.deploy.export.pipeline import export_checkpoint
    from mnv3det.deploy.runtime.backends import load_backend

    result = export_checkpoint(weights, format="torchscript", imgsz=SIZE, output=tmp_path / "m.torchscript",
                               nms=True, max_det=40, runs=0)
    assert result.passed and result.agreement.reference > 0 and result.dynamic, result.as_dict()
    backend = load_backend(result.path, "cpu")
    one, two = backend(torch.rand(1, 3, SIZE, SIZE)), backend(torch.rand(3, 3, SIZE + 32, SIZE))
    assert one.shape == (1, 40, 6) and two.shape == (3, 40, 6)
