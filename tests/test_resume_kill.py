"""Kill a training process mid-epoch (SIGKILL), resume it, and finish with the right epoch count."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from mnv3det.core.checkpoint import load_checkpoint


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"}  # wide: rich must not wrap the lines we read
    args = [sys.executable, "-m", "mnv3det", "train", "--device", "cpu", "--epochs", "3", "--imgsz", "128",
            "--batch", "4", "--max-images", "64", "--workers", "0", "--threads", "1", "--no-plots", "--val-interval", "3",
            "--project", str(tmp_path)]
    last = tmp_path / "exp" / "weights" / "last.pt"
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not last.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no last.pt after 120 s"
            time.sleep(0.05)
        time.sleep(0.15)  # epoch 2 (16 batches at 128 px: ~1.1 s on an idle CPU here, ~5 s loaded) is under way
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    killed_at = load_checkpoint(last)
    assert killed_at.epoch == 0, "killed after epoch 2 finished: the test did not interrupt an epoch"

    done = subprocess.run([sys.executable, "-m", "mnv3det", "train", "--resume", str(tmp_path / "exp")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stderr and "from epoch 2/3" in done.stderr
    final = load_checkpoint(last)
    assert final.epoch == 2 and final.resume.finished
    with (tmp_path / "exp" / "results.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]
    assert not (tmp_path / "exp2").exists()  # resumed in place, no new run folder



@pytest.mark.slow
def test_sigterm_ends_training_with_the_ctrl_c_line(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
    args = [sys.executable, "-m", "mnv3det", "train", "--device", "cpu", "--epochs", "50", "--imgsz", "64",
            "--batch", "4", "--max-images", "8", "--workers", "0", "--threads", "1", "--no-plots",
            "--project", str(tmp_path)]
    last = tmp_path / "exp" / "weights" / "last.pt"
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not last.exists():
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no last.pt after 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # what a scheduler or `docker stop` sends
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    line = [x for x in stderr.splitlines() if x.startswith("interrupted")]
    assert line and f"mnv3det train --resume {tmp_path / 'exp'}" in line[0], stderr[-2000:]
    assert "Traceback" not in stderr
