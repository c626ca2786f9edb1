"""Export: every recipe to ONNX at a small size, outputs equal to PyTorch; TorchScript; dynamic shapes; clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.deploy.runtime.backends import load_backend
from mnv3det.core.checkpoint import save_checkpoint
from mnv3det.deploy.runtime.predictor import letterbox_images
from mnv3det.errors import UserError
from mnv3det.deploy.export.pipeline import export_model, synthetic_image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

RECIPES = ["mnv3-small", "mnv3-small-min", "mnv3-small-dsh", "mnv3-large", "mnv3-large-min", "mnv2", "yolov5n",
           "yolov5s"]
NAMES = ["cell", "dot", "ring"]


def make_model(recipe: str = "mnv3-small"):
    from mnv3det.models import build_model

    torch.manual_seed(0)
    model = build_model(recipe, nc=len(NAMES))
    model.names = list(NAMES)
    return model.eval()


def make_checkpoint(path, recipe: str = "mnv3-small"):
    model = make_model(recipe)
    ckpt = {"recipe": model.recipe, "nc": model.nc, "names": list(NAMES), "model": model.state_dict(), "epoch": -1}
    return save_checkpoint(ckpt, path), model


def reference_and_exported(model, path, shape, image):
    """PyTorch (fused, eval) and exported-file outputs for `image` letterboxed to `shape`."""
    b, _, h, w = shape
    batch, _ = letterbox_images([image] * b, (h, w), int(max(model.stride)), auto=False)
    x = batch.float() / 255
    with torch.no_grad():
        reference = model.fuse()(x)
    return reference, load_backend(path, "cpu")(x)


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_exports_to_onnx_and_matches_torch(recipe, tmp_path):
    model = make_model(recipe)
    result = export_model(model, tmp_path / f"{recipe}.onnx", imgsz=128, dynamic=False, runs=1)
    assert result.checker == "passed"
    assert result.passed, f"max |diff| {result.max_abs_diff}"
    assert result.size_mb > 0 and result.latency_ms > 0

    # Checked again here, independently of export_model's own verification, on a different image.
    image = synthetic_image(96, 160, seed=1)
    reference, exported = reference_and_exported(model, result.path, (1, 3, 128, 128), image)
    assert exported.shape == reference.shape == (1, 3 * (16 * 16 + 8 * 8 + 4 * 4), 5 + len(NAMES))
    assert torch.allclose(exported, reference, atol=1e-4, rtol=1e-4), (exported - reference).abs().max()

    backend = load_backend(result.path)
    assert backend.names == NAMES and backend.stride == 32 and backend.fixed_shape == (1, 3, 128, 128)


def test_dynamic_onnx_runs_at_other_sizes_and_batches(tmp_path):
    model = make_model()
    result = export_model(model, tmp_path / "dyn.onnx", imgsz=128, dynamic=True, runs=1)
    assert result.passed and len(result.checked_shapes) == 2
    assert load_backend(result.path).fixed_shape is None
    reference, exported = reference_and_exported(model, result.path, (3, 3, 96, 192), synthetic_image(seed=2))
    assert exported.shape == reference.shape
    assert torch.allclose(exported, reference, atol=1e-4, rtol=1e-4)


def test_torchscript_export_matches_torch_and_carries_metadata(tmp_path):
    model = make_model()
    result = export_model(model, tmp_path / "m.torchscript", format="torchscript", imgsz=(96, 128), dynamic=False, runs=1)
    assert result.passed and result.path.suffix == ".torchscript"
    backend = load_backend(result.path)
    assert backend.names == NAMES and backend.fixed_shape == (1, 3, 96, 128)
    reference, exported = reference_and_exported(model, result.path, (1, 3, 96, 128), synthetic_image(seed=3))
    assert torch.allclose(exported, reference, atol=1e-4, rtol=1e-4)


def test_export_does_not_change_the_model(tmp_path):
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_model(model, tmp_path / "m.onnx", imgsz=64, runs=1)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"half": True}, "--half needs a CUDA device"),
        ({"opset": 12}, "--opset 12 is too old"),
        ({"format": "paddle"}, "--format 'paddle' is not supported; use one of torchscript, onnx, onnx-int8, "
                               "openvino, openvino-int8, ncnn, litert, litert-int8, coreml, coreml-int8"),
        ({"imgsz": 100}, "not a multiple of 32, the model's stride; nearest valid: 96 or 128"),
        ({"batch": 0}, "--batch 0"),
    ],
)
def test_bad_export_options_are_clear_errors(kwargs, message, tmp_path):
    with pytest.raises(UserError, match=message):
        export_model(make_model(), tmp_path / "m.onnx", **kwargs)


def test_simplify_without_a_simplifier_says_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(  # as if neither simplifier were installed
        importlib.util, "find_spec", lambda name, *a: None if name in ("onnxslim", "onnxsim") else real_find_spec(name, *a)
    )
    with pytest.raises(UserError, match="pip install onnxslim"):
        export_model(make_model(), tmp_path / "m.onnx", imgsz=64, simplify=True)


def test_simplified_export_still_matches_torch(tmp_path):
    pytest.importorskip("onnxslim", reason="onnxslim is in the dev extra; install it to test --simplify")
    model = make_model()
    path = tmp_path / "m.onnx"
    export_model(model, path, imgsz=64, simplify=True)  # verifies against PyTorch itself; check again here
    backend = load_backend(path, "cpu")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model.eval().fuse()(x)
    torch.testing.assert_close(backend(x), expected, atol=1e-4, rtol=1e-4)


def test_export_cli_writes_the_file_and_reports_json(tmp_path):
    weights, _ = make_checkpoint(tmp_path / "best.pt")
    result = CliRunner().invoke(app, ["export", "--weights", str(weights), "--imgsz", "64,96", "--runs", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["checker"] == "passed"
    assert report["path"] == str(tmp_path / "best.onnx") and (tmp_path / "best.onnx").is_file()
    assert report["imgsz"] == [64, 96]


def test_export_cli_rich_table_and_verification_on_a_real_image(tmp_path, coco128_dir):
    weights, _ = make_checkpoint(tmp_path / "best.pt")
    image = next(iter(sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))))
    out = tmp_path / "out" / "model.onnx"
    result = CliRunner().invoke(
        app, ["export", "-w", str(weights), "--imgsz", "128", "--image", str(image), "-o", str(out), "--runs", "1"]
    )
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "onnx.checker" in result.output and "passed" in result.output and "ok" in result.output


def test_export_cli_bad_weights_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["export", "--weights", str(tmp_path / "missing.pt")])
    assert result.exit_code == 2
    assert "missing.pt does not exist" in result.output
