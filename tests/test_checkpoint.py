"""The typed checkpoint: round trip, old format, clear one-line errors for damaged files, file mode."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.core.checkpoint import (
    FORMAT, Checkpoint, DataInfo, ResumeState, load_checkpoint, remove_stale_temporaries, save_checkpoint,
)
from mnv3det.models.checkpoint import load_model
from mnv3det.errors import UserError
from mnv3det.models import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("mnv3-small", nc=2)


def _ckpt(model, **kw) -> Checkpoint:
    return Checkpoint(recipe=model.recipe, nc=2, names=["a", "b"], model=model.state_dict(), **kw)


def _resume(model) -> ResumeState:
    return ResumeState(train_model=model.state_dict(), optimizer={"state": {}, "param_groups": []}, scaler=None,
                       ema_updates=7, rng={}, best_epoch=3, last_opt_step=40, nonfinite_steps=1, finished=False)


def test_round_trip_keeps_every_field(tmp_path, model):
    data = DataInfo(names=["a", "b"], category_ids=[1, 3], format="coco", source="x.json")
    ckpt = _ckpt(model, epoch=4, best_fitness=0.5, config={"imgsz": 96, "recipe": "mnv3-small"}, data=data,
                 resume=_resume(model))
    loaded = load_checkpoint(save_checkpoint(ckpt, tmp_path / "last.pt"))
    assert (loaded.epoch, loaded.best_fitness, loaded.data, loaded.train_imgsz, loaded.train_recipe) == (
        4, 0.5, data, 96, "mnv3-small")
    assert loaded.resume.ema_updates == 7 and loaded.resume.best_epoch == 3 and not loaded.resume.finished
    assert loaded.for_inference().resume is None
    raw = torch.load(tmp_path / "last.pt", weights_only=True)
    assert raw["format"] == FORMAT and set(raw["resume"]) >= {"optimizer", "rng", "train_model"}


def test_files_of_format_1_still_load(tmp_path, model):
    old = {"format": "mnv3det/1", "recipe": model.recipe, "nc": 2, "names": ["a", "b"], "model": model.state_dict(),
           "epoch": 2, "best_fitness": 0.3, "optimizer": {"state": {}, "param_groups": []}, "scaler": None,
           "ema_updates": 5, "rng": None, "config": {"imgsz": 64}, "data": None,
           "resume": {"train_model": model.state_dict(), "best_epoch": 1, "last_opt_step": 9, "nonfinite_steps": 0,
                      "finished": False, "stop_reason": ""}}
    torch.save(old, tmp_path / "last.pt")
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.epoch == 2 and ckpt.resume.ema_updates == 5 and ckpt.resume.best_epoch == 1 and ckpt.train_imgsz == 64
    torch.save({**old, "optimizer": None, "resume": None, "config": None}, tmp_path / "best.pt")  # format-1 best.pt
    best = load_checkpoint(tmp_path / "best.pt")
    assert best.resume is None and best.config == {}
    assert load_model(tmp_path / "best.pt")[0].names == ["a", "b"]


@pytest.mark.parametrize("damage, words", [
    (lambda d: d.pop("recipe"), "misses recipe"),
    (lambda d: d.update(modle={}), "unknown keys modle"),
    (lambda d: d["resume"].pop("optimizer"), "misses resume.optimizer"),
    (lambda d: d.update(names=["a"]), "names has 1 entries for nc 2"),
    (lambda d: d.update(format="mnv3det/9"), "is not an mnv3det checkpoint"),
])
def test_damaged_files_get_one_line_errors(tmp_path, model, damage, words):
    raw = _ckpt(model, resume=_resume(model)).to_dict()
    damage(raw)
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "bad.pt")
    assert words in str(err.value) and str(tmp_path / "bad.pt") in str(err.value) and "\n" not in str(err.value)


def test_weights_of_another_shape_are_a_user_error_not_a_runtime_error(tmp_path, model):
    other = build_model("mnv3-small", nc=3).state_dict()  # Detect convs of another shape
    save_checkpoint(_ckpt(model).to_dict() | {"model": other}, tmp_path / "w.pt")
    with pytest.raises(UserError, match="do not fit the model its recipe builds"):
        load_model(tmp_path / "w.pt")
    res = CliRunner().invoke(app, ["export", "--weights", str(tmp_path / "w.pt")])
    assert res.exit_code == 2 and "do not fit" in res.output and "Traceback" not in res.output


def test_checkpoint_file_mode_follows_the_umask(tmp_path, model):
    old = os.umask(0o022)
    try:
        path = save_checkpoint(_ckpt(model), tmp_path / "best.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp gave 0600: unreadable for the user's group


def test_stale_temporaries_are_removed(tmp_path, model):
    stale = tmp_path / ".last.pt.1a2b3c4d.tmp"
    stale.write_bytes(b"half a checkpoint")
    keep = save_checkpoint(_ckpt(model), tmp_path / "last.pt")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and keep.exists()


@pytest.mark.parametrize(
    "failure",
    [OSError(28, "No space left on device"),  # what a full disk raises from write()
     RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1024 vs 512\n"
                  "PytorchStreamWriter failed writing file data/3: file write failed")],  # what torch.save raises
)
def test_a_failed_write_is_a_clear_error_and_keeps_the_earlier_file(tmp_path, model, monkeypatch, failure):
    earlier = save_checkpoint(_ckpt(model, epoch=1), tmp_path / "last.pt")

    def fail(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise failure

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(UserError, match=r"could not write checkpoint .*last\.pt \(.*(No space left|write failed).*--resume"):
        save_checkpoint(_ckpt(model, epoch=2), earlier)
    monkeypatch.undo()
    assert load_checkpoint(earlier).epoch == 1  # the earlier file is whole
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # and no temporary is left behind
