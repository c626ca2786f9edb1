"""Backends: file-type dispatch, clear errors, and the fixed-batch chunking of static exports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnv3det.deploy.runtime.backends import _run_fixed_batch, load_backend
from mnv3det.errors import UserError


def test_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_backend(tmp_path / "nope.pt")


def test_unknown_suffix_is_a_clear_error(tmp_path):
    path = tmp_path / "model.paddle"
    path.write_bytes(b"x")
    with pytest.raises(UserError, match="unknown model file type"):
        load_backend(path)


def test_onnx_without_metadata_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output"])],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(UserError, match="no mnv3det export metadata"):
        load_backend(path)


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(UserError, match="broken.onnx"):
        load_backend(path)


def test_fixed_batch_chunks_and_pads():
    """A static batch-4 model given 6 images runs twice (4 + 2 padded with zeros) and returns 6 rows in order."""
    calls = []

    def run(x):  # stands in for a static model: (4, 3, 8, 8) -> (4, 1, 1) holding each image's mean
        calls.append(tuple(x.shape))
        return torch.as_tensor(x).float().mean(dim=(1, 2, 3)).view(-1, 1, 1)

    images = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 8, 8).contiguous()
    out = _run_fixed_batch(run, images, (4, 3, 8, 8))
    assert calls == [(4, 3, 8, 8), (4, 3, 8, 8)]
    assert out.view(-1).tolist() == [0, 1, 2, 3, 4, 5]

    out_np = _run_fixed_batch(run, images.numpy(), (4, 3, 8, 8))  # the ONNX path hands numpy arrays
    assert out_np.view(-1).tolist() == [0, 1, 2, 3, 4, 5]


def test_fixed_shape_mismatch_names_the_size():
    with pytest.raises(UserError, match="exported for 8x8 inputs but got 16x16"):
        _run_fixed_batch(lambda x: x, np.zeros((1, 3, 16, 16), np.float32), (1, 3, 8, 8))
