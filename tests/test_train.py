"""End-to-end training on the built-in demo set (tiny: few images, imgsz 64-128, 1-2 epochs)."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.train.config import TrainConfig
from mnv3det.train import loss, results, setup, trainer
from mnv3det.core.checkpoint import load_checkpoint
from mnv3det.models.checkpoint import load_model
from mnv3det.train.resume import config_for_resume
from mnv3det.models.transfer import transfer_detector
from mnv3det.train.trainer import fit
from mnv3det.errors import UserError
from mnv3det.models import build_model


def tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(epochs=2, imgsz=128, batch=8, max_images=16, workers=0, device="cpu", threads=1,
                project=str(tmp_path / "runs"), plots=False)
    return TrainConfig(**{**base, **kw})


def _csv_rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_train_two_epochs_writes_run_and_checkpoints_load(tmp_path):
    result = fit(tiny(tmp_path, plots=True), show_progress=False)
    run = result.run_dir
    assert run == tmp_path / "runs" / "exp" and result.epochs_done == 2
    for name in ("config.yaml", "results.csv", "results.png", "labels.png", "weights/last.pt", "weights/best.pt"):
        assert (run / name).is_file(), name
    rows = _csv_rows(run / "results.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["metrics/mAP50-95"] != "" for r in rows)
    assert [h["epoch"] for h in result.history] == [1, 2]  # counted as the log counts ("epoch 1/2")
    assert all(float(r["train/box_loss"]) > 0 for r in rows)

    last = load_checkpoint(run / "weights/last.pt")  # weights_only=True
    assert last.epoch == 1 and last.resume.optimizer is not None and last.config["epochs"] == 2
    assert last.names == ["circle", "square", "triangle", "cross"] and last.resume.ema_updates >= 1
    model, ckpt = load_model(run / "weights/best.pt")
    assert ckpt.resume is None
    with torch.no_grad():
        out = model(torch.rand(1, 3, 128, 128))
    assert out.shape[0] == 1 and out.shape[-1] == 5 + 4
    rebuilt = build_model(last.recipe, nc=last.nc)
    rebuilt.load_state_dict(last.model)  # EMA weights fit the recipe stored beside them
    assert torch.equal(rebuilt.detect.anchors, model.detect.anchors)

    # A finished run says so instead of training again.
    cfg, _ = config_for_resume(run / "weights/last.pt")
    with pytest.raises(UserError, match="already finished"):
        fit(cfg, resume=run / "weights/last.pt", show_progress=False)


def test_same_seed_gives_same_losses(tmp_path):
    a = fit(tiny(tmp_path, epochs=1, imgsz=64, name="a"), show_progress=False)
    b = fit(tiny(tmp_path, epochs=1, imgsz=64, name="b"), show_progress=False)
    losses = lambda r: [r.history[0][k] for k in ("train/box_loss", "train/obj_loss", "train/cls_loss")]  # noqa: E731
    assert losses(a) == losses(b)
    c = fit(tiny(tmp_path, epochs=1, imgsz=64, name="c", seed=1), show_progress=False)
    assert losses(c) != losses(a)


@pytest.mark.slow
def test_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, imgsz=64, epochs=3, nbs=8, warmup_epochs=0)
    real = trainer.train_one_epoch

    def crash_in_second_epoch(state, loader, epoch, *a, **kw):
        if epoch == 1:
            raise KeyboardInterrupt  # the run dies after last.pt of epoch 1 was written
        return real(state, loader, epoch, *a, **kw)

    monkeypatch.setattr(trainer, "train_one_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, show_progress=False)
    monkeypatch.setattr(trainer, "train_one_epoch", real)
    last = tmp_path / "runs" / "exp" / "weights" / "last.pt"
    before = load_checkpoint(last)
    assert before.epoch == 0 and not before.resume.finished

    resumed_cfg, _ = config_for_resume(last, {"workers": 0})
    result = fit(resumed_cfg, resume=last, show_progress=False)
    after = load_checkpoint(last)
    assert result.run_dir == last.parent.parent and result.epochs_done == 3
    assert after.epoch == 2 and after.resume.finished
    assert after.resume.ema_updates == before.resume.ema_updates + 4  # 2 epochs x (16 images / nbs 8) steps
    resumed_rows = _csv_rows(last.parent.parent / "results.csv")
    assert [r["epoch"] for r in resumed_rows] == ["1", "2", "3"]
    # The lr schedule continues as in a run that was never interrupted.
    unbroken = fit(tiny(tmp_path, imgsz=64, epochs=3, nbs=8, warmup_epochs=0, name="unbroken"), show_progress=False)
    reference = _csv_rows(unbroken.run_dir / "results.csv")
    for key in ("lr/decay", "lr/bias", "lr/norm"):
        assert [float(r[key]) for r in resumed_rows] == pytest.approx([float(r[key]) for r in reference])
    with pytest.raises(UserError, match="cannot change"):
        config_for_resume(last, {"epochs": 5})


def test_transfer_keeps_box_and_objectness_rows_when_the_class_count_changes():
    torch.manual_seed(0)
    src = build_model("mnv3-small", nc=4)
    dst = build_model("mnv3-small", nc=2)
    fresh = {k: v.clone() for k, v in dst.state_dict().items()}
    report = transfer_detector(dst, src.state_dict(), 4, "src", strict=True, recipe=src.recipe)
    detect = f"layers.{len(dst.layers) - 1}.m."
    assert report.skipped == [] and report.class_rows and all(k.startswith(detect) for k in report.class_rows)
    assert report.loaded + len(report.class_rows) == len(dst.state_dict())
    for key in report.class_rows:  # per anchor: rows [x, y, w, h, obj] from the source, class rows left fresh
        got = dst.state_dict()[key].view(3, 5 + 2, -1)
        assert torch.equal(got[:, :5], src.state_dict()[key].view(3, 5 + 4, -1)[:, :5])
        assert torch.equal(got[:, 5:], fresh[key].view(3, 5 + 2, -1)[:, 5:])
    name = next(k for k in dst.state_dict() if k.endswith("weight") and not k.startswith(detect))
    assert torch.equal(dst.state_dict()[name], src.state_dict()[name])


def test_cli_train_runs_and_bad_options_are_clear(tmp_path):
    runner = CliRunner()
    args = ["train", "--device", "cpu", "--epochs", "1", "--imgsz", "64", "--batch", "4", "--max-images", "4",
            "--workers", "0", "--threads", "1", "--project", str(tmp_path), "--no-plots"]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "exp" / "weights" / "last.pt").is_file()
    # no --data and no --hyp: the demo set with the hyp.demo preset, command-line options still winning
    assert "hyp.demo" in ok.output
    saved = yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())
    assert saved["optimizer"] == "AdamW" and saved["nbs"] == 16  # from recipes/hyp.demo.yaml
    assert saved["imgsz"] == 64 and saved["epochs"] == 1  # the CLI's values, not the preset's
    # --weights from that run into a second one: everything fits (same classes)
    again = runner.invoke(app, args + ["--weights", str(tmp_path / "exp" / "weights" / "last.pt"), "--freeze", "3"])
    assert again.exit_code == 0, again.output
    assert "tensors loaded" in again.output and "rows 0..2 frozen" in again.output
    for bad, words in (
        (["--imgsz", "100"], "multiple of 32"),
        (["--backbone", "huge"], "--backbone 'huge'"),
        (["--hyp", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (["--optimizer", "lion"], "SGD or AdamW"),
    ):
        res = runner.invoke(app, args + bad)
        assert res.exit_code == 2 and words in res.output, res.output


class _FixedResult:
    """Stands in for an EvalResult whose fitness never improves."""

    map50 = map = precision = recall = fitness = 0.25


def test_early_stopping_with_patience(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "_validate", lambda *a, **kw: (_FixedResult(), None))  # (result, val losses)
    result = fit(tiny(tmp_path, imgsz=64, max_images=8, epochs=5, patience=2), show_progress=False)
    assert result.epochs_done == 3 and "early stop" in result.stop_reason
    assert result.best_fitness == pytest.approx(0.25)
    last = load_checkpoint(result.last)
    assert last.resume.finished and "early stop" in last.resume.stop_reason


def test_nonfinite_losses_are_skipped_then_stop_the_run(tmp_path, monkeypatch):
    real_forward = loss.YoloLoss.forward

    def nan_loss(self, preds, targets):
        total, items = real_forward(self, preds, targets)
        return total * float("nan"), items

    monkeypatch.setattr(loss.YoloLoss, "forward", nan_loss)
    with pytest.raises(UserError, match="non-finite loss") as err:
        fit(tiny(tmp_path, imgsz=64, max_images=8, batch=2, epochs=2, max_nonfinite=3), show_progress=False)
    assert "--lr0" in str(err.value)


def test_a_nan_gradient_under_a_finite_loss_skips_the_step_and_leaves_the_weights_finite(tmp_path, monkeypatch):
    real_forward = loss.YoloLoss.forward
    calls = []

    def nan_gradient_once(self, preds, targets):
        total, items = real_forward(self, preds, targets)
        calls.append(1)
        if len(calls) == 1:  # sqrt at 0: the value is unchanged, its gradient (inf x 0) is NaN everywhere
            total = total + torch.sqrt(total * 0.0)
        return total, items

    monkeypatch.setattr(loss.YoloLoss, "forward", nan_gradient_once)
    result = fit(tiny(tmp_path, imgsz=64, max_images=8, batch=2, epochs=1), show_progress=False)
    model, _ = load_model(result.last)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(torch.isfinite(b).all() for b in model.buffers() if b.is_floating_point())
    assert [r["skipped_steps"] for r in _csv_rows(result.run_dir / "results.csv")] == ["1"]


def test_resume_trims_results_rows_it_will_redo(tmp_path):
    path = tmp_path / "results.csv"
    for epoch in range(3):  # loop indices 0..2 -> rows "epoch" 1..3
        results.append_results(path, results_row_for(epoch, 0.1 * epoch))
    results.trim_results(path, first_epoch=2)  # two epochs done: rows 1 and 2 stay
    assert [r["epoch"] for r in _csv_rows(path)] == ["1", "2"]
    assert float(_csv_rows(path)[1]["train/box_loss"]) == pytest.approx(0.1)


def test_resume_renumbers_a_results_csv_that_counted_from_0(tmp_path):
    path = tmp_path / "results.csv"
    for epoch in range(3):  # the layout before: "epoch" 0..2
        results.append_results(path, {"epoch": epoch, "train/box_loss": 0.1 * epoch})
    results.trim_results(path, first_epoch=2)
    assert [r["epoch"] for r in _csv_rows(path)] == ["1", "2"]
    assert float(_csv_rows(path)[1]["train/box_loss"]) == pytest.approx(0.1)


def results_row_for(epoch: int, box_loss: float) -> dict:
    from types import SimpleNamespace

    stats = SimpleNamespace(losses=(box_loss, 0.0, 0.0), names=("box", "obj", "cls"), images_per_s=1.0, seconds=1.0, skipped=0)
    return results.results_row(epoch, stats, None, {})


def test_backbone_weights_and_freeze_reach_the_training_model(tmp_path):
    from rich.console import Console
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(0)
    source = tmp_path / "mnv3s.pt"
    tv_state = mobilenet_v3_small(weights=None).state_dict()  # random weights: nothing is downloaded
    torch.save(tv_state, source)
    cfg = tiny(tmp_path, backbone_weights=str(source), freeze=4)
    model = setup.build_training_model(cfg, ["a", "b"], Console(quiet=True))
    assert torch.equal(model.state_dict()["layers.3.block.0.0.weight"], tv_state["features.3.block.0.0.weight"])
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(int(n.split(".")[1]) < 4 for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if int(n.split(".")[1]) >= 4)


def test_an_epoch_without_an_optimizer_step_moves_the_schedule_without_a_warning():
    """A resumed or tiny run can end an epoch before its first optimizer step (gradients accumulate to the nominal
    batch); the per-epoch schedule must still move, and torch's ordering warning is noise there."""
    import warnings

    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0 / (epoch + 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scheduler.step()  # what the trainer did: torch warns
    assert any("lr_scheduler.step()" in str(w.message) for w in caught)
    scheduler = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD(params, lr=1.0), lambda epoch: 1.0 / (epoch + 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.step_scheduler(scheduler)
    assert not caught
    assert scheduler.get_last_lr() == [0.5]  # moved to epoch 1
