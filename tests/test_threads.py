"""CPU threading defaults: the OpenMP wait policy set by the entry point, --threads on every computing command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.core import threads as threading_defaults
from mnv3det.deploy.runtime.backends import load_backend
from mnv3det.deploy.export.pipeline import export_checkpoint
from tests.test_detect import NAMES, make_checkpoint

PROBE = "import os, mnv3det.cli, torch; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"


def _probe(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in threading_defaults.USER_SPIN_SETTINGS} | env_extra
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_entry_point_sets_a_short_spin_before_torch():
    assert _probe({}) == "None 10000"


def test_entry_point_respects_the_users_wait_policy():
    assert _probe({"OMP_WAIT_POLICY": "PASSIVE"}) == "PASSIVE None"


def test_entry_point_leaves_a_users_spin_settings_alone():
    assert _probe({"GOMP_SPINCOUNT": "300000"}) == "None 300000"
    assert _probe({"KMP_BLOCKTIME": "0"}) == "None None"


def test_configure_openmp_does_nothing_once_torch_is_loaded(monkeypatch):
    for key in threading_defaults.USER_SPIN_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    assert "torch" in sys.modules
    assert threading_defaults.configure_openmp() == {}
    assert not any(key in os.environ for key in threading_defaults.USER_SPIN_SETTINGS)


def test_resolve_threads_uses_affinity_and_processes(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert threading_defaults.resolve_threads(None) == 4
    assert threading_defaults.resolve_threads(None, processes=2) == 2
    assert threading_defaults.resolve_threads(None, processes=8) == 1
    assert threading_defaults.resolve_threads(3) == 3


def test_ort_sessions_do_not_spin_and_take_the_thread_count(tmp_path: Path):
    weights = make_checkpoint(tmp_path / "m.pt")
    result = export_checkpoint(weights, imgsz=64, runs=1, threads=1)
    backend = load_backend(result.path, "cpu", threads=1)
    options = backend.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"  # ORT default, measured
    assert "1 threads" in result.latency_engine


@pytest.mark.parametrize("command", ["val", "detect", "export"])
def test_threads_option_sets_torch_threads(command: str, tmp_path: Path):
    weights = make_checkpoint(tmp_path / "m.pt")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        common = ["--weights", str(weights), "--threads", "1"]
        args = {
            "val": ["val", *common, "--data", str(_dataset(tmp_path)), "--imgsz", "64", "--workers", "0", "--no-plots",
                    "--project", str(tmp_path)],
            "detect": ["detect", str(_image(tmp_path)), *common, "--imgsz", "64", "--project", str(tmp_path)],
            "export": ["export", *common, "--imgsz", "64", "--runs", "1", "--json"],
        }[command]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        if command == "export":
            assert json.loads(result.output.strip().splitlines()[-1])["latency_engine"].endswith("1 threads")
    finally:
        torch.set_num_threads(before)


def _dataset(tmp_path: Path) -> Path:
    """A one-image YOLO dataset with the checkpoint's three classes."""
    (tmp_path / "data" / "images" / "val").mkdir(parents=True)
    (tmp_path / "data" / "labels" / "val").mkdir(parents=True)
    _image(tmp_path / "data" / "images" / "val")
    (tmp_path / "data" / "labels" / "val" / "img.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    yaml_path = tmp_path / "data" / "data.yaml"
    yaml_path.write_text(f"path: {tmp_path / 'data'}\ntrain: images/val\nval: images/val\nnames: {NAMES}\n")
    return yaml_path


def _image(tmp_path: Path) -> Path:
    import cv2
    import numpy as np

    path = tmp_path / "img.jpg"
    cv2.imwrite(str(path), np.full((64, 80, 3), 127, np.uint8))
    return path


def test_detect_runs_a_pt_on_one_thread_by_default_and_val_on_all_cores(tmp_path: Path, monkeypatch):
    """One image per forward is fastest on one PyTorch thread (bench_contention); val's batches use the cores."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("MNV3DET_ADAPT_THREADS", "0")  # the start count; the governor may lower it (test_cpu_share.py)
    weights = make_checkpoint(tmp_path / "m.pt")
    before = torch.get_num_threads()
    try:
        detect = ["detect", str(_image(tmp_path)), "--weights", str(weights), "--imgsz", "64", "--project", str(tmp_path)]
        assert CliRunner().invoke(app, detect).exit_code == 0
        assert torch.get_num_threads() == 1
        val = ["val", "--weights", str(weights), "--data", str(_dataset(tmp_path)), "--imgsz", "64", "--workers", "0",
               "--no-plots", "--project", str(tmp_path)]
        assert CliRunner().invoke(app, val).exit_code == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_timing_worker_gets_the_entry_points_openmp_wait(monkeypatch):
    """Latency figures are measured with the OpenMP wait `mnv3det` itself would run with (ncnn bundles libgomp)."""
    from mnv3det.deploy.runtime import timing

    seen: list[dict] = []

    def fake_run(command, **kwargs):
        seen.append(kwargs["env"])
        return subprocess.CompletedProcess(command, 0, stdout='{"format": "onnx", "median_ms": 1.0}\n', stderr="")

    monkeypatch.setattr(timing.subprocess, "run", fake_run)
    for key in threading_defaults.USER_SPIN_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    assert timing.time_in_subprocess("onnx", Path("m.onnx"), (64, 64), 1, 3)["median_ms"] == 1.0
    assert seen[-1].get("GOMP_SPINCOUNT") == "10000" and "OMP_WAIT_POLICY" not in seen[-1]
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    timing.time_in_subprocess("onnx", Path("m.onnx"), (64, 64), 1, 3)
    assert seen[-1]["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in seen[-1]
