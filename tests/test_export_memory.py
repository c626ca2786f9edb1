"""Export memory is bounded: INT8 calibration holds a chunk of images' activations, never all of them, and a machine
that cannot hold a step is told so in one line before the work starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnv3det.errors import UserError

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _fp32_onnx(tmp_path, size=64):
    from mnv3det.deploy.runtime.metadata import export_metadata
    from mnv3det.deploy.export.onnx import write_onnx
    from mnv3det.models import build_model

    torch.manual_seed(0)
    model = build_model("mnv3-small-min", nc=2)
    for module in model.modules():  # BN statistics from a batch, so activations vary as a trained model's do
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        model.train()(torch.rand(4, 3, size, size))
    model.eval().fuse()
    path = tmp_path / "fp32.onnx"
    meta = export_metadata(["a", "b"], [8, 16, 32], (size, size), 1, False, False, "mnv3-small-min")
    write_onnx(model, torch.zeros(1, 3, size, size), path, meta)
    return model, path


@pytest.mark.parametrize("percentile", [True, False])
def test_the_calibrator_folds_the_images_in_chunks(tmp_path, monkeypatch, percentile):
    from onnxruntime.quantization import calibrate

    from mnv3det.deploy.export import onnx_int8

    model, fp32 = _fp32_onnx(tmp_path)
    per_call: list[int] = []
    for kind in (calibrate.HistogramCalibrater, calibrate.MinMaxCalibrater):
        real = kind.collect_data

        def collect(self, reader, real=real):  # count the images each call takes before the calibrator folds them
            taken = []
            original = reader.get_next

            def get_next():
                item = original()
                taken.append(item is not None)
                return item

            reader.get_next = get_next
            try:
                return real(self, reader)
            finally:
                reader.get_next = original
                per_call.append(sum(taken))

        monkeypatch.setattr(kind, "collect_data", collect)
    from mnv3det.deploy.export import calibrate as calibrate_module

    monkeypatch.setattr(calibrate_module, "CHUNK_BYTES", 1, raising=False)  # room for less than one image: one a call
    rng = np.random.default_rng(0)
    images = [rng.random((1, 3, 64, 64), dtype=np.float32) for _ in range(12)]
    onnx_int8.quantize(fp32, tmp_path / "int8.onnx", images, onnx_int8.detect_scope(model), percentile=percentile)
    assert sum(per_call) == 12 and max(per_call) == 1  # never all 12 at once


def test_chunks_divide_the_count_and_fit_the_budget():
    from mnv3det.deploy.export.onnx_int8 import COPIES, MAX_CHUNK, calibration_chunk

    mb = 2**20
    assert calibration_chunk(300, 100 * mb, budget=COPIES * 400 * mb) == 4
    assert calibration_chunk(300, 1, budget=2**40) == MAX_CHUNK - 2  # 6 divides 300, 8 and 7 do not
    assert calibration_chunk(7, 1000 * mb, budget=mb) == 1  # one image even when it does not fit the budget
    assert calibration_chunk(3, 1, budget=2**40) == 3


def test_unreadable_calibration_images_are_made_up_by_starting_over():
    from mnv3det.deploy.export.onnx_int8 import _Reader

    class Lossy:  # a calibration set whose last two of five images cannot be read
        def __len__(self):
            return 5

        def __iter__(self):
            return iter([np.full((1, 3, 4, 4), k, np.float32) for k in range(3)])

    reader = _Reader("images", Lossy(), 5)
    reader.set_range(0, 5)
    got = []
    while (item := reader.get_next()) is not None:
        got.append(int(item["images"][0, 0, 0, 0]))
    assert got == [0, 1, 2, 0, 1]


def test_a_machine_without_the_memory_gets_one_line_before_the_work(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mnv3det.cli import app
    from mnv3det.core import memory

    from test_export import make_checkpoint

    weights, _ = make_checkpoint(tmp_path / "best.pt", "mnv3-small-min")
    monkeypatch.setattr(memory, "available_bytes", lambda: 64 * 2**20)
    for fmt in ("onnx", "onnx-int8"):
        result = CliRunner().invoke(app, ["export", "-w", str(weights), "--format", fmt, "--imgsz", "640"])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "needs about" in lines[0] and "0.1 GB is available" in lines[0]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # nothing started, nothing left
