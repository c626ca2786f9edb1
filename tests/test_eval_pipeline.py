"""evaluate() end to end with an oracle backend: letterbox undone, batches mapped to records, ids mapped back.

The oracle replays the loader's own targets as predictions (in letterboxed pixels), so after NMS and
scale_boxes every ground-truth box must come back where it was: AP = 1 on both metric paths.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mnv3det.data import create_dataloader, load_data
from mnv3det.evaluate.config import EvalConfig
from mnv3det.evaluate.evaluator import evaluate


class OracleBackend:
    """A Backend whose predictions are the ground truth of the batch it is called for."""

    def __init__(self, records, names, imgsz: int, batch: int, fixed_shape=None):
        self.names, self.stride, self.fixed_shape, self.device = list(names), 32, fixed_shape, torch.device("cpu")
        self.imgsz = None
        rect = fixed_shape is None
        loader = create_dataloader(records, imgsz=imgsz, batch_size=batch, augment=False, rect=rect, workers=0)
        self.targets = [t for _, t, _, _ in loader]
        self.calls = 0
        self.input_shapes: list[tuple[int, int]] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        t = self.targets[self.calls]
        self.calls += 1
        b, _, h, w = images.shape
        self.input_shapes.append((h, w))
        n = max(int((t[:, 0] == i).sum()) for i in range(b)) + 1
        out = torch.zeros(b, n, 5 + len(self.names))
        for i in range(b):
            rows = t[t[:, 0] == i]
            k = len(rows)
            out[i, :k, :4] = rows[:, 2:6] * torch.tensor([w, h, w, h])
            out[i, :k, 4] = 0.9
            out[i, torch.arange(k), 5 + rows[:, 1].long()] = 1.0
        return out


@pytest.fixture(scope="module")
def demo():
    spec = load_data(None)
    return spec, spec.records("val")[:24]


@pytest.mark.parametrize("fixed", [False, True], ids=["rect", "static-shape"])
def test_oracle_predictions_score_one(demo, fixed: bool):
    spec, records = demo
    imgsz, batch = (160, 8) if not fixed else (192, 4)
    fixed_shape = (batch, 3, imgsz, imgsz) if fixed else None
    oracle = OracleBackend(records, spec.names, imgsz, batch, fixed_shape)
    result = evaluate(oracle, records, spec, EvalConfig(imgsz=imgsz, batch=batch, workers=0), device="cpu", progress=False)
    assert oracle.calls == len(oracle.targets)
    assert result.images == len(records) and result.instances == sum(r.num_boxes for r in records)
    assert result.map == pytest.approx(1.0) and result.map50 == pytest.approx(1.0)
    assert result.fast_map == pytest.approx(1.0) and result.ar100 == pytest.approx(1.0)
    assert result.precision == pytest.approx(1.0) and result.recall == pytest.approx(1.0)


def test_plain_model_fast_path_restores_train_mode(demo, tmp_path):
    from mnv3det.models import build_model

    spec, records = demo
    torch.manual_seed(0)
    model = build_model("mnv3-small", nc=len(spec.names)).train()
    config = EvalConfig(imgsz=128, batch=8, coco=False, workers=0)
    result = evaluate(model, records[:8], spec, config, device="cpu", progress=False, save_json=tmp_path / "p.json")
    assert model.training  # the trainer's EMA/model keeps its mode
    assert result.source == "fast" and math.isnan(result.ar100)
    for v in (result.map50, result.map, result.precision, result.recall):
        assert 0.0 <= v <= 1.0
    assert result.fitness == pytest.approx(0.1 * result.map50 + 0.9 * result.map)
    assert (tmp_path / "p.json").is_file()
    assert np.isfinite(list(result.speed_ms.values())).all()


def test_wrong_class_count_is_a_user_error(demo):
    from mnv3det.errors import UserError

    spec, records = demo
    oracle = OracleBackend(records[:4], spec.names, 128, 4)
    oracle.names = ["a", "b"]
    with pytest.raises(UserError, match="2 classes"):
        evaluate(oracle, records[:4], spec, EvalConfig(imgsz=128, batch=4, workers=0), device="cpu", progress=False)


def test_oracle_on_coco128_rect_batches(coco128_dir):
    # Non-square photos: rect batches of different shapes, letterbox padding on one side only.
    spec = load_data(coco128_dir / "coco128.yaml")
    records = spec.records("val")[:16]
    oracle = OracleBackend(records, spec.names, 320, 8)
    # NMS IoU 0.99 so that overlapping boxes of one class in the ground truth all survive.
    config = EvalConfig(imgsz=320, batch=8, iou=0.99, workers=0)
    result = evaluate(oracle, records, spec, config, device="cpu", progress=False)
    assert any(h != w for h, w in oracle.input_shapes)  # really rectangular batches
    assert result.map == pytest.approx(1.0) and result.fast_map == pytest.approx(1.0)


def test_module_with_wrong_class_count_keeps_its_mode(demo):
    from mnv3det.errors import UserError
    from mnv3det.models import build_model

    spec, records = demo
    model = build_model("mnv3-small", nc=len(spec.names) + 1).train()
    with pytest.raises(UserError, match=f"{len(spec.names) + 1} classes"):
        evaluate(model, records[:4], spec, EvalConfig(imgsz=128, batch=4, workers=0), device="cpu", progress=False)
    assert model.training
