"""Edge formats on a tiny model at 96 px: export, load through load_backend, detect, compare with PyTorch; INT8 on a
handful of calibration images; the detection-agreement check by hand; missing packages name their extra."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.core.checkpoint import save_checkpoint
from mnv3det.deploy.runtime.backends import load_backend
from mnv3det.deploy.export.pipeline import agreement_with, export_checkpoint
from mnv3det.deploy.formats import FORMATS
from mnv3det.deploy.runtime.predictor import NmsSettings
from mnv3det.deploy.runtime.metadata import METADATA_FILE
from mnv3det.errors import UserError

pytest.importorskip("onnxruntime")
NAMES = ["cell", "dot", "ring"]
SIZE = 96


def make_checkpoint(path: Path, names: list[str] = NAMES) -> Path:
    """Random mnv3-small whose scores depend on the image (BN statistics from real batches, zero head biases)."""
    from mnv3det.models import build_model

    torch.manual_seed(0)
    model = build_model("mnv3-small", nc=len(names))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 3, SIZE, SIZE))
        for conv in model.detect.m:
            conv.bias.zero_()
    model.eval()
    return save_checkpoint({"recipe": model.recipe, "nc": model.nc, "names": names, "model": model.state_dict(),
                            "epoch": -1}, path)


def scene(seed: int, h: int = 90, w: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for _ in range(3):
        x, y = int(rng.integers(0, w - 30)), int(rng.integers(0, h - 30))
        cv2.rectangle(image, (x, y), (x + 25, y + 20), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    return image


def write_data(root: Path, count: int = 6) -> Path:
    """A YOLO dataset of `count` scenes; train and val are the same images."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k in range(count):
        cv2.imwrite(str(root / "images" / f"{k}.jpg"), scene(k))
        (root / "labels" / f"{k}.txt").write_text(f"{k % 3} 0.5 0.5 0.3 0.3\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images", "val": "images", "names": NAMES}))
    return root / "data.yaml"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("edge") / "best.pt")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("edge-data") / "tiny")


def torch_reference(weights: Path):
    """The checkpoint as a square static input backend: exactly what an export sees."""
    backend = load_backend(weights, "cpu")
    backend.fixed_shape = (1, 3, SIZE, SIZE)
    return backend


def _available(name: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(p) is not None for p, _ in FORMATS[name].packages)


def needs(name: str):
    return pytest.mark.skipif(not _available(name), reason=f"{name} needs pip install 'mnv3det[edge]'")


@pytest.mark.parametrize("fmt", [pytest.param("openvino", marks=needs("openvino")),
                                 pytest.param("ncnn", marks=needs("ncnn"))])
def test_float_format_round_trip_matches_pytorch(fmt, weights):
    result = export_checkpoint(weights, format=fmt, imgsz=SIZE, picture=scene(10), runs=1)
    assert result.path == weights.parent / f"best_{fmt}_model" and result.path.is_dir()
    assert result.passed and result.max_abs_diff < 1e-3, result.as_dict()
    # (a random model stacks near-equal boxes near the threshold, so NMS may keep a different twin: borderline)
    assert result.agreement.matched >= 0.9 * result.agreement.reference > 0
    meta = json.loads((result.path / METADATA_FILE).read_text())
    assert meta["names"] == NAMES and meta["format"] == fmt and meta["imgsz"] == [SIZE, SIZE]

    # Independently of the exporter's own check: load_backend dispatches on the folder (and the file inside it).
    images = [scene(11), scene(12, 60, 140)]
    inner = next(p for p in result.path.iterdir() if p.suffix in (".xml", ".param"))
    for path in (result.path, inner):
        backend = load_backend(path, "cpu")
        assert backend.names == NAMES and backend.fixed_shape == (1, 3, SIZE, SIZE)
        agreement = agreement_with(torch_reference(weights), backend, images, (0.9, 0.05), NmsSettings(conf=0.3))
        assert agreement.reference > 0 and agreement.passed, agreement.summary()


@needs("ncnn")
def test_ncnn_input_memory_is_kept_alive(weights):
    # ncnn.Mat borrows numpy memory: a non-contiguous input (a temporary copy inside run) must still be exact.
    backend = load_backend(export_checkpoint(weights, format="ncnn", imgsz=SIZE, runs=0).path, "cpu")
    x = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)
    flipped = x[:, :, :, ::-1]
    np.testing.assert_allclose(backend.run(flipped), backend.run(np.ascontiguousarray(flipped)), atol=1e-6)


@needs("ncnn")
def test_ncnn_runs_one_thread_unless_told(weights, monkeypatch):
    # Under mnv3det's passive OpenMP policy a second ncnn thread sleeps and is woken ~400 times per forward:
    # 18.5 ms with 2 threads against 5.4 ms with 1 for mnv3-small at 320, so the default is 1 whatever the cores.
    from mnv3det.core import threads as threads_module

    monkeypatch.setattr(threads_module, "available_cores", lambda: 4)
    path = export_checkpoint(weights, format="ncnn", imgsz=SIZE, runs=0).path
    assert load_backend(path, "cpu").net.opt.num_threads == 1
    assert load_backend(path, "cpu", threads=3).net.opt.num_threads == 3


@pytest.mark.parametrize("fmt", [pytest.param("onnx-int8"), pytest.param("openvino-int8", marks=needs("openvino-int8"))])
def test_int8_calibrates_on_a_handful_of_images_and_stores_the_drop(fmt, weights, data):
    result = export_checkpoint(weights, format=fmt, imgsz=SIZE, data=data, calib_images=4, runs=1
    )
    q = result.quantization
    assert q["calibration_images"] == 4 and q["decode"] == "float" and q["val_images"] == 6
    assert q["map50_95_drop"] == pytest.approx(q["map50_95_float"] - q["map50_95_int8"], abs=1e-3)
    if fmt == "onnx-int8":  # both range rules scored on val; the file is the better one
        candidates = q["calibration_map50_95"]
        assert set(candidates) <= {"percentile", "MinMax"} and "MinMax" in candidates
        assert q["map50_95_int8"] == pytest.approx(max(candidates.values()), abs=1e-4)
    backend = load_backend(result.path, "cpu")
    stored = backend.meta["quantization"]
    assert stored["map50_95_int8"] == q["map50_95_int8"] and stored["calibration_split"] == "train"
    out = backend(torch.rand(1, 3, SIZE, SIZE))
    assert out.shape[-1] == 5 + len(NAMES) and torch.isfinite(out).all()
    # Boxes stay in pixels and probabilities in 0..1: the decode ran in float, not through one int8 scale.
    assert out[..., 4:].min() >= 0 and out[..., 4:].max() <= 1 and out[..., 2:4].max() > 1


def test_onnx_int8_keeps_every_detect_decode_node_in_float(weights, tmp_path):
    import onnx

    from mnv3det.models.checkpoint import load_model
    from mnv3det.deploy.config import ExportConfig
    from mnv3det.deploy.export.pipeline import export_model
    from mnv3det.deploy.export.onnx_int8 import detect_scope, float_nodes

    model, _ = load_model(weights)
    path = export_model(model, tmp_path / "m.onnx", ExportConfig(imgsz=SIZE, dynamic=False, runs=1)).path
    proto = onnx.load(str(path))
    scope = detect_scope(model)
    keep = set(float_nodes(proto, scope, head_float=False))
    producer = next(n.name for n in proto.graph.node if proto.graph.output[0].name in n.output)
    assert producer in keep  # the final Concat of boxes and probabilities
    assert not any(k.endswith("/Conv") for k in keep) and all(k.startswith(scope) for k in keep)
    assert {k for k in float_nodes(proto, scope, head_float=True) if k.endswith("/Conv")} == {
        f"{scope}m.{i}/Conv" for i in range(3)
    }


def test_onnx_int8_keeps_the_stem_conv_and_its_activation_in_float(weights, data):
    # The stem (3 input channels) ran slower as QLinearConv than as a float conv, and quantizing it also put a
    # QuantizeLinear over the whole image: kept float, the first quantized tensor is the stem's output.
    import onnx

    path = export_checkpoint(weights, format="onnx-int8", imgsz=SIZE, data=data,
                                  calib_images=4, runs=0).path
    proto = onnx.load(str(path))
    image = proto.graph.input[0].name
    producer = {out: n.op_type for n in proto.graph.node for out in n.output}
    conv = next(n for n in proto.graph.node if image in n.input)
    assert conv.op_type == "Conv" and conv.input[1] in {i.name for i in proto.graph.initializer}  # float weights
    activation = [n for n in proto.graph.node if conv.output[0] in n.input]  # h-swish: HardSigmoid and Mul
    assert activation and all(n.op_type in ("HardSigmoid", "Mul", "HardSwish") for n in activation)
    assert all(producer.get(i) != "DequantizeLinear" for n in activation for i in n.input)
    assert sum(n.op_type == "QuantizeLinear" for n in proto.graph.node) > 10  # the rest is quantized
    assert load_backend(path, "cpu").meta["quantization"]["stem"] == "float"


def test_missing_package_names_the_extra(weights, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(UserError, match=r"needs openvino, which is not installed: pip install 'mnv3det\[edge\]'"):
        export_checkpoint(weights, format="openvino", imgsz=SIZE)
    result = CliRunner().invoke(app, ["export", "-w", str(weights), "--format", "openvino", "--imgsz", "64"])
    assert result.exit_code == 2 and "mnv3det[edge]" in result.output and len(result.output.strip().splitlines()) <= 2


def test_edge_options_that_do_not_apply_are_clear_errors(weights):
    result = CliRunner().invoke(app, ["export", "-w", str(weights), "--format", "ncnn", "--dynamic"])
    assert result.exit_code == 2 and "--dynamic applies to --format torchscript/onnx" in result.output
    result = CliRunner().invoke(app, ["export", "-w", str(weights), "--format", "ncnn", "--device", "0"])
    assert result.exit_code == 2 and "runs on the CPU" in result.output


@needs("openvino")
def test_export_cli_json_then_detect_and_val_run_the_folder(weights, data, tmp_path):
    runner = CliRunner()
    out = tmp_path / "m_openvino_model"
    result = runner.invoke(app, ["export", "-w", str(weights), "--format", "openvino", "--imgsz", str(SIZE),
                                 "-o", str(out), "--runs", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["passed"] and report["path"] == str(out) and report["agreement"]["unmatched"] == 0

    images = Path(data).parent / "images"
    result = runner.invoke(app, ["detect", str(images), "--weights", str(out), "--project", str(tmp_path / "d"),
                                 "--conf", "0.25"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["val", "--weights", str(out), "--data", str(data), "--project", str(tmp_path / "v"),
                                 "--workers", "0", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "v" / "exp" / "results.json").read_text())["imgsz"] == SIZE


@needs("openvino")
@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="sigaltstack check via Linux libc")
def test_openvino_models_leave_the_signal_stack_as_they_found_it(weights):
    # OpenVINO restores, on destroying a model, the alt signal stack it found at compile time: two models destroyed
    # in creation order left a freed one behind, and the next handled signal (a child's SIGCHLD) crashed the process.
    import ctypes

    from mnv3det.deploy.runtime.openvino import _SignalStack

    libc = ctypes.CDLL(None, use_errno=True)

    def current() -> tuple[int, int]:
        stack = _SignalStack()
        libc.sigaltstack(None, ctypes.byref(stack))
        return stack.ss_sp or 0, stack.ss_flags

    before = current()
    path = export_checkpoint(weights, format="openvino", imgsz=SIZE, runs=0).path
    first, second = load_backend(path, "cpu"), load_backend(path, "cpu")
    assert current() == before
    del first
    gc.collect()
    del second
    gc.collect()
    assert current() == before


@needs("openvino-int8")
def test_int8_export_json_keeps_stdout_json_only(weights, data, tmp_path):
    """nncf draws progress bars on stdout; with --json they must go to stderr, or `| jq` and scripts break."""
    import subprocess
    import sys

    out = tmp_path / "q_openvino_int8_model"
    done = subprocess.run([sys.executable, "-m", "mnv3det", "export", "-w", str(weights), "--format", "openvino-int8",
                           "--data", str(data), "--calib-images", "4", "--imgsz", str(SIZE), "-o", str(out), "--runs", "1",
                           "--json"], capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)  # the whole of stdout, not its last line
    assert report["path"] == str(out) and report["quantization"]["calibration_images"] == 4
    # nncf imports torch.utils.cpp_extension, which logs this on a machine with a CUDA toolkit and no GPU
    assert "No CUDA runtime is found" not in done.stderr


def test_onnx_int8_export_says_what_it_is_doing(weights, data, tmp_path):
    result = CliRunner().invoke(app, ["export", "-w", str(weights), "--format", "onnx-int8", "--data", str(data),
                                      "--calib-images", "4", "--imgsz", str(SIZE), "-o", str(tmp_path / "q.onnx"),
                                      "--runs", "1"])
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.output.splitlines()]
    steps = ["INT8: calibrating on 4 images", "onnx-int8: percentile calibration (1/2) on 4 images",
             "onnx-int8: scoring the percentile model on 6 val images", "onnx-int8: MinMax calibration (2/2) on 4 images",
             "verifying against PyTorch on", "INT8: mAP of PyTorch and of q.onnx on 6 val images", "timing q.onnx"]
    at = [next((i for i, line in enumerate(lines) if line.startswith(step)), -1) for step in steps]
    assert -1 not in at and at == sorted(at), "\n".join(lines)  # every step, in order, before the table


def test_calibration_progress_passes_every_image_through_and_ends_on_a_prefix(weights):
    import io
    import itertools

    from rich.console import Console

    from mnv3det.deploy.config import ExportConfig
    from mnv3det.deploy.export.pipeline import ExportJob, Int8Options

    out = io.StringIO()
    job = ExportJob(None, (1, 3, SIZE, SIZE), "x", {}, ExportConfig(), Path("."), Int8Options(4, None),
                    console=Console(file=out, force_terminal=True, width=100))
    assert list(job.track(range(5), 5, "calibration")) == list(range(5))
    prefix = job.track(range(10), 3, "MinMax")
    assert list(itertools.islice(prefix, 3)) == [0, 1, 2]  # the consumer stops early...
    prefix.close()  # ...and closing ends the bar
    assert "calibration (5 images)" in out.getvalue() and "MinMax (3 images)" in out.getvalue()
