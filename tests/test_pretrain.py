"""Synthetic pretraining: the scene generator, `mnv3det pretrain` (tiny budgets, seconds) and pretrained starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.core.checkpoint import load_checkpoint, save_checkpoint
from mnv3det.data import load_data
from mnv3det.data.synth import FAMILIES, SceneConfig, SceneGenerator
from mnv3det.data.synth.dataset import EpochSampler, SceneDataset, validation_set
from mnv3det.data.synth.scene import _visible_boxes
from mnv3det.errors import UserError
from mnv3det.models import build_model
from mnv3det.models.transfer import recipe_row_differences, transfer_detector
from mnv3det.train.pretrain import PretrainOptions, parse_duration, pretrain, release_weights

TINY = dict(imgsz=160, epoch_samples=8, val_images=4, batch=4, workers=0, threads=1, device="cpu")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))  # validation scenes are written under the cache


# -- the generator ----------------------------------------------------------------------------------


def test_a_scene_is_a_pure_function_of_seed_and_index():
    config = SceneConfig(size=160)
    a, b = SceneGenerator(config, seed=3), SceneGenerator(config, seed=3)
    for index in (0, 7, 2**40 + 5):
        sa, sb = a(index), b(index)
        assert np.array_equal(sa.image, sb.image) and np.array_equal(sa.boxes, sb.boxes)
    assert not np.array_equal(a(0).image, SceneGenerator(config, seed=4)(0).image)
    assert not np.array_equal(a(0).image, a(1).image)


def test_scenes_have_boxes_inside_the_image_and_classes_of_the_config():
    config = SceneConfig(size=192, families=("ellipse", "star", "fractal", "glyph"))
    gen = SceneGenerator(config, seed=0)
    counts = []
    for index in range(30):
        scene = gen(index)
        assert scene.image.shape == (192, 192, 3) and scene.image.dtype == np.uint8
        b = scene.boxes
        assert np.all(b[:, :2] >= 0) and np.all(b[:, 2:] <= 192) and np.all(b[:, 2:] > b[:, :2])
        assert set(scene.classes.tolist()) <= {0, 1, 2, 3}
        assert [config.families[c] for c in scene.classes] == [FAMILIES[f] for f in scene.family_ids]
        counts.append(len(b))
    assert min(counts) >= 1 and max(counts) > 4  # 1..16 objects per scene drawn, a few refused for hiding others
    single = SceneGenerator(SceneConfig(size=192, single_class=True), seed=0)(0)
    assert len(single.boxes) and set(single.classes.tolist()) == {0}


def test_a_box_is_the_tight_box_of_the_pixels_still_visible():
    owner = np.zeros((10, 12), np.int16)
    owner[1:7, 2:9] = 1  # object 1: rows 1-6, columns 2-8 ...
    owner[1:7, 6:9] = 2  # ... of which object 2 (18 pixels) now covers columns 6-8
    owner[8, 0] = 3  # object 3: a single pixel left, under the 16-pixel floor: dropped
    boxes, families = _visible_boxes(owner, [5, 9, 2])
    assert families == [5, 9]
    assert boxes.tolist() == [[2, 1, 6, 7], [6, 1, 9, 7]]  # xyxy, exclusive right/bottom


def test_impossible_scene_settings_are_named():
    assert SceneConfig().problems() == []
    problems = SceneConfig(size=96, min_objects=5, max_objects=2, families=("ellipse", "dragon")).problems()
    text = " ".join(problems)
    assert "objects per image 5..2" in text and "dragon" in text and "under 4 px" in text


def test_the_stream_gives_each_epoch_new_scenes_in_a_fixed_order():
    sampler = EpochSampler(4)
    sampler.set_epoch(2)
    assert list(sampler) == [8, 9, 10, 11]
    data = SceneDataset(SceneConfig(size=160), seed=0, per_epoch=4)
    image, labels, name, _ = data[9]
    again = SceneDataset(SceneConfig(size=160), seed=0, per_epoch=4)[9]
    assert torch.equal(image, again[0]) and torch.equal(labels, again[1]) and name == "scene-0-9"
    assert image.shape == (3, 160, 160) and labels.shape[1] == 6
    assert torch.all((labels[:, 2:] > 0) & (labels[:, 2:] <= 1))


def test_the_validation_scenes_are_a_normal_yolo_dataset_written_once(tmp_path):
    config = SceneConfig(size=160)
    first = validation_set(config, seed=0, count=5)
    assert validation_set(config, seed=0, count=5) == first
    spec = load_data(first)
    records = spec.records("val", report=False)
    assert len(records) == 5 and spec.names == list(FAMILIES)
    assert len(spec.records("train", report=False)) == 16  # the first training scenes, to look at
    scene = SceneGenerator(config, seed=0)(2**40)  # the validation stream's first scene
    assert np.allclose(records[0].boxes, scene.boxes, atol=0.01)


# -- mnv3det pretrain ---------------------------------------------------------------------------------


def test_pretrain_writes_a_checkpoint_that_says_how_it_was_made(tmp_path):
    import io

    from rich.console import Console

    log = io.StringIO()
    result = pretrain(PretrainOptions(recipe="mnv3-small-min", samples=16, project=str(tmp_path), **TINY),
                      console=Console(file=log, width=300), progress=False)
    lines = log.getvalue().splitlines()
    first = next(line for line in lines if line.startswith("epoch 1/2"))
    assert "run ETA 0:" in first and "run ETA" not in next(line for line in lines if line.startswith("epoch 2/2"))
    last = load_checkpoint(result.last)
    made = last.provenance
    assert made["kind"] == "synthetic-detection-pretraining" and made["seed"] == 0
    assert made["samples_seen"] == made["samples_budget"] == 16 and made["generator"]["size"] == 160
    assert made["wall_s"] > 0 and made["commit"]
    assert last.nc == len(FAMILIES) and last.config["pretrained"] == "none" and last.epoch == 1
    shipped = load_checkpoint(result.last.parent / "pretrained.pt")
    assert shipped.resume is None and shipped.provenance == made
    assert all(v.dtype == torch.float16 for v in shipped.model.values() if v.is_floating_point())


def test_a_killed_pretraining_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    # nbs = batch: a step per batch (as hyp.pretrain with its batch 16), so no gradient waits across an epoch end
    opts = dict(recipe="mnv3-small-min", samples=24, project=str(tmp_path), extra={"nbs": 4}, **TINY)
    unbroken = pretrain(PretrainOptions(name="unbroken", **opts), progress=False)

    import mnv3det.train.trainer as trainer

    real, calls = trainer.train_one_epoch, []

    def dies_in_the_third_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", dies_in_the_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        pretrain(PretrainOptions(name="killed", **opts), progress=False)
    monkeypatch.setattr(trainer, "train_one_epoch", real)
    assert load_checkpoint(tmp_path / "killed" / "weights" / "last.pt").provenance["samples_seen"] == 16
    with pytest.raises(UserError, match="cannot change"):
        pretrain(PretrainOptions(resume=str(tmp_path / "killed"), samples=99, project=str(tmp_path)), progress=False)
    resumed = pretrain(PretrainOptions(resume=str(tmp_path / "killed"), project=str(tmp_path)), progress=False)
    a, b = load_checkpoint(unbroken.last), load_checkpoint(resumed.last)
    assert b.provenance["samples_seen"] == 24
    for k in a.model:  # the same scenes in the same order: the same weights
        assert torch.allclose(a.model[k].float(), b.model[k].float(), atol=1e-6), k


@pytest.mark.parametrize("args, message", [
    (["--samples", "2"], "smaller than one batch"),
    (["--time", "10s"], "at least one minute"),
    (["--time", "soon"], "give a duration"),
    (["--samples", "64", "--time", "1h"], "either --samples or --time"),
    (["--recipe", "mnv9"], "recipe 'mnv9' not found"),
    (["--families", "ellipse,dragon"], "dragon"),
    (["--objects", "3,1"], "objects per image 3..1"),
    (["--imgsz", "100"], "multiple of 32"),
    (["--imgsz", "128"], "under 4 px at size 128; use a size of 160 or more"),
])
def test_impossible_pretraining_requests_are_one_line_errors(tmp_path, args, message):
    out = CliRunner().invoke(app, ["pretrain", "--project", str(tmp_path), "--device", "cpu", "--workers", "0", *args])
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output
    assert not (tmp_path / "exp").exists()


def test_durations():
    assert parse_duration("90m") == 5400 and parse_duration("1.5h") == 5400 and parse_duration("2h30m") == 9000
    assert parse_duration(120) == 120 and parse_duration("300") == 300


# -- starting a training run from pretrained weights --------------------------------------------------


@pytest.fixture
def pretrained_file(tmp_path):
    """A pretrain-style weights file for mnv3-small-min with 16 classes (random weights: no run needed)."""
    torch.manual_seed(1)
    model = build_model("mnv3-small-min", nc=16)
    from mnv3det.core.checkpoint import Checkpoint

    path = tmp_path / "pre" / "last.pt"
    save_checkpoint(Checkpoint(recipe=model.recipe, nc=16, names=list(FAMILIES), model=model.state_dict(),
                               provenance={"kind": "synthetic-detection-pretraining", "samples_seen": 8}), path)
    return release_weights(path, tmp_path / "pre" / "pretrained.pt")


def _train(tmp_path, *extra: str):
    args = ["train", "--device", "cpu", "--epochs", "1", "--imgsz", "64", "--batch", "4", "--max-images", "4",
            "--workers", "0", "--threads", "1", "--project", str(tmp_path / "runs"), "--no-plots", "--recipe",
            "mnv3-small-min", *extra]
    out = CliRunner().invoke(app, args, env={"COLUMNS": "400"})  # one log line per line: phrases are not wrapped
    return out


def test_a_pretrained_start_loads_everything_but_the_class_rows_and_is_recorded(tmp_path, pretrained_file):
    out = _train(tmp_path, "--pretrained", str(pretrained_file))
    assert out.exit_code == 0, out.output
    assert "Detect tensors loaded for box and objectness, their class rows re-initialised (16 -> 4 classes)" in out.output
    saved = yaml.safe_load((tmp_path / "runs" / "exp" / "config.yaml").read_text())
    assert saved["pretrained"] == str(pretrained_file)
    scratch = _train(tmp_path, "--pretrained", "none")
    assert scratch.exit_code == 0 and "start:" not in scratch.output


def test_a_start_made_for_another_graph_is_refused_with_its_rows(tmp_path, pretrained_file):
    ckpt = load_checkpoint(pretrained_file)
    ckpt.recipe["backbone"][2] = [-1, 1, "MobileNet_Block", [24, 96, 3, 2, False, False]]  # one row changed
    changed = save_checkpoint(ckpt, tmp_path / "changed.pt")
    out = _train(tmp_path, "--pretrained", str(changed))
    assert out.exit_code == 2 and "row 2:" in out.output and "--pretrained none" in out.output
    assert not (tmp_path / "runs" / "exp").exists()
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(pretrained_file.read_bytes()[:1000])
    out = _train(tmp_path, "--pretrained", str(damaged))
    assert out.exit_code == 2 and str(damaged) in out.output and "--pretrained none" in out.output


def test_the_users_own_weights_win_over_the_shipped_start(tmp_path, monkeypatch, pretrained_file):
    import mnv3det.models.shipped as shipped

    monkeypatch.setattr(shipped, "WEIGHTS_DIR", pretrained_file.parent)  # pretend pretrained.pt ships for ...
    (pretrained_file.parent / "mnv3-small-min.pt").write_bytes(pretrained_file.read_bytes())  # ... this recipe
    out = _train(tmp_path)
    assert out.exit_code == 0, out.output
    assert yaml.safe_load((tmp_path / "runs" / "exp" / "config.yaml").read_text())["pretrained"] == "shipped"
    assert "start: " in out.output and "mnv3-small-min.pt" in out.output
    own = _train(tmp_path, "--weights", str(tmp_path / "runs" / "exp" / "weights" / "last.pt"))
    assert own.exit_code == 0, own.output
    assert yaml.safe_load((tmp_path / "runs" / "exp2" / "config.yaml").read_text())["pretrained"] == "none"
    both = _train(tmp_path, "--pretrained", "shipped", "--weights", str(pretrained_file))
    assert both.exit_code == 2 and "two starts" in both.output
    (pretrained_file.parent / "mnv3-small-min.pt").write_bytes(b"not a checkpoint")
    broken = _train(tmp_path)
    assert broken.exit_code == 2 and "mnv3-small-min.pt" in broken.output and "--pretrained none" in broken.output
    assert _train(tmp_path, "--pretrained", "none").exit_code == 0


def test_recipe_rows_are_compared_without_nc_and_anchors():
    a = build_model("mnv3-small-min", nc=3).recipe
    b = build_model("mnv3-small-min", nc=16).recipe
    assert recipe_row_differences(a, b) == []
    assert recipe_row_differences(build_model("yolov5n", nc=3).recipe, a)


def test_a_lenient_transfer_reports_what_did_not_fit():
    src, dst = build_model("mnv3-small", nc=3), build_model("mnv3-small-min", nc=3)  # 5x5 kernels and SE vs none
    report = transfer_detector(dst, src.state_dict(), 3, "small.pt", strict=False)
    assert report.loaded and report.skipped and "left at their initialisation" in report.summary()
    with pytest.raises(UserError, match="does not fit this recipe"):
        transfer_detector(dst, src.state_dict(), 3, "small.pt", strict=True)
    with pytest.raises(UserError, match="no tensor fits"):
        transfer_detector(dst, build_model("yolov5n", nc=3).state_dict(), 3, "yolov5n.pt", strict=False)


def test_a_time_budget_becomes_a_sample_budget_from_measured_training_steps(tmp_path, monkeypatch):
    import mnv3det.train.pretrain as pre
    from mnv3det.train.config import TrainConfig

    rate = pre.measure_images_per_s(TrainConfig(recipe="mnv3-small-min", imgsz=160, batch=4, workers=0, threads=1,
                                                device="cpu"), SceneConfig(size=160), batches=1)
    assert rate > 0
    monkeypatch.setattr(pre, "measure_images_per_s", lambda cfg, scene: 0.2)  # 0.2 images/s x 0.97 x 120 s -> 23
    result = pretrain(PretrainOptions(recipe="mnv3-small-min", time="2m", project=str(tmp_path), **TINY),
                      progress=False)
    made = load_checkpoint(result.last).provenance
    assert made["samples_budget"] == 24 and made["samples_seen"] == 24  # 23 rounded up to whole epochs of 8


def test_every_shipped_file_fits_its_recipe_and_says_how_it_was_made():
    """The weights in mnv3det/weights/ load strictly into today's recipe (a recipe edit that breaks them fails
    here, not in a user's run) and carry their provenance."""
    from mnv3det.models.shipped import shipped_recipes, shipped_weights_path

    recipes = shipped_recipes()
    assert {"mnv3-small-min", "mnv3-small", "yolov5n"} <= set(recipes)
    for recipe in recipes:
        ckpt = load_checkpoint(shipped_weights_path(recipe))
        made = ckpt.provenance
        assert made["kind"] == "synthetic-detection-pretraining" and made["samples_seen"] >= 10_000
        assert made["commit"] and "dirty" not in made["commit"] and made["wall_s"] > 0
        model = build_model(recipe, nc=3)
        report = transfer_detector(model, ckpt.model, ckpt.nc, recipe, strict=True, recipe=ckpt.recipe)
        assert report.skipped == [] and len(report.class_rows) == 6  # 3 levels x (weight, bias)
