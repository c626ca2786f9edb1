"""DDP on CPU: `torchrun --nproc_per_node 2 -m mnv3det train` with gloo, a few steps on the demo set, either head."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mnv3det.core.checkpoint import load_checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["mnv3-small", "mnv3-small-min-af"])  # YOLOv5's Detect and the anchor-free head
def test_torchrun_two_cpu_processes(tmp_path, recipe):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mnv3det", "train", "--recipe", recipe, "--device", "cpu", "--epochs", "2", "--imgsz", "64",
           "--batch", "8", "--nbs", "8", "--max-images", "16", "--workers", "0", "--threads", "1", "--no-plots",
           "--project", str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "2 batches of 4 x 2 processes" in out  # each process gets half of the batch (its shard)
    assert out.count("epoch 2/2:") == 1  # only rank 0 logs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # only rank 0 saves
    ckpt = load_checkpoint(tmp_path / "exp" / "weights" / "last.pt")
    assert ckpt.epoch == 1 and ckpt.resume.finished
    # 16 images / (8 per step over both processes) = 2 optimizer steps per epoch after a 2-batch warmup
    assert ckpt.resume.ema_updates == 4
    assert not any(k.startswith("module.") for k in ckpt.model)  # the DDP wrapper is not saved
