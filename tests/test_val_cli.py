"""`mnv3det val` end to end on the demo set, with a random-weight checkpoint (and its static ONNX export).

Random weights find nothing, so these tests check the structure of the output and that every metric
is a number in [0, 1]; a test with a trained checkpoint checks the numbers themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.data import load_data

runner = CliRunner()
METRICS = ("map50", "map", "map75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100", "precision", "recall")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from mnv3det.core.checkpoint import save_checkpoint
    from mnv3det.models import build_model

    names = load_data(None).names
    torch.manual_seed(0)
    model = build_model("mnv3-small", nc=len(names))
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    save_checkpoint(
        {"recipe": model.recipe, "nc": len(names), "names": list(names), "model": model.state_dict(), "epoch": -1,
         "best_fitness": None, "optimizer": None, "scaler": None, "ema_updates": 0, "rng": None, "config": {},
         "data": {}},
        path,
    )
    return path


def check_run_folder(run: Path, n_images: int) -> dict:
    results = json.loads((run / "results.json").read_text())
    assert results["images"] == n_images and results["source"] == "pycocotools"
    for key in METRICS:  # undefined size-split numbers (no large boxes in the split) are null
        assert (results[key] is None and key.startswith("ap_")) or 0.0 <= results[key] <= 1.0, key
    assert {c["name"] for c in results["per_class"]} == set(load_data(None).names)
    assert set(results["speed_ms"]) == {"preprocess", "inference", "nms"}
    assert "mAP50-95" in (run / "summary.txt").read_text()
    return results


def test_val_end_to_end_on_demo_set(checkpoint: Path, tmp_path: Path):
    args = ["val", "--weights", str(checkpoint), "--imgsz", "128", "--batch", "16", "--workers", "0",
            "--project", str(tmp_path), "--device", "cpu"]
    result = runner.invoke(app, [*args, "--save-json"])
    assert result.exit_code == 0, result.output
    assert "COCO metrics" in result.output and "Results saved to" in result.output
    run = tmp_path / "exp"
    results = check_run_folder(run, n_images=len(load_data(None).records("val")))
    predictions = json.loads((run / "predictions.json").read_text())
    assert len(predictions) == results["detections"] > 0
    assert set(predictions[0]) == {"image_id", "category_id", "bbox", "score"}
    for name in ("PR_curve.png", "F1_curve.png", "confusion_matrix.png", "val_batch0_labels.jpg", "val_batch0_pred.jpg"):
        assert (run / name).is_file(), name

    again = runner.invoke(app, [*args, "--no-plots"])  # second run: exp2, no plots, no json
    assert again.exit_code == 0, again.output
    assert (tmp_path / "exp2" / "results.json").is_file()
    assert not (tmp_path / "exp2" / "PR_curve.png").exists() and not (tmp_path / "exp2" / "predictions.json").exists()


def test_val_defaults_to_the_training_image_size(checkpoint: Path, tmp_path: Path):
    from mnv3det.core.checkpoint import load_checkpoint, save_checkpoint

    trained_at_96 = tmp_path / "trained96.pt"
    ckpt = load_checkpoint(checkpoint)
    save_checkpoint({**ckpt.to_dict(), "config": {"imgsz": 96}}, trained_at_96)
    args = ["val", "--weights", str(trained_at_96), "--batch", "16", "--workers", "0", "--no-plots",
            "--project", str(tmp_path), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "imgsz 96: the size" in result.output
    assert json.loads((tmp_path / "exp" / "results.json").read_text())["imgsz"] == 96
    explicit = runner.invoke(app, [*args, "--imgsz", "64"])  # --imgsz still wins
    assert explicit.exit_code == 0, explicit.output
    assert json.loads((tmp_path / "exp2" / "results.json").read_text())["imgsz"] == 64


def test_val_static_onnx_export(checkpoint: Path, tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from mnv3det.deploy.export.pipeline import export_checkpoint

    from mnv3det.deploy.runtime.backends import load_backend

    onnx_path = export_checkpoint(checkpoint, format="onnx", output=tmp_path / "m.onnx", imgsz=128, batch=4, dynamic=False).path
    assert load_backend(onnx_path, "cpu").fixed_shape == (4, 3, 128, 128)
    # A static batch of 4 at 128x128: square batches, the last one padded by the backend.
    result = runner.invoke(app, ["val", "--weights", str(onnx_path), "--imgsz", "128", "--batch", "6", "--workers", "0",
                                 "--project", str(tmp_path), "--no-plots", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    check_run_folder(tmp_path / "exp", n_images=len(load_data(None).records("val")))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--conf", "2"], "--conf"),
        (["--split", "nope"], "--split"),
        (["--imgsz", "100"], "multiple"),
    ],
)
def test_val_bad_options_are_clear_errors(checkpoint: Path, tmp_path: Path, extra: list[str], message: str):
    result = runner.invoke(app, ["val", "--weights", str(checkpoint), "--project", str(tmp_path), *extra])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_val_missing_weights(tmp_path: Path):
    result = runner.invoke(app, ["val", "--weights", str(tmp_path / "nope.pt")])
    assert result.exit_code == 2 and "nope.pt" in result.output


def _with_data(checkpoint: Path, out: Path, source: Path, config_data: str | None) -> Path:
    """`checkpoint` as if `mnv3det train --data config_data` had written it on the data at `source`."""
    from mnv3det.core.checkpoint import load_checkpoint, save_checkpoint

    spec = load_data(None)
    data = {"names": list(spec.names), "category_ids": list(spec.category_ids), "format": "yolo", "source": str(source)}
    return save_checkpoint({**load_checkpoint(checkpoint).to_dict(), "config": {"imgsz": 64, "data": config_data},
                            "data": data}, out)


def test_val_without_data_uses_the_data_the_checkpoint_was_trained_on(checkpoint: Path, tmp_path: Path):
    demo_yaml = load_data(None).source
    trained = _with_data(checkpoint, tmp_path / "best.pt", demo_yaml, config_data=str(demo_yaml))
    args = ["val", "--weights", str(trained), "--workers", "0", "--no-plots", "--project", str(tmp_path / "runs"),
            "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"no --data: evaluating on {demo_yaml}, the data best.pt was trained on" in result.output
    assert json.loads((tmp_path / "runs" / "exp" / "results.json").read_text())["data"] == str(demo_yaml)

    gone = _with_data(checkpoint, tmp_path / "gone.pt", tmp_path / "moved" / "data.yaml", config_data="data.yaml")
    missing = runner.invoke(app, [*args[:2], str(gone), *args[3:]])
    assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1, missing.output
    assert "moved/data.yaml, the data" in missing.output and "no longer exists; pass --data" in missing.output

    demo_run = _with_data(checkpoint, tmp_path / "demo.pt", demo_yaml, config_data=None)  # `mnv3det train` alone
    on_demo = runner.invoke(app, [*args[:2], str(demo_run), *args[3:]])
    assert on_demo.exit_code == 0, on_demo.output
    assert "the built-in demo set, which demo.pt was trained on" in on_demo.output


def test_val_split_train_is_allowed_with_a_note(checkpoint: Path, tmp_path: Path):
    result = runner.invoke(app, ["val", "--weights", str(checkpoint), "--split", "train", "--imgsz", "64",
                                 "--workers", "0", "--no-plots", "--project", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "--split train measures how well the model fits" in " ".join(result.output.split())
    assert json.loads((tmp_path / "exp" / "results.json").read_text())["split"] == "train"


def test_val_on_a_coco_json_with_only_a_train_split(tmp_path: Path):
    from mnv3det.core.checkpoint import save_checkpoint
    from mnv3det.models import build_model
    from tests.test_data_formats import NAMES, write_coco

    root = write_coco(tmp_path / "coco")  # annotations/instances_train.json only
    model = build_model("mnv3-small", nc=len(NAMES))
    weights = save_checkpoint({"recipe": model.recipe, "nc": len(NAMES), "names": NAMES, "model": model.state_dict(),
                               "epoch": -1}, tmp_path / "two.pt")
    args = ["val", "--weights", str(weights), "--data", str(root), "--imgsz", "64", "--workers", "0", "--no-plots",
            "--project", str(tmp_path / "runs"), "--device", "cpu"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1, refused.output
    assert "no 'val' split (it has: train); evaluate one of them with --split train" in refused.output
    result = runner.invoke(app, [*args, "--split", "train"])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "runs" / "exp" / "results.json").read_text())
    assert results["split"] == "train" and results["images"] == 3 and results["source"] == "pycocotools"
