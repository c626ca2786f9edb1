"""Run folders, plots and the printed summary of an evaluation (no model needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rich.console import Console

from mnv3det.evaluate.report import print_eval, summary_text
from mnv3det.evaluate.evaluator import ClassResult, EvalResult
from mnv3det.evaluate.metrics import CURVE_POINTS, ConfusionMatrix, DetectionStats
from mnv3det.core.runs import increment_path
from mnv3det.evaluate.plots import plot_confusion_matrix, plot_image_mosaic, plot_metric_curve, plot_pr_curves


def test_increment_path(tmp_path: Path):
    assert increment_path(tmp_path, "exp") == tmp_path / "exp"
    (tmp_path / "exp").mkdir()
    assert increment_path(tmp_path, "exp") == tmp_path / "exp2"
    assert increment_path(tmp_path, "exp", exist_ok=True) == tmp_path / "exp"
    (tmp_path / "exp2").mkdir()
    (tmp_path / "exp7").mkdir()
    (tmp_path / "expert").mkdir()  # not a numbered sibling: ignored
    assert increment_path(tmp_path, "exp") == tmp_path / "exp8"
    assert increment_path(tmp_path, "exp7") == tmp_path / "exp8"
    assert increment_path(tmp_path / "missing", "exp") == tmp_path / "missing" / "exp"


def test_plots_write_files(tmp_path: Path):
    rng = np.random.default_rng(0)
    names = ["a", "b", "c"]
    stats = DetectionStats(3)
    cm = ConfusionMatrix(3)
    for _ in range(5):
        gt = rng.uniform(0, 200, (4, 2))
        gt = np.c_[gt, gt + rng.uniform(20, 80, (4, 2))]
        gcls = rng.integers(0, 2, 4)  # class c has no ground truth
        det = gt + rng.normal(0, 5, gt.shape)
        scores, dcls = rng.random(4), np.where(rng.random(4) < 0.8, gcls, 2)
        stats.update(det, scores, dcls, gt, gcls)
        cm.update(det, scores, dcls, gt, gcls)
    m = stats.compute()
    files = [
        plot_pr_curves(CURVE_POINTS, m.pr_curve, np.where(m.present, m.ap50, np.nan), names, tmp_path / "pr.png"),
        plot_metric_curve(CURVE_POINTS, m.f1_curve, names, tmp_path / "f1.png"),
        plot_confusion_matrix(cm.normalized(), names, tmp_path / "cm.png"),
    ]
    images = rng.integers(0, 255, (3, 3, 64, 96), dtype=np.uint8)
    boxes = [np.array([[5, 5, 40, 40, 0.9, 1]]), np.zeros((0, 6)), np.array([[10, 10, 50, 30, 0.4, 0]])]
    files.append(plot_image_mosaic(images, boxes, names, tmp_path / "mosaic.jpg"))
    for f in files:
        assert f.is_file() and f.stat().st_size > 1000, f
    assert np.allclose(cm.normalized().sum(0)[cm.matrix.sum(0) > 0], 1.0)


def make_result() -> EvalResult:
    nan = math.nan
    return EvalResult(
        map50=0.5, map=0.3, map75=0.25, ap_small=0.1, ap_medium=0.2, ap_large=0.4, ar1=0.2, ar10=0.35, ar100=0.4,
        precision=0.6, recall=0.45,
        per_class=[ClassResult("cat", 1, 3, 5, 0.6, 0.45, 0.5, 0.3, ), ClassResult("dog", 2, 0, 0, 0.0, 0.0, nan, nan)],
        images=3, instances=5, detections=40, speed_ms={"preprocess": 1.0, "inference": 20.0, "nms": 2.0},
        source="pycocotools", fast_map50=0.5, fast_map=0.3, best_conf=0.3,
    )


def test_result_dict_and_printing():
    r = make_result()
    assert r.fitness == 0.1 * 0.5 + 0.9 * 0.3
    d = r.as_dict()
    assert d["per_class"][1]["ap50"] is None and d["fitness"] == r.fitness  # NaN -> None, json-safe
    console = Console(record=True, width=120)
    print_eval(r, ["cat", "dog"], console=console)
    text = console.export_text()
    assert "cat" in text and "dog" not in text  # classes absent from the split are not listed
    assert "AR  max 100" in text and "20.0 ms inference" in text
    summary = summary_text(r, "demo")
    assert "mAP50-95 0.300" in summary and "AR100 0.400" in summary
