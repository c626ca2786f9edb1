"""Issue 31, part A (the first hour): a torch/torchvision pair that does not belong together, options spelled as
the caller spells them, and the other first-run messages. Tiny models and images; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import mnv3det
from mnv3det.cli import app
from mnv3det.core import torch_pair
from mnv3det.errors import UserError

runner = CliRunner()


# --- A.1: torch and torchvision from different builds ---------------------------------------------------------

def test_release_table_and_build_tags_decide_the_pair():
    assert torch_pair.versions_agree("2.5.1+cpu", "0.20.1+cpu")
    assert torch_pair.versions_agree("2.14.1+cu130", "0.29.1+cu130")
    assert torch_pair.versions_agree("2.5.1+cpu", "0.20.1")  # a tag on one side only: the release decides
    assert not torch_pair.versions_agree("2.5.1+cpu", "0.21.0")  # torchvision for torch 2.6
    assert not torch_pair.versions_agree("2.5.1+cpu", "0.20.1+cu121")  # same release, another build
    assert torch_pair.fix_command("2.5.1+cpu").endswith("--index-url https://download.pytorch.org/whl/cpu")
    assert torch_pair.fix_command("2.5.1+cu121").endswith("--index-url https://download.pytorch.org/whl/cu121")
    assert torch_pair.fix_command("2.5.1") == "pip install --force-reinstall torch torchvision"  # both from PyPI


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    return lines[0]


def test_mismatched_versions_are_one_line_at_start_up(monkeypatch, tmp_path):
    versions = {"torch": "2.5.1+cpu", "torchvision": "0.21.0"}
    monkeypatch.setattr(torch_pair, "installed_version", versions.get)
    line = _one_error_line(runner.invoke(app, ["train", "--project", str(tmp_path / "runs")]))
    assert "torch 2.5.1+cpu and torchvision 0.21.0 do not belong together" in line
    assert "pip install --force-reinstall torch torchvision --index-url https://download.pytorch.org/whl/cpu" in line
    assert not (tmp_path / "runs").exists()


def test_torchvision_operator_error_becomes_one_line(monkeypatch):
    """The failure users saw (`operator torchvision::nms does not exist`, raised when torchvision's ops load),
    simulated inside the command, with versions that the release table alone would not catch."""
    import mnv3det.train.api as train_api

    versions = {"torch": "2.5.1+cpu", "torchvision": "0.20.1"}
    monkeypatch.setattr(torch_pair, "installed_version", versions.get)

    def broken(**_):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(train_api, "train", broken)
    line = _one_error_line(runner.invoke(app, ["train"]))
    assert "torch 2.5.1+cpu and torchvision 0.20.1 do not belong together" in line and "--index-url" in line


# --- A.3 (h): the Python API speaks Python ---------------------------------------------------------------------

def _coco_train_only(tmp_path: Path) -> tuple[Path, Path]:
    """A COCO json root with a train split only, and an untrained tiny checkpoint for its classes."""
    from mnv3det.core.checkpoint import save_checkpoint
    from mnv3det.models import build_model
    from tests.test_data_formats import NAMES, write_coco

    root = write_coco(tmp_path / "coco")
    model = build_model("mnv3-small", nc=len(NAMES))
    weights = save_checkpoint({"recipe": model.recipe, "nc": len(NAMES), "names": NAMES,
                               "model": model.state_dict(), "epoch": -1}, tmp_path / "tiny.pt")
    return root, weights


def test_api_names_its_keyword_and_a_split_that_exists(tmp_path):
    root, weights = _coco_train_only(tmp_path)
    with pytest.raises(UserError) as err:
        mnv3det.val(weights, data=root, split="test", imgsz=64, workers=0, plots=False, device="cpu",
                    project=tmp_path / "runs")
    message = str(err.value)
    assert message.startswith("split='test': ") and "evaluate one of them with split='train'" in message
    assert "--split" not in message


def test_cli_keeps_its_option_spelling(tmp_path):
    root, weights = _coco_train_only(tmp_path)
    line = _one_error_line(runner.invoke(app, [
        "val", "--weights", str(weights), "--data", str(root), "--split", "test", "--imgsz", "64", "--workers", "0",
        "--no-plots", "--device", "cpu", "--project", str(tmp_path / "runs")]))
    assert "--split test:" in line and "evaluate one of them with --split train" in line


# --- A.3 (b): the validation loss, (e) one thread count, (f) a run shorter than the close-mosaic window --------

@pytest.mark.parametrize("recipe, terms", [("mnv3-small", ["box", "obj", "cls"]),
                                           ("mnv3-small-min-af", ["box", "dfl", "cls"])])
def test_val_loss_hook_equals_the_loss_of_the_raw_head(recipe, terms):
    """ValLoss (a hook on the head in eval mode) gives what the run's loss gives on the head's training output."""
    import torch

    from mnv3det.models import build_model
    from mnv3det.train.config import TrainConfig
    from mnv3det.train.loss import make_loss
    from mnv3det.train.val_loss import ValLoss

    torch.manual_seed(0)
    model = build_model(recipe, nc=3).eval()
    loss_fn = make_loss(model, TrainConfig(imgsz=64))
    x = torch.rand(2, 3, 64, 96)  # a rect batch
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.25, 0.6, 0.2, 0.2], [1, 0, 0.7, 0.3, 0.4, 0.5]])
    with torch.no_grad(), ValLoss(model.detect, loss_fn) as val_loss:
        model(x)  # decoded boxes, as the prediction path runs it
        val_loss.add(targets)
    model.detect.training = True  # the reference: the head's training output; its BN layers stay in eval
    with torch.no_grad():
        _, expected = loss_fn(model(x), targets)
    assert val_loss.images == 2 and list(val_loss.means()) == terms
    assert torch.allclose(torch.tensor(list(val_loss.means().values()), dtype=torch.float32), expected, rtol=1e-5,
                          atol=1e-7)


@pytest.mark.slow  # a 2-epoch tiny run (the demo set at 128 px, 16 images)
def test_short_run_states_mosaic_threads_and_writes_val_losses(tmp_path, monkeypatch):
    import csv
    import re
    from io import StringIO

    from rich.console import Console

    from mnv3det.train import trainer
    from mnv3det.train.plots import plot_results
    from tests.test_cpu_share import _CountingGovernor
    from tests.test_train import tiny

    monkeypatch.setattr(trainer, "adapts", lambda *a, **k: True)  # as on a machine with cores to share
    monkeypatch.setattr(trainer, "adaptive_governor", lambda *a, on_change=None, **k: _CountingGovernor(on_change))
    log = StringIO()
    result = trainer.fit(tiny(tmp_path, threads=None, epochs=2, close_mosaic=5, mosaic=1.0), show_progress=False,
                         console=Console(file=log, width=400))
    text = log.getvalue()
    assert "mosaic off for the whole run, all 2 epoch(s): close_mosaic is 5 and the run has 2" in text
    started = re.search(r"up to (\d+) threads \(fewer while other processes use the cores", text)
    assert started, text
    assert f"CPU threads: {started.group(1)} -> 1 (other processes used 1.0 of 2 cores)" in text

    with (result.run_dir / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        for name in ("box", "obj", "cls"):
            assert float(row[f"val/{name}_loss"]) >= 0 and row[f"train/{name}_loss"] != ""
        assert float(row["val/obj_loss"]) > 0  # every val image has boxes: objectness always costs something
    assert plot_results(result.run_dir / "results.csv").stat().st_size > 0


# --- A.3 (a): dense scenes ------------------------------------------------------------------------------------

DENSE_NAMES = ["RBC", "WBC", "Platelets"]


def _dense_scene() -> tuple["np.ndarray", "np.ndarray"]:
    """48 boxes of 48 px with 8 px gaps on a 640 x 480 image (BCCD has ~46 cells per image), and one big box."""
    import numpy as np

    rows = [[30 + j * 56, 30 + i * 56, 78 + j * 56, 78 + i * 56, 0.87, (i + j) % 3] for i in range(6) for j in range(8)]
    return np.full((480, 640, 3), 255, np.uint8), np.array(rows, np.float64)


def _interiors(rows, margin: int = 6):
    import numpy as np

    mask = np.zeros((480, 640), bool)
    for x1, y1, x2, y2, *_ in rows:
        mask[int(y1) + margin:int(y2) - margin, int(x1) + margin:int(x2) - margin] = True
    return mask


def test_dense_scene_labels_leave_the_objects_visible():
    from mnv3det.deploy.runtime.annotate import draw_detections

    image, rows = _dense_scene()
    drawn = draw_detections(image, rows, DENSE_NAMES)
    covered = (drawn != image).any(2)[_interiors(rows)].mean()
    # labels at the image's size (one font for every box) covered ~20% of these boxes' insides; sized to the box, ~5%
    assert covered < 0.1, covered
    boxes_only = draw_detections(image, rows, DENSE_NAMES, show_labels=False)
    assert not (boxes_only != image).any(2)[_interiors(rows, margin=3)].any()  # --hide-labels: the lines, nothing else
    assert (boxes_only != image).any()


def test_fixed_line_width_is_used_for_every_box():
    import numpy as np

    from mnv3det.deploy.runtime.annotate import draw_detections

    image = np.full((200, 200, 3), 255, np.uint8)
    small = np.array([[50, 50, 80, 80, 0.9, 0]], np.float64)  # 30 px: by default a thin line
    thin = draw_detections(image, small, DENSE_NAMES, show_labels=False)
    thick = draw_detections(image, small, DENSE_NAMES, show_labels=False, line_width=6)
    column = lambda img: int((img[65, 40:70] != 255).any(1).sum())  # noqa: E731  pixels across the left edge
    assert column(thick) > column(thin) >= 1


def test_detect_options_and_api_plot_hide_labels(tmp_path, monkeypatch):
    import mnv3det.deploy.detect_runner as runner_module
    from mnv3det.api import Detections
    from mnv3det.deploy.runtime.annotate import draw_detections

    seen = []
    monkeypatch.setattr(runner_module, "run_detect", lambda config, console: seen.append(config) or None)
    monkeypatch.setattr(runner_module, "print_detect_report", lambda report, console: None)
    result = runner.invoke(app, ["detect", "README.md", "--weights", "README.md", "--hide-labels", "--hide-conf",
                                 "--line-width", "3"])
    assert result.exit_code == 0, result.output
    assert seen[0].hide_labels and seen[0].hide_conf and seen[0].line_width == 3

    image, rows = _dense_scene()
    found = Detections(boxes=rows[:, :4].astype("float32"), scores=rows[:, 4].astype("float32"),
                       classes=rows[:, 5].astype("int64"), names=DENSE_NAMES, image_shape=image.shape[:2], speed_ms={},
                       image=image)
    assert (found.plot(labels=False) == draw_detections(image, rows, DENSE_NAMES, show_labels=False)).all()
    assert not (found.plot(labels=False) == found.plot()).all()
    with pytest.raises(UserError, match="line_width=0"):
        found.plot(line_width=0)


# --- A.3 (c, d): benchmark on a subset; --json is JSON only; no fork after JAX ---------------------------------

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_json_stdout_is_json_only_and_says_the_subset(tmp_path):
    """Third-party progress written to sys.stdout and to file descriptor 1 (as nncf's bars and C++ notes are) ends
    on stderr; stdout parses as the report, which says it was scored on a subset."""
    import json
    import subprocess
    import sys

    code = f"""
import os, sys
from pathlib import Path
import mnv3det.cli.benchmark_cmd as cmd
from mnv3det.deploy.benchmark import BenchReport, BenchRow

def fake_run(opts, say):
    print("Statistics collection ━━━━ 100%")            # Python-level, as rich/tqdm bars write
    os.write(1, b"Applying Fast Bias correction\\n")     # straight to fd 1, as C++ code does
    assert opts.max_images == 5
    return BenchReport("best.pt", "data", (64, 64), 1, 1, 1, [BenchRow("best.pt", "onnx", map50_95=0.5)],
                       val_images=5, val_images_total=448), Path({str(tmp_path)!r})

cmd.run_benchmark = fake_run
from mnv3det.cli import app
sys.argv = ["mnv3det", "benchmark", "--weights", "best.pt", "--max-images", "5", "--json"]
app()
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout
    assert report["subset"] is True and report["val_images"] == 5 and report["val_images_total"] == 448
    assert "Statistics collection" in done.stderr and "Applying Fast Bias correction" in done.stderr


def test_benchmark_table_says_when_it_is_a_subset():
    from mnv3det.cli.benchmark_cmd import benchmark_table
    from mnv3det.deploy.benchmark import BenchReport

    subset = BenchReport("best.pt", "data", (64, 64), 1, 1, 1, [], val_images=50, val_images_total=448)
    full = BenchReport("best.pt", "data", (64, 64), 1, 1, 1, [], val_images=448, val_images_total=448)
    assert "a subset: 50 of 448 val images" in str(benchmark_table(subset).title)
    assert "subset" not in str(benchmark_table(full).title) and "448 val images" in str(benchmark_table(full).title)


def test_no_fork_after_jax_once_litert_is_loaded():
    """JAX (LiteRT's converter) warns that a fork after it started threads may deadlock; after spawn_children a
    multiprocessing child (a DataLoader worker, a library's pool) is spawned instead and JAX has nothing to say."""
    import subprocess
    import sys

    pytest.importorskip("jax", reason="the litert extra (jax) is not installed")
    code = """
import multiprocessing, warnings
warnings.simplefilter("always")
import jax.numpy as jnp
jnp.ones(2).block_until_ready()  # JAX's threads are running
from mnv3det.core.streams import spawn_children
spawn_children()
child = multiprocessing.Process(target=abs, args=(1,))
child.start(); child.join()
print("start method", multiprocessing.get_start_method())
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "start method spawn" in done.stdout
    assert "os.fork() was called" not in done.stderr


# --- A.3 (g): the demo set says where it was written, once ------------------------------------------------------

def test_demo_set_says_where_it_was_written_the_first_time(tmp_path, monkeypatch, capsys):
    from mnv3det.data import demo

    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "DEMO_SPLITS", {"train": 2, "val": 1})  # a tiny set: the message, not the images
    first = demo.demo_data_yaml()
    said = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(said) == 1 and "demo set: wrote 2 train / 1 val images" in said[0]
    assert str(first.parent) in said[0]
    assert demo.demo_data_yaml() == first
    assert capsys.readouterr().err == ""  # found current: nothing to say
