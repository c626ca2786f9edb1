"""Training runs and their folders: failed starts, --exist-ok, --resume checks, kills, Ctrl-C, progress, plots."""

from __future__ import annotations

import io
from pathlib import Path
import shutil

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.core.checkpoint import load_checkpoint
from mnv3det.errors import UserError
from mnv3det.train import loss, progress, trainer
from mnv3det.train.config import TrainConfig
from mnv3det.train.resume import config_for_resume
from mnv3det.train.trainer import fit


def tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(epochs=1, imgsz=64, batch=4, max_images=8, workers=0, device="cpu", threads=1,
                project=str(tmp_path / "runs"), plots=False, autoanchor=False)
    return TrainConfig(**{**base, **kw})


def _epochs(csv_path) -> list[str]:
    return [line.split(",")[0] for line in csv_path.read_text().splitlines()[1:]]


def _captured() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=250, force_terminal=False), out


@pytest.mark.parametrize("bad", [dict(data="missing.yaml"), dict(weights="missing.pt"), dict(freeze=99)])
def test_a_failed_start_leaves_no_run_folder_and_prints_no_config(tmp_path, bad):
    console, out = _captured()
    with pytest.raises(UserError):
        fit(tiny(tmp_path, **bad), console=console, show_progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert "training config" not in out.getvalue()


def test_exist_ok_starts_a_fresh_results_csv(tmp_path):
    first = fit(tiny(tmp_path, exist_ok=True), show_progress=False)
    again = fit(tiny(tmp_path, exist_ok=True), show_progress=False)
    assert again.run_dir == first.run_dir
    assert _epochs(again.run_dir / "results.csv") == ["1"]  # not two "epoch 1" rows of two runs


def test_resume_refuses_a_last_pt_outside_its_run_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "run_epochs", _interrupt_after_first_epoch(trainer.run_epochs))
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(tmp_path, epochs=2), show_progress=False)
    downloads = tmp_path / "home" / "downloads"
    downloads.mkdir(parents=True)
    shutil.copy(tmp_path / "runs" / "exp" / "weights" / "last.pt", downloads / "last.pt")
    (tmp_path / "home" / "config.yaml").write_text("mine: 1\n")
    cfg, _ = config_for_resume(downloads / "last.pt")
    with pytest.raises(UserError, match="not inside its run folder"):
        fit(cfg, resume=downloads / "last.pt", show_progress=False)
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["config.yaml", "downloads"]
    assert (tmp_path / "home" / "config.yaml").read_text() == "mine: 1\n"


def _interrupt_after_first_epoch(real):
    def run(run_ctx, parts, cfg, start_epoch, *a, **kw):
        cfg_one = TrainConfig(**{**cfg.to_dict(), "epochs": start_epoch + 1})
        real(run_ctx, parts, cfg_one, start_epoch, *a, **kw)
        raise KeyboardInterrupt
    return run


class _Result:
    def __init__(self, fitness):
        self.map50 = self.map = self.precision = self.recall = self.fitness = fitness


def test_kill_between_last_and_best_is_repaired_on_resume(tmp_path, monkeypatch):
    fitness = iter([0.1, 0.2, 0.15])  # epoch 2 is the best and never beaten
    monkeypatch.setattr(trainer, "_validate", lambda *a, **kw: (_Result(next(fitness)), None))
    real_save = trainer.save_checkpoint
    saves = []

    def killed_before_second_best(ckpt, path):
        saves.append(path.name)
        if saves.count("best.pt") == 2:  # the process dies after last.pt of epoch 2, before its best.pt
            raise KeyboardInterrupt
        return real_save(ckpt, path)

    monkeypatch.setattr(trainer, "save_checkpoint", killed_before_second_best)
    console, out = _captured()
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(tmp_path, epochs=3), console=console, show_progress=False)
    weights = tmp_path / "runs" / "exp" / "weights"
    assert load_checkpoint(weights / "best.pt").epoch == 0 and load_checkpoint(weights / "last.pt").epoch == 1
    assert f"holds epoch 2/3; continue with: mnv3det train --resume {tmp_path / 'runs' / 'exp'}" in out.getvalue()
    stale = weights / ".last.pt.0badf00d.tmp"  # what a kill -9 during a save leaves
    stale.write_bytes(b"x" * 100)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    cfg, _ = config_for_resume(weights / "last.pt")
    result = fit(cfg, resume=weights / "last.pt", show_progress=False)
    best = load_checkpoint(weights / "best.pt")
    assert best.epoch == 1 and best.best_fitness == pytest.approx(0.2) and result.best_fitness == pytest.approx(0.2)
    assert not stale.exists()


def test_ctrl_c_prints_where_and_how_to_resume_and_exits_130(tmp_path, monkeypatch):
    real = loss.YoloLoss.forward
    calls = []

    def interrupted(self, preds, targets):
        if torch.is_grad_enabled():  # training batches only (validation scores its val loss without gradients)
            calls.append(1)
        if len(calls) == 4:  # epoch 2, batch 2 (2 batches per epoch)
            raise KeyboardInterrupt
        return real(self, preds, targets)

    monkeypatch.setattr(loss.YoloLoss, "forward", interrupted)
    args = ["train", "--device", "cpu", "--epochs", "3", "--imgsz", "64", "--batch", "4", "--max-images", "8",
            "--workers", "0", "--threads", "1", "--project", str(tmp_path), "--no-plots", "--no-autoanchor"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 130, res.output
    line = [x for x in res.output.splitlines() if x.startswith("interrupted")]
    assert line and "in epoch 2/3, batch 2" in line[0] and "holds epoch 1/3" in line[0]
    assert f"mnv3det train --resume {tmp_path / 'exp'}" in line[0]


def test_progress_lines_when_output_is_not_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    monkeypatch.setattr(progress, "REFRESH_S", 0.0)
    console, out = _captured()
    fit(tiny(tmp_path, max_images=12), console=console, show_progress=True)
    lines = [x for x in out.getvalue().splitlines() if x.startswith("epoch 1/1 batch")]
    assert lines and "img/s" in lines[0] and "ETA" in lines[0] and "batch 1/3" in lines[0]


def test_train_batch_plots_and_results_plot_from_epoch_1(tmp_path):
    from mnv3det.train.plots import results_series

    run = fit(tiny(tmp_path, epochs=2, max_images=16, plots=True), show_progress=False).run_dir
    assert all((run / f"train_batch{i}.jpg").is_file() for i in range(3)) and not (run / "train_batch3.jpg").exists()
    epochs, _ = results_series(run / "results.csv")["train/box_loss"]
    assert list(epochs) == [1, 2]  # as the log counts them
    quiet = fit(tiny(tmp_path, max_images=16, name="quiet"), show_progress=False).run_dir
    assert not list(quiet.glob("train_batch*.jpg"))


def test_python_api_trains_and_returns_the_result(tmp_path):
    import mnv3det
    import mnv3det.train.config  # noqa: F401  (importing a submodule must not hide the API)

    result = mnv3det.train(data=None, hyp="hyp.scratch", **{k: v for k, v in tiny(tmp_path).to_dict().items()
                                                            if k in ("epochs", "imgsz", "batch", "max_images", "workers",
                                                                     "device", "threads", "project", "plots")},
                           progress=False)
    assert result.epochs_done == 1 and result.last.is_file() and result.run_dir == tmp_path / "runs" / "exp"
    import json

    payload = json.loads(result.to_json())
    assert payload["last"] == str(result.last) and [row["epoch"] for row in payload["history"]] == [1]
    assert payload["final_eval"]["source"] == "pycocotools"
    with pytest.raises(UserError, match="unknown setting"):
        mnv3det.train(epoch=3)


def test_every_config_option_of_the_cli_reaches_the_config():
    from mnv3det.cli import train_cmd

    code = train_cmd.train_command.__code__
    params = set(code.co_varnames[: code.co_argcount])
    mapped = params & train_cmd.CONFIG_FIELDS
    assert params - mapped == {"ctx", "backbone", "hyp", "resume", "resume_path"}  # the only non-config options


def test_cli_project_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    res = CliRunner().invoke(app, ["train", "--device", "cpu", "--epochs", "1", "--imgsz", "64", "--batch", "4",
                                   "--max-images", "4", "--workers", "0", "--project", str(tmp_path / "file" / "runs")])
    assert res.exit_code == 2 and "--project" in res.output and "Traceback" not in res.output, res.output


def test_non_finite_weights_are_never_saved_and_stop_the_run(tmp_path, monkeypatch):
    real = trainer.train_one_epoch

    def diverging(state, loader, epoch, *a, **kw):
        stats = real(state, loader, epoch, *a, **kw)
        if epoch == 1:  # what an lr0 of inf does to the weights
            with torch.no_grad():
                next(state.ema.module.parameters()).fill_(float("nan"))
        return stats

    monkeypatch.setattr(trainer, "train_one_epoch", diverging)
    with pytest.raises(UserError) as err:  # no val split: best.pt would follow last.pt
        fit(tiny(tmp_path, epochs=3, val_split="none"), show_progress=False)
    assert "diverged in epoch 2/3" in str(err.value) and "not finite" in str(err.value)
    weights = tmp_path / "runs" / "exp" / "weights"
    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(weights / name)
        assert ckpt.epoch == 0 and all(t.isfinite().all() for t in ckpt.model.values() if t.is_floating_point())


def test_detect_and_val_refuse_a_checkpoint_with_non_finite_weights(tmp_path):
    from mnv3det.core.checkpoint import save_checkpoint
    from mnv3det.models import build_model

    model = build_model("mnv3-small-min", nc=2)
    state = model.state_dict()
    next(v for v in state.values() if v.is_floating_point()).view(-1)[0] = float("inf")
    weights = save_checkpoint({"recipe": model.recipe, "nc": 2, "names": ["a", "b"], "model": state, "epoch": -1},
                              tmp_path / "nan.pt")
    image = tmp_path / "im.jpg"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.full((64, 64, 3), 127, np.uint8))
    runner = CliRunner()
    for args in (["detect", str(image), "--project", str(tmp_path / "d")], ["val", "--project", str(tmp_path / "v")]):
        result = runner.invoke(app, [*args, "--weights", str(weights)])
        assert result.exit_code == 2, result.output
        assert "1 of" in result.output and "not finite" in result.output and "Traceback" not in result.output


def test_a_run_ends_with_the_pycocotools_result_and_three_commands_quoted_for_a_shell(tmp_path):
    import shlex

    console, out = _captured()
    result = fit(tiny(tmp_path, project=str(tmp_path / "my runs")), console=console, show_progress=False)
    best = tmp_path / "my runs" / "exp" / "weights" / "best.pt"
    assert result.final_eval is not None and result.final_eval.source == "pycocotools"
    lines = out.getvalue().splitlines()
    closing = lines[lines.index("next:") - 1]
    assert closing.startswith("best.pt on val (pycocotools, 8 images): mAP50-95 ")
    assert f"mAP50-95 {result.final_eval.map:.3f}, mAP50 {result.final_eval.map50:.3f}" in closing
    commands = [shlex.split(line) for line in lines[lines.index("next:") + 1:]]
    assert [c[:2] for c in commands] == [["mnv3det", "val"], ["mnv3det", "detect"], ["mnv3det", "export"]]
    assert all(c[c.index("--weights") + 1] == str(best) for c in commands)  # one argument despite the space
    assert Path(commands[1][2]).is_file()  # a real image to try detect on


def _metrics(csv_path) -> list[dict[str, str]]:
    """results.csv rows without the timing columns (those differ between any two runs)."""
    import csv

    with open(csv_path) as f:
        return [{k: v for k, v in row.items() if k not in ("images_per_s", "epoch_s")} for row in csv.DictReader(f)]


def test_a_run_interrupted_mid_epoch_and_resumed_equals_the_unbroken_run(tmp_path, monkeypatch):
    """Mosaic and the other augmentations on: the resumed epochs draw what the unbroken run drew."""
    settings = dict(epochs=3, max_images=8, close_mosaic=0, mosaic=1.0)
    whole = fit(tiny(tmp_path / "whole", **settings), show_progress=False)
    real = loss.YoloLoss.forward
    calls = []

    def interrupted(self, preds, targets):
        if torch.is_grad_enabled():  # training batches only (validation scores its val loss without gradients)
            calls.append(1)
        if len(calls) == 3:  # epoch 2, batch 1 (2 batches per epoch): a Ctrl-C mid-epoch
            raise KeyboardInterrupt
        return real(self, preds, targets)

    monkeypatch.setattr(loss.YoloLoss, "forward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(tmp_path / "cut", **settings), show_progress=False)
    monkeypatch.setattr(loss.YoloLoss, "forward", real)
    last = tmp_path / "cut" / "runs" / "exp" / "weights" / "last.pt"
    assert load_checkpoint(last).epoch == 0
    cfg, _ = config_for_resume(last)
    fit(cfg, resume=last, show_progress=False)
    assert _metrics(tmp_path / "cut" / "runs" / "exp" / "results.csv") == _metrics(whole.run_dir / "results.csv")
