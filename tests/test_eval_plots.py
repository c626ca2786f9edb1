"""Evaluation plots: a class the model never finds is drawn (at zero), and small inputs get fewer, larger tiles."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mnv3det.evaluate.plots import MIN_TILE, mosaic_layout, plot_image_mosaic, plot_metric_curve


def test_a_class_with_ap_0_is_drawn_at_zero_and_counts_in_the_mean(tmp_path, monkeypatch):
    import matplotlib.axes

    drawn = []
    real = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda ax, x, y, *a, **kw: drawn.append((kw.get("label"), np.asarray(y))) or real(ax, x, y, *a, **kw))
    conf = np.linspace(0, 1, 5)
    f1 = np.array([[0.2, 0.6, 0.8, 0.4, 0.0],  # found
                   [0.0, 0.0, 0.0, 0.0, 0.0],  # has ground truth, never found: AP 0
                   [0.0, 0.0, 0.0, 0.0, 0.0]])  # no ground truth in this split
    path = plot_metric_curve(conf, f1, ["cat", "dog", "eel"], tmp_path / "F1_curve.png", "F1",
                             present=np.array([True, True, False]))
    assert path.is_file()
    labels = [label for label, _ in drawn]
    assert labels[:2] == ["cat", "dog"] and "eel" not in labels
    np.testing.assert_array_equal(drawn[1][1], np.zeros(5))  # dog: a line at zero
    np.testing.assert_allclose(drawn[-1][1], f1[:2].mean(0))  # the mean over both classes with ground truth
    assert drawn[-1][0] == "all classes 0.40 at 0.500"


@pytest.mark.parametrize("side, shown, cols, scale", [(256, 4, 2, MIN_TILE / 256), (416, 9, 3, MIN_TILE / 416),
                                                      (640, 16, 4, 1920 / (4 * 640))])
def test_small_inputs_get_fewer_larger_mosaic_tiles(side, shown, cols, scale):
    assert mosaic_layout(32, side, side) == (shown, cols, cols, pytest.approx(scale))
    assert mosaic_layout(2, side, side)[:2] == (2, 2)  # never more tiles than images


def test_a_mosaic_at_256_draws_four_tiles_of_480(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (16, 3, 256, 256), dtype=np.uint8)
    boxes = [np.array([[10, 10, 60, 60, 0.9, 0]], np.float32)] * 16
    path = plot_image_mosaic(images, boxes, ["cat"], tmp_path / "val_batch0_pred.jpg")
    assert cv2.imread(str(path)).shape == (2 * MIN_TILE, 2 * MIN_TILE, 3)
