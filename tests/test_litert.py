"""LiteRT (.tflite) on a tiny model at 64 px: float export checked against PyTorch, then run by detect, val, the
Python API and the timing worker; INT8 with the Detect decode in float and its mAP in the metadata; a converter
failure and a missing extra are one line each. Conversions take a while (torch.export + MLIR): two in this file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.deploy.export.pipeline import export_checkpoint
from mnv3det.deploy.formats import FORMATS, find_format
from mnv3det.deploy.runtime.backends import load_backend
from mnv3det.errors import UserError
# The tiny checkpoint and data set, module fixtures shared with the other edge formats' tests.
from test_edge_formats import NAMES, data, scene, weights  # noqa: F401 (data, weights: fixtures)

SIZE = 64
HAS_LITERT = all(importlib.util.find_spec(p) is not None for p, _ in FORMATS["litert-int8"].packages)
needs_litert = pytest.mark.skipif(not HAS_LITERT, reason="LiteRT needs pip install 'mnv3det[litert]'")
runner = CliRunner()

# What litert-torch 0.10 raised for Detect's old `(x * 2) ** 2` (issue 23), shortened.
POW_FAILURE = (
    "Failed to run converter passes: /work/mnv3det/models/detect.py:99:0: error: failed to legalize operation "
    "'tfl.pow' that was explicitly marked illegal: %595 = \"tfl.pow\"(%594, %118) : (tensor<1x3x2x20x20xf32>, "
    "tensor<f32>) -> tensor<1x3x2x20x20xf32>\nTraceback (most recent call last):\n  File \"converter.py\", line 1"
)


@pytest.fixture(scope="module")
def tflite(weights) -> Path:
    """`mnv3det export --format tflite` (the alias): the float file, verified by the export itself."""
    result = runner.invoke(app, ["export", "-w", str(weights), "--format", "tflite", "--imgsz", str(SIZE), "--json",
                                 "--runs", "1"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["format"] == "litert" and payload["passed"] and payload["max_excess"] <= 0
    assert payload["agreement"]["unmatched"] == 0 and payload["runtime"] == "LiteRT"
    return Path(payload["path"])


def test_tflite_is_an_alias_and_the_files_are_named_like_the_others():
    assert find_format("tflite") is FORMATS["litert"] and find_format("TFLite-INT8") is FORMATS["litert-int8"]
    assert FORMATS["litert"].output_for(Path("w/best.pt")) == Path("w/best.tflite")
    assert FORMATS["litert-int8"].output_for(Path("w/best.pt")) == Path("w/best_int8.tflite")


def test_a_missing_extra_is_one_line_naming_it(weights, monkeypatch):
    real = importlib.util.find_spec
    present = {"ai_edge_litert"}  # only the converter is missing, whether or not the extra is installed here
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "litert_torch" else object() if name in present else real(name, *a))
    with pytest.raises(UserError) as err:
        export_checkpoint(weights, format="litert", imgsz=SIZE)
    assert str(err.value) == "--format litert needs litert_torch, which is not installed: pip install 'mnv3det[litert]'"


@needs_litert
def test_a_converter_failure_names_the_op_the_line_and_the_format(weights, monkeypatch, tmp_path):
    import litert_torch

    def fail(*args, **kwargs):
        raise ValueError(POW_FAILURE)

    monkeypatch.setattr(litert_torch, "convert", fail)
    result = runner.invoke(app, ["export", "-w", str(weights), "--format", "litert", "--imgsz", str(SIZE),
                                 "-o", str(tmp_path / "m.tflite")])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    error = " ".join(lines[-3:])  # the error line, wrapped by the terminal width at most
    assert "--format litert" in error and "op tfl.pow at /work/mnv3det/models/detect.py:99" in error
    assert "Traceback" not in result.output and "%595" not in result.output
    assert not (tmp_path / "m.tflite").exists()


@needs_litert
def test_float_tflite_matches_pytorch_and_carries_its_metadata(tflite, weights):
    backend = load_backend(tflite, "cpu")
    assert backend.names == NAMES and backend.fixed_shape == (1, 3, SIZE, SIZE) and backend.meta["format"] == "litert"
    reference = load_backend(weights, "cpu")
    x = torch.rand(1, 3, SIZE, SIZE)
    torch.testing.assert_close(backend(x), reference(x), atol=1e-3, rtol=1e-3)
    # a batch of 3 is run image by image through the batch-1 file
    assert backend(torch.rand(3, 3, SIZE, SIZE)).shape == (3, reference(x).shape[1], 5 + len(NAMES))


@needs_litert
def test_detect_val_the_api_and_the_timing_worker_run_the_tflite_file(tflite, data, tmp_path):
    import cv2

    import mnv3det
    from mnv3det.deploy.runtime.timing import time_in_subprocess

    cv2.imwrite(str(tmp_path / "a.jpg"), scene(3))
    result = runner.invoke(app, ["detect", str(tmp_path / "a.jpg"), "-w", str(tflite), "--project", str(tmp_path),
                                 "--conf", "0.01", "--save-txt"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exp" / "labels" / "a.txt").read_text().strip()
    metrics = mnv3det.val(tflite, data, project=tmp_path / "val")
    assert 0.0 <= metrics.map <= 1.0 and metrics.images == 6
    detections = mnv3det.load(tflite).predict(scene(4), conf=0.01)
    assert len(detections.boxes) > 0 and set(detections.labels) <= set(NAMES)
    timed = time_in_subprocess("litert", tflite, (SIZE, SIZE), threads=1, runs=2, warmup=1)
    assert timed.get("median_ms", 0) > 0, timed


@needs_litert
def test_int8_keeps_the_decode_float_and_stores_the_map_before_and_after(weights, data):
    from ai_edge_litert import schema_py_generated as schema

    result = export_checkpoint(weights, format="litert-int8", imgsz=SIZE, data=data,
                                    calib_images=4, runs=1)
    q = result.quantization
    assert result.path.name == "best_int8.tflite" and q["calibration_images"] == 4 and q["decode"] == "float"
    assert q["map50_95_drop"] == pytest.approx(q["map50_95_float"] - q["map50_95_int8"], abs=1e-3)
    backend = load_backend(result.path, "cpu")
    assert backend.meta["quantization"]["map50_95_int8"] == q["map50_95_int8"]
    out = backend(torch.rand(1, 3, SIZE, SIZE))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out[..., 4:].min() >= 0 and out[..., 4:].max() <= 1 and out[..., 2:4].max() > 1  # pixels and probs
    # The body is int8, every tensor Detect makes is float: the decode never went through one int8 scale.
    model = schema.Model.GetRootAs(result.path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
    int8 = [t.Name().decode() for t in tensors if t.Type() == schema.TensorType.INT8]
    detect = [t for t in tensors if "detect.Detect" in t.Name().decode()]
    assert len(int8) > 20 and detect
    assert all(t.Type() == schema.TensorType.FLOAT32 for t in detect if t.ShapeLength() >= 3)
    assert graph.Tensors(graph.Outputs(0)).Type() == schema.TensorType.FLOAT32


def test_benchmark_takes_the_alias():
    from mnv3det.deploy.benchmark import timed_formats, choose_formats

    assert {"litert", "litert-int8"} <= set(timed_formats())
    if HAS_LITERT:
        assert choose_formats(["tflite", "onnx"]) == ["onnx", "litert"]
    else:
        with pytest.raises(UserError, match=r"pip install 'mnv3det\[litert\]'"):
            choose_formats(["tflite"])


def test_a_tflite_file_without_mnv3det_metadata_is_refused(tmp_path):
    pytest.importorskip("ai_edge_litert")
    path = tmp_path / "foreign.tflite"
    path.write_bytes(np.zeros(64, np.uint8).tobytes())
    with pytest.raises(UserError, match="has no mnv3det export metadata"):
        load_backend(path)
