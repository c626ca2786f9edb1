"""One-line errors for yaml syntax in hyp and recipe files; user text in errors is printed literally."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mnv3det.cli import app

runner = CliRunner()


def _broken_yaml(path: Path) -> Path:
    path.write_text("lr0: 0.01\nmomentum: [0.9\nweight_decay: 0.0005\n")  # an unclosed [
    return path


def test_hyp_yaml_syntax_error_is_one_line_with_line_and_column(tmp_path: Path):
    hyp = _broken_yaml(tmp_path / "hyp.bad.yaml")
    result = runner.invoke(app, ["train", "--hyp", str(hyp), "--project", str(tmp_path / "runs")])
    assert result.exit_code == 2
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    assert f"--hyp {hyp}, line" in message and "column" in message
    assert not (tmp_path / "runs").exists()


def test_recipe_yaml_syntax_error_is_one_line(tmp_path: Path):
    recipe = _broken_yaml(tmp_path / "net.yaml")
    result = runner.invoke(app, ["profile", "--recipe", str(recipe), "--runs", "0"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert f"recipe {recipe}, line" in result.output


def test_error_text_with_brackets_is_printed_literally(tmp_path: Path):
    # rich would swallow "[b]" as markup; the path must appear exactly as the user typed it
    missing = tmp_path / "[b]weights.pt"
    result = runner.invoke(app, ["val", "--weights", str(missing)])
    assert result.exit_code == 2
    assert "[b]weights.pt" in result.output


def test_profile_threads_default_to_the_available_cores(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    result = runner.invoke(app, ["profile", "--imgsz", "64", "--runs", "1", "--json"])
    assert result.exit_code == 0, result.output
    import json

    assert json.loads(result.output)["profile"]["threads"] == 1


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                     "tried to allocate 120000000000 bytes. Error code 12 (Cannot allocate memory)"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        MemoryError(),
    ],
)
def test_running_out_of_memory_is_a_message_that_says_what_to_lower(error: BaseException, monkeypatch):
    def allocate(*args, **kwargs):
        raise error

    monkeypatch.setattr("mnv3det.cli.profile_cmd.profile_models", allocate)
    result = runner.invoke(app, ["profile", "--recipe", "yolov5n", "--runs", "0"])
    assert result.exit_code == 2
    assert "out of memory" in result.output and "smaller --imgsz or --batch" in result.output
    assert "Traceback" not in result.output


def test_other_runtime_errors_keep_their_traceback(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch: a bug, not the user's doing")

    monkeypatch.setattr("mnv3det.cli.profile_cmd.profile_models", broken)
    result = runner.invoke(app, ["profile", "--recipe", "yolov5n", "--runs", "0"])
    assert isinstance(result.exception, RuntimeError) and "shape mismatch" in str(result.exception)


# ---------------------------------------------------------------- user strings are printed as they are, never as markup

MARKED = ["person [crowd]", "[/]dot"]  # "[/]" closes nothing: rich raises MarkupError when it reads it as markup


def _marked_checkpoint(path: Path) -> Path:
    from mnv3det.core.checkpoint import save_checkpoint
    from mnv3det.models import build_model

    torch.manual_seed(0)
    model = build_model("mnv3-small-min", nc=len(MARKED))
    return save_checkpoint({"recipe": model.recipe, "nc": len(MARKED), "names": MARKED, "model": model.state_dict(),
                            "epoch": -1}, path)


def test_val_prints_class_names_with_markup_as_they_are(tmp_path: Path):
    import cv2
    import numpy as np

    root = tmp_path / "data"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(root / "images" / split / f"{k}.jpg"), np.full((64, 64, 3), 90 + 40 * k, np.uint8))
            (root / "labels" / split / f"{k}.txt").write_text(f"{k} 0.5 0.5 0.4 0.4\n")
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: '{MARKED[0]}'\n  1: '{MARKED[1]}'\n")
    weights = _marked_checkpoint(tmp_path / "[b]w.pt")
    result = runner.invoke(app, ["val", "-w", str(weights), "--data", str(yaml), "--imgsz", "64", "--no-plots",
                                 "--project", str(tmp_path / "[b]runs"), "--workers", "0"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in MARKED) and "[b]runs" in result.output


def test_export_prints_paths_with_markup_as_they_are(tmp_path: Path):
    folder = tmp_path / "[bold]models"  # a name cannot hold "/": markup here would vanish rather than crash
    folder.mkdir()
    weights = _marked_checkpoint(folder / "best.pt")
    result = runner.invoke(app, ["export", "-w", str(weights), "--imgsz", "64", "--runs", "1"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "[bold]models" in result.output


def test_benchmark_table_prints_paths_and_notes_as_they_are():
    import io

    from rich.console import Console

    from mnv3det.cli.benchmark_cmd import benchmark_table
    from mnv3det.deploy.benchmark import BenchReport, BenchRow

    report = BenchReport("[/]w/best.pt", "data", (64, 64), 1, 1, 1,
                         [BenchRow("model", "onnx", note="export failed: [/] in a message")])
    out = io.StringIO()
    Console(file=out, width=300).print(benchmark_table(report))
    assert "[/]w/best.pt" in out.getvalue() and "export failed: [/] in a message" in out.getvalue()


@pytest.mark.parametrize("command", ["val", "detect", "export", "benchmark"])
def test_a_mistyped_weights_path_suggests_the_file_beside_it(command: str, tmp_path: Path):
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("best.pt", "last.pt", "notes.txt"):
        (weights / name).write_bytes(b"")
    if command == "detect":  # detect reads its source first
        import cv2
        import numpy as np

        cv2.imwrite(str(tmp_path / "img.jpg"), np.zeros((32, 32, 3), np.uint8))
    args = [command, *([str(tmp_path / "img.jpg")] if command == "detect" else []), "--weights", str(weights / "bset.pt")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert f"bset.pt does not exist (did you mean {weights / 'best.pt'}" in message
    assert "notes.txt" not in message
    if command in ("val", "detect"):  # the export suffixes are listed once each, ".pt" not among them twice
        assert message.count(".pt") == message.count("bset.pt") + message.count("best.pt") + message.count("last.pt") + 1
