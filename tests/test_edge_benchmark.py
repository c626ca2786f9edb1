"""`mnv3det benchmark` on the demo set with two formats; the timing worker; format selection errors."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.deploy.benchmark import choose_formats
from mnv3det.deploy.runtime.timing import time_in_subprocess
from mnv3det.errors import UserError

sys.path.insert(0, str(Path(__file__).parent))
from test_edge_formats import make_checkpoint, needs  # noqa: E402

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("bench") / "best.pt", ["circle", "square", "triangle", "cross"])


@needs("openvino")
def test_benchmark_two_formats_on_the_demo_set(weights, tmp_path):
    result = CliRunner().invoke(app, [
        "benchmark", "--weights", str(weights), "--formats", "onnx,openvino", "--imgsz", "64", "--runs", "2",
        "--rounds", "2", "--project", str(tmp_path), "--json",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    rows = {(r["model"], r["format"]): r for r in report["rows"]}
    # the user's model by its file name, beside the reference
    assert set(rows) == {("best.pt", "onnx"), ("best.pt", "openvino"), ("yolov5n", "onnx"), ("yolov5n", "openvino")}
    for (model, _), row in rows.items():
        assert row["note"] == "" and row["size_mb"] > 0 and len(row["rounds_ms"]) == 2 and row["latency_ms"] > 0
        assert (row["map50_95"] is None) == (model == "yolov5n")
    best = rows[("yolov5n", report["reference_best"])]
    assert best["ratio"] == 1.0 and all(r["ratio"] == pytest.approx(r["latency_ms"] / best["latency_ms"], rel=1e-2)
                                        for r in rows.values())
    # The same figures in the run folder's CSV; every format scored the same square input alike (float formats).
    with (tmp_path / "exp" / "benchmark.csv").open() as f:
        lines = list(csv.DictReader(f))
    assert [(r["model"], r["format"]) for r in lines] == [(r["model"], r["format"]) for r in report["rows"]]
    assert rows[("best.pt", "onnx")]["map50_95"] == pytest.approx(rows[("best.pt", "openvino")]["map50_95"], abs=5e-3)
    assert (tmp_path / "exp" / "weights" / "best.onnx").is_file()  # exports keep the file's stem


def test_a_model_named_like_the_reference_keeps_its_files_apart():
    from mnv3det.deploy.benchmark import model_label

    assert model_label(Path("runs/exp/weights/best.pt")) == ("best.pt", "best")
    assert model_label(Path("yolov5n.pt")) == ("yolov5n.pt", "yolov5n_yours")


def test_timing_worker_runs_in_its_own_process(weights, tmp_path):
    from mnv3det.models.checkpoint import load_model
    from mnv3det.deploy.config import ExportConfig
    from mnv3det.deploy.export.pipeline import export_model

    model, _ = load_model(weights)
    path = export_model(model, tmp_path / "m.onnx", ExportConfig(imgsz=64, dynamic=False, runs=1)).path
    out = time_in_subprocess("onnx", path, (64, 64), threads=1, runs=3, warmup=1)
    assert out["format"] == "onnx" and out["runs"] == 3 and 0 < out["min_ms"] <= out["median_ms"]
    assert "error" in time_in_subprocess("onnx", tmp_path / "missing.onnx", (64, 64), threads=1, runs=1)


def test_a_model_for_other_classes_is_refused_before_any_export(tmp_path):
    three = make_checkpoint(tmp_path / "three.pt")  # the demo set has 4 classes
    result = CliRunner().invoke(app, ["benchmark", "--weights", str(three), "--formats", "onnx", "--imgsz", "64",
                                      "--project", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "3 classes" in result.output and not (tmp_path / "runs").exists()


def test_format_selection_errors():
    with pytest.raises(UserError, match="'paddle' is not a format"):
        choose_formats(["paddle"])
    assert choose_formats(None)[:3] == ["pytorch", "torchscript", "onnx"]


def test_benchmark_from_python_takes_the_cli_option_names(weights, tmp_path, monkeypatch):
    import types

    import mnv3det

    report = mnv3det.benchmark(weights, formats="onnx", imgsz=64, runs=1, rounds=1, reference=False,
                               project=tmp_path / "runs")
    assert [(r.model, r.format) for r in report.rows] == [("best.pt", "onnx")]
    assert report.save_dir == str(tmp_path / "runs" / "exp") and (tmp_path / "runs" / "exp" / "benchmark.json").is_file()
    payload = json.loads(report.to_json())
    assert payload["rows"][0]["latency_ms"] > 0 and payload["save_dir"] == report.save_dir
    pandas = types.ModuleType("pandas")
    pandas.DataFrame = lambda rows, columns: (rows, columns)
    monkeypatch.setitem(sys.modules, "pandas", pandas)
    rows, columns = report.to_df()
    assert columns[:2] == ["model", "format"] and rows[0]["format"] == "onnx"
    with pytest.raises(UserError, match="'paddle' is not a format"):
        mnv3det.benchmark(weights, formats=["paddle"])
