"""The anchor-free head (AFDetect) through everything else: train (an interrupt, then --resume; EMA; the AMP flag on
CPU), val, detect, the Python API, profile, every export format with its agreement check, benchmark, pretraining
and a pretrained start, autoanchor. One tiny trained checkpoint (mnv3-small-min-af, 64 px, 8 demo images) serves
the module; `scored` is the same checkpoint with its class biases at 0, so that scores sit near 0.5 and depend on
the image: the exports' agreement checks then compare real boxes instead of none."""

from __future__ import annotations

import csv
import re
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.core.checkpoint import load_checkpoint, save_checkpoint
from mnv3det.data import load_data

sys.path.insert(0, str(Path(__file__).parent))
from test_edge_formats import needs  # noqa: E402
from test_eval_pipeline import OracleBackend  # noqa: E402

RECIPE = "mnv3-small-min-af"
SIZE = 64
IMAGES = 8
RUN = ["--device", "cpu", "--imgsz", str(SIZE), "--batch", "4", "--workers", "0", "--threads", "1", "--no-plots"]


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})  # one log line per line


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The demo set's first 8 train images as a YOLO set whose val split is the same images (cheap INT8 scoring)."""
    demo = load_data(None)
    root = tmp_path_factory.mktemp("af-data")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for record in demo.records("train", report=False)[:IMAGES]:
        shutil.copy(record.path, root / "images" / record.path.name)
        label = record.path.parents[2] / "labels" / "train" / f"{record.path.stem}.txt"
        shutil.copy(label, root / "labels" / label.name)
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images", "val": "images",
                                                    "names": demo.names}))
    return root / "data.yaml"


@pytest.fixture(scope="module")
def af_run(data, tmp_path_factory) -> tuple[Path, str, str]:
    """A 2-epoch run interrupted in epoch 2, then resumed: (run folder, first log, resumed log)."""
    import mnv3det.train.trainer as trainer

    project = tmp_path_factory.mktemp("af-runs")
    real, calls = trainer.train_one_epoch, []

    def interrupted_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "train_one_epoch", interrupted_in_epoch_2)
        first = _invoke("train", "--recipe", RECIPE, "--data", str(data), "--epochs", "2", "--pretrained", "none",
                        "--project", str(project), *RUN)
    assert first.exit_code == 130, first.output
    resumed = _invoke("train", "--resume", str(project / "exp"))
    assert resumed.exit_code == 0, resumed.output
    return project / "exp", first.output, resumed.output


@pytest.fixture(scope="module")
def scored(af_run, tmp_path_factory) -> Path:
    """best.pt with its class biases at 0 (weights only): image-dependent scores near 0.5."""
    ckpt = load_checkpoint(af_run[0] / "weights" / "best.pt").for_inference()
    ckpt.model = {k: torch.zeros_like(v) if ".cls_pred." in k and k.endswith(".bias") else v
                  for k, v in ckpt.model.items()}
    return save_checkpoint(ckpt, tmp_path_factory.mktemp("af-scored") / "best.pt")


def _image(seed: int) -> np.ndarray:
    """A 64 x 64 BGR demo-like scene: the predictor's letterbox leaves it as it is."""
    demo = load_data(None).records("val", report=False)[seed]
    return cv2.resize(cv2.imread(str(demo.path)), (SIZE, SIZE), interpolation=cv2.INTER_AREA)


# --- train -----------------------------------------------------------------------------------------------------
def test_an_interrupted_run_resumes_to_the_end_with_ema_and_its_own_loss_terms(af_run):
    run, first, resumed = af_run
    assert "autoanchor: the anchor-free head has no anchors; nothing to do" in first
    assert "interrupted" in first and "from epoch 2/2" in resumed
    assert re.search(r"cpu, 1 threads?, fp32", first)  # amp is on in the config and a no-op on CPU
    assert yaml.safe_load((run / "config.yaml").read_text())["amp"] is True
    last = load_checkpoint(run / "weights" / "last.pt")
    assert last.epoch == 1 and last.resume.finished and last.recipe["head"][-1][2] == "AFDetect"
    with (run / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(float(r[f"train/{term}_loss"]) > 0 for r in rows for term in ("box", "dfl", "cls"))
    assert [r["train/obj_loss"] for r in rows] == ["", ""]  # one header for both heads; no objectness here
    # EMA: 2 batches an epoch, one optimizer step per 4 batches of 4 (nbs 16), so the EMA saw steps; the saved
    # weights are the EMA's, not the training model's
    assert last.resume.ema_updates > 0
    train_model = last.resume.train_model
    assert any(v.is_floating_point() and not torch.equal(v, train_model[k]) for k, v in last.model.items())


# --- val, API, detect ------------------------------------------------------------------------------------------
class AnchorFreeOracle(OracleBackend):
    """The ground truth of each batch in the anchor-free layout (B, N, 4 + nc): class scores, no objectness."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        yolo = super().__call__(images)  # (B, n, 5 + nc): obj 0.9 at column 4, class 1.0
        return torch.cat((yolo[..., :4], yolo[..., 5:] * 0.9), -1)


def test_the_evaluator_reads_the_anchor_free_layout_exactly():
    from mnv3det.evaluate.config import EvalConfig
    from mnv3det.evaluate.evaluator import evaluate

    spec = load_data(None)
    records = spec.records("val", report=False)[:16]
    oracle = AnchorFreeOracle(records, spec.names, 128, 8)
    result = evaluate(oracle, records, spec, EvalConfig(imgsz=128, batch=8, workers=0), device="cpu", progress=False)
    assert result.source == "pycocotools" and result.map == pytest.approx(1.0) and result.fast_map == pytest.approx(1.0)
    assert result.detections == result.instances  # one box per object: no objectness column read as a class


def test_val_scores_the_checkpoint_with_pycocotools(scored, data, tmp_path):
    import mnv3det

    result = mnv3det.val(scored, data=str(data), imgsz=SIZE, batch=4, workers=0, device="cpu",
                         project=str(tmp_path), plots=False)
    assert result.source == "pycocotools" and result.images == IMAGES and result.detections > 0
    assert 0.0 <= result.map <= result.map50 <= 1.0
    assert result.map == pytest.approx(result.fast_map, abs=1e-3)  # the in-process metric agrees with COCOeval


def test_predict_gives_the_boxes_of_a_hand_decode(scored):
    """Detector.predict against the model's eval output read by hand: xyxy, best class, torchvision NMS."""
    import torchvision

    import mnv3det
    from mnv3det.models.checkpoint import load_model

    image = _image(0)
    got = mnv3det.load(scored, device="cpu", imgsz=SIZE).predict(image, conf=0.3, iou=0.45)
    model, _ = load_model(scored, "cpu", fuse=False)
    x = torch.from_numpy(np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1))).float()[None] / 255
    with torch.no_grad():
        out = model.eval()(x)[0]  # (N, 4 + nc)
    assert out.shape == (sum((SIZE // s) ** 2 for s in (8, 16, 32)), 4 + len(got.names))
    boxes = torchvision.ops.box_convert(out[:, :4], "cxcywh", "xyxy")
    score, cls = out[:, 4:].max(1)
    keep = score > 0.3
    boxes, score, cls = boxes[keep], score[keep], cls[keep]
    kept = torchvision.ops.batched_nms(boxes, score, cls, 0.45)
    assert len(got) == len(kept) > 0
    np.testing.assert_allclose(got.boxes, boxes[kept].clamp(0, SIZE).numpy(), atol=1e-3)
    np.testing.assert_allclose(got.scores, score[kept].numpy(), atol=1e-4)
    assert got.classes.tolist() == cls[kept].tolist()


def test_detect_writes_the_boxes_the_api_finds_and_check_app_agrees(scored, tmp_path):
    import mnv3det

    cv2.imwrite(str(tmp_path / "scene.png"), _image(1))
    out = _invoke("detect", str(tmp_path / "scene.png"), "--weights", str(scored), "--imgsz", str(SIZE), "--conf",
                  "0.3", "--save-txt", "--save-conf", "--nosave", "--device", "cpu", "--project", str(tmp_path / "d"))
    assert out.exit_code == 0, out.output
    rows = np.loadtxt(tmp_path / "d" / "exp" / "labels" / "scene.txt", ndmin=2)
    found = mnv3det.load(scored, device="cpu", imgsz=SIZE).predict(str(tmp_path / "scene.png"), conf=0.3)
    assert len(rows) == len(found) > 0
    xyxy = np.c_[rows[:, 1] - rows[:, 3] / 2, rows[:, 2] - rows[:, 4] / 2, rows[:, 1] + rows[:, 3] / 2,
                 rows[:, 2] + rows[:, 4] / 2] * SIZE
    # one order for both (score to the txt's rounding, then the centre): boxes of equal score may come in any order
    order = np.lexsort((rows[:, 2].round(4), rows[:, 1].round(4), -rows[:, 5].round(3)))
    api_cx = (found.boxes[:, 0] + found.boxes[:, 2]) / 2 / SIZE
    api_cy = (found.boxes[:, 1] + found.boxes[:, 3]) / 2 / SIZE
    api_order = np.lexsort((api_cy.round(4), api_cx.round(4), -found.scores.round(3)))
    np.testing.assert_allclose(xyxy[order], found.boxes[api_order], atol=1e-3)
    assert rows[order, 0].tolist() == found.classes[api_order].tolist()
    # check-app reads those rows as an app's output and finds they agree with the reference path
    (tmp_path / "images").mkdir()
    shutil.copy(tmp_path / "scene.png", tmp_path / "images" / "scene.png")
    check = mnv3det.check_app(scored, tmp_path / "images", tmp_path / "d" / "exp" / "labels", imgsz=SIZE, device="cpu")
    assert check.verdict == "agrees", check.line


# --- profile, autoanchor ---------------------------------------------------------------------------------------
def test_profile_counts_every_conv_of_the_anchor_free_head():
    from mnv3det.deploy.profile import row_costs
    from mnv3det.models import build_model

    model = build_model(RECIPE, nc=5)
    head = model.detect
    size, macs = 128, 0
    for level, stride in enumerate((8, 16, 32)):
        cells = (size // stride) ** 2
        for conv in [m for m in head.branches[level].modules() if isinstance(m, torch.nn.Conv2d)] + [
                head.box_pred[level], head.cls_pred[level]]:
            k = conv.kernel_size[0] * conv.kernel_size[1]
            macs += cells * conv.out_channels * conv.in_channels // conv.groups * k
    last = row_costs(model, size)[-1]
    assert last.module == "AFDetect" and last.macs == macs  # 2 x (depthwise 3x3 + pointwise) + box and class convs
    assert last.params == sum(p.numel() for p in head.parameters())
    out = _invoke("profile", "--recipe", RECIPE, "--imgsz", str(size), "--compare", "mnv3-small-min", "--runs", "0",
                  "--json")
    assert out.exit_code == 0, out.output
    assert f"{RECIPE}" in out.output and "AFDetect" in out.output


def test_autoanchor_has_nothing_to_do_and_changes_nothing():
    from mnv3det.models import build_model
    from mnv3det.train.anchors import check_anchors

    model = build_model(RECIPE, nc=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = check_anchors(model, np.array([[10.0, 12.0], [200.0, 90.0]], np.float32))
    assert not report.changed and "anchor-free head has no anchors; nothing to do" in report.message
    assert "anchors" not in model.recipe and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- every export format ---------------------------------------------------------------------------------------
FLOAT_EDGE = ["openvino", "ncnn", "litert"]
INT8 = ["onnx-int8", "openvino-int8", "litert-int8"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_dynamic_exports_match_pytorch(fmt, scored, tmp_path):
    import mnv3det

    result = mnv3det.export(scored, format=fmt, imgsz=SIZE, runs=1, output=tmp_path / f"best.{fmt}")
    assert result.passed and result.max_abs_diff < 1e-3, result.as_dict()
    a = result.agreement  # the same boxes after NMS, and some
    assert a.passed and a.reference == a.exported > 0


@pytest.mark.slow
@pytest.mark.parametrize("fmt", [pytest.param(f, marks=needs(f)) for f in FLOAT_EDGE + INT8])
def test_edge_exports_pass_their_agreement_check(fmt, scored, data, tmp_path):
    """ncnn (through pnnx) and LiteRT convert the softmax-over-bins decode (B, 4, bins, P) too: the raw outputs agree
    within 1e-3. INT8 files quantize the head's branches, keep its prediction convs and decode float, and score
    themselves on val."""
    import mnv3det

    int8 = {"calib_images": 4} if fmt in INT8 else {}  # a float format refuses --calib-images in one line
    result = mnv3det.export(scored, format=fmt, imgsz=SIZE, runs=1, data=str(data), output=tmp_path / f"best_{fmt}",
                            **int8)
    agreement = result.agreement
    assert result.passed and agreement.passed and agreement.reference > 0, result.as_dict()
    if fmt in INT8:
        q = result.quantization
        assert q["decode"] == "float" and q["head_convs"] == "float" and q["val_images"] == IMAGES
    else:
        # every reference box found again; boxes whose NMS fate a 1e-5 difference can flip (near-equal scores of this
        # barely trained model) count as borderline, as the agreement rule says
        assert result.max_abs_diff < 1e-3 and agreement.unmatched == 0
        assert agreement.matched + agreement.borderline >= agreement.reference
    if fmt in ("onnx-int8", "openvino-int8"):
        branches, predictions = (onnx_head_convs if fmt == "onnx-int8" else openvino_head_convs)(result.path)
        assert branches and all(branches.values()), branches  # the depthwise-separable branches: INT8
        assert predictions and not any(predictions.values()), predictions  # box_pred, cls_pred: float


def onnx_head_convs(path: Path) -> tuple[dict[str, bool], dict[str, bool]]:
    """The head's Conv nodes in a QDQ ONNX file, each with whether its weight comes through DequantizeLinear:
    (branch convs, prediction convs)."""
    import onnx

    graph = onnx.load(str(path)).graph
    made_by = {out: node for node in graph.node for out in node.output}

    def quantized(node) -> bool:
        return node.input[1] in made_by and made_by[node.input[1]].op_type == "DequantizeLinear"

    convs = [n for n in graph.node if n.op_type == "Conv"]
    return ({n.name: quantized(n) for n in convs if "/branches." in n.name},
            {n.name: quantized(n) for n in convs if "/box_pred." in n.name or "/cls_pred." in n.name})


def openvino_head_convs(folder: Path) -> tuple[dict[str, bool], dict[str, bool]]:
    """The head's convolutions in an nncf INT8 IR, each with whether its input comes through a FakeQuantize:
    (branch convs, prediction convs)."""
    import openvino as ov

    model = ov.Core().read_model(next(folder.glob("*.xml")))
    convs = [op for op in model.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]

    def quantized(op) -> bool:
        return op.input(0).get_source_output().get_node().get_type_name() == "FakeQuantize"

    names = {op.get_friendly_name(): op for op in convs}
    return ({n: quantized(op) for n, op in names.items() if "/branches." in n},
            {n: quantized(op) for n, op in names.items() if "/box_pred." in n or "/cls_pred." in n})


@needs("coreml")
def test_coreml_converts(scored, tmp_path):
    import mnv3det

    result = mnv3det.export(scored, format="coreml", imgsz=SIZE, runs=1, output=tmp_path / "best.mlpackage")
    assert result.passed and result.path.exists(), result.as_dict()


def test_benchmark_scores_and_times_the_checkpoint(scored, data, tmp_path):
    import mnv3det

    report = mnv3det.benchmark(scored, data=str(data), formats="onnx", imgsz=SIZE, runs=2, rounds=1,
                               reference=False, project=tmp_path)
    (row,) = report.rows
    assert row.format == "onnx" and row.note == "" and row.latency_ms > 0 and row.map50_95 is not None


# --- pretraining and a pretrained start ------------------------------------------------------------------------
def test_pretraining_writes_weights_that_start_another_class_count(tmp_path, monkeypatch, data):
    from mnv3det.models import build_model
    from mnv3det.models.transfer import transfer_detector
    from mnv3det.train.pretrain import PretrainOptions, pretrain

    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))  # validation scenes are written under the cache
    result = pretrain(PretrainOptions(recipe=RECIPE, samples=8, imgsz=160, epoch_samples=8, val_images=2, batch=4,
                                      workers=0, threads=1, device="cpu", project=str(tmp_path / "pre")),
                      progress=False)
    weights = result.last.parent / "pretrained.pt"
    made = load_checkpoint(weights)
    assert made.provenance["kind"] == "synthetic-detection-pretraining" and made.nc == 16

    torch.manual_seed(0)
    model = build_model(RECIPE, nc=4)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = transfer_detector(model, made.model, made.nc, str(weights), strict=True, recipe=made.recipe)
    assert sorted(report.class_rows) == sorted(k for k in fresh if ".cls_pred." in k) and not report.skipped
    for key, value in model.state_dict().items():
        expected = fresh[key] if ".cls_pred." in key else made.model[key].float()
        assert torch.equal(value, expected.to(value.dtype)), key
    assert "6 class-conv tensors (cls_pred) re-initialised (16 -> 4 classes)" in report.summary()

    out = _invoke("train", "--recipe", RECIPE, "--data", str(data), "--epochs", "1", "--max-images", "4",
                  "--pretrained", str(weights), "--project", str(tmp_path / "runs"), *RUN)
    assert out.exit_code == 0, out.output
    assert "class-conv tensors (cls_pred) re-initialised (16 -> 4 classes)" in out.output
