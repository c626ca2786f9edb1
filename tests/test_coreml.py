"""Core ML on a tiny model at 64 px: the export checks what it can off macOS (ops, shapes, spec round trip) and says
its numbers are unverified; metadata for an app; weight-only int8; running it off macOS is one clear line."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.deploy.formats import FORMATS
from mnv3det.deploy.runtime.backends import load_backend
from mnv3det.errors import UserError
from test_edge_formats import NAMES, make_checkpoint

SIZE = 64
needs_coreml = pytest.mark.skipif(importlib.util.find_spec("coremltools") is None,
                                  reason="Core ML needs pip install 'mnv3det[coreml]'")
runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("coreml") / "best.pt")


def test_files_are_named_like_the_other_formats():
    assert FORMATS["coreml"].output_for(Path("w/best.pt")) == Path("w/best.mlpackage")
    assert FORMATS["coreml-int8"].output_for(Path("w/best.pt")) == Path("w/best_int8.mlpackage")


def test_a_missing_extra_is_one_line_naming_it(weights, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "coremltools" else real(name, *a))
    result = runner.invoke(app, ["export", "-w", str(weights), "--format", "coreml", "--imgsz", str(SIZE)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "--format coreml needs coremltools, which is not installed: pip install 'mnv3det[coreml]'" in result.output


@needs_coreml
@pytest.mark.skipif(sys.platform == "darwin", reason="off macOS only: there Core ML runs and the export is verified")
def test_coreml_export_checks_what_it_can_and_says_the_numbers_are_unverified(weights):
    from mnv3det.deploy.runtime.coreml import load_spec_model

    result = runner.invoke(app, ["export", "-w", str(weights), "--format", "coreml", "--imgsz", str(SIZE)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "all native" in text and f"images RGB {SIZE}x{SIZE} (scale 1/255) -> output float32 1x" in text
    assert "reads back identical" in text and "unverified: not run: Core ML predicts on macOS/iOS only" in text
    path = weights.parent / "best.mlpackage"
    meta = load_spec_model(path).user_defined_metadata
    assert json.loads(meta["names"]) == NAMES and json.loads(meta["strides"]) == [8, 16, 32]
    assert json.loads(meta["mnv3det"])["format"] == "coreml"
    spec = load_spec_model(path).get_spec()
    assert spec.description.input[0].type.imageType.width == SIZE  # Vision can feed it a camera frame
    with pytest.raises(UserError, match="is a Core ML model: it runs on macOS and iOS only"):
        load_backend(path, "cpu")


@needs_coreml
@pytest.mark.skipif(sys.platform == "darwin", reason="off macOS only")
def test_coreml_int8_stores_int8_weights(weights, tmp_path):
    from mnv3det.deploy.export.coreml import _program_ops
    from mnv3det.deploy.runtime.coreml import load_spec_model

    result = runner.invoke(app, ["export", "-w", str(weights), "--format", "coreml-int8", "--imgsz", str(SIZE),
                                 "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["unverified"] and payload["path"].endswith("best_int8.mlpackage") and "ops" in payload["checks"]
    ops = _program_ops(load_spec_model(Path(payload["path"])).get_spec())
    assert any(op.startswith("constexpr_") for op in ops)  # weights decompressed from int8 at load
