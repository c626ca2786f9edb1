"""Which data a run used, and data that cannot be right (issue 21): each case ends in a correct result, a one-line
error or a warning. All on tiny datasets written here."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from mnv3det.data import create_dataloader, load_data
from mnv3det.data.doctor import check_data

NAMES = ["cat", "dog"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))


def _image(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _label(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _yaml(where: Path, **content) -> Path:
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(yaml.safe_dump({"names": NAMES, **content}))
    return where


# -- §2 TIFF: the checks and the loader decode alike -------------------------------------------------------------


def test_tiff_the_checks_accept_is_what_the_loader_reads(tmp_path: Path) -> None:
    raw = np.full((40, 60, 3), 80, np.uint8)  # stored 60 wide, 40 high
    raw[0:10, 0:20] = 255  # a white patch in the stored top-left corner
    images = tmp_path / "images" / "train"
    images.mkdir(parents=True)
    Image.fromarray(raw).save(images / "plain.tif", compression="tiff_lzw")
    Image.fromarray(raw).save(images / "rotated.tif", tiffinfo={274: 6})  # shown turned: 40 wide, 60 high
    Image.fromarray(np.random.default_rng(0).random((40, 60)).astype(np.float32)).save(images / "float.tif")
    _label(tmp_path / "labels/train/plain.txt", "0 0.5 0.5 0.2 0.2\n")
    # orientation 6 turns the stored image clockwise: the white patch lands top-right, 10 wide and 20 high.
    _label(tmp_path / "labels/train/rotated.txt", f"1 {35 / 40} {10 / 60} {10 / 40} {20 / 60}\n")
    spec = load_data(_yaml(tmp_path / "data.yaml", train="images/train"))
    (report,) = check_data(spec, ["train"], progress=False)
    records = {r.path.name: r for r in report.records}
    assert sorted(records) == ["plain.tif", "rotated.tif"]
    assert (records["rotated.tif"].width, records["rotated.tif"].height) == (40, 60)  # not swapped back again
    (bad,) = [p for p in report.problems if p.kind == "image_unreadable"]
    assert bad.file.endswith("float.tif") and "8-bit" in bad.detail
    loader = create_dataloader([records["rotated.tif"]], imgsz=64, batch_size=1, augment=False, workers=0)
    images_, targets, _, shapes = next(iter(loader))
    assert shapes[0][0] == (60, 40)
    cx, cy, w, h = (targets[0, 2:] * 64).tolist()
    patch = images_[0, 0, round(cy - h / 2) + 1 : round(cy + h / 2) - 1, round(cx - w / 2) + 1 : round(cx + w / 2) - 1]
    assert patch.numel() > 0 and (patch > 200).all()  # the box sits on the white patch


# -- §5 a yaml that expands without bound, and user text that looks like markup ------------------------------------

ALIAS_BOMB = """train: images/train
names: [&a [x, x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a],
  &c [*b, *b, *b, *b, *b, *b, *b, *b, *b], &d [*c, *c, *c, *c, *c, *c, *c, *c, *c],
  &e [*d, *d, *d, *d, *d, *d, *d, *d, *d], &f [*e, *e, *e, *e, *e, *e, *e, *e, *e],
  &g [*f, *f, *f, *f, *f, *f, *f, *f, *f], [*g, *g, *g, *g, *g, *g, *g, *g, *g]]
"""


def test_a_yaml_of_nested_aliases_is_refused_before_it_is_used(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mnv3det.cli import app
    from mnv3det.core.yamlio import read_yaml
    from mnv3det.errors import UserError

    bomb = tmp_path / "data.yaml"
    bomb.write_text(ALIAS_BOMB)  # about 400 bytes standing for 9**8 (43 million) names
    with pytest.raises(UserError, match=r"data yaml .*data.yaml expands to more than .* values \(nested aliases"):
        read_yaml(bomb, "data yaml")
    result = CliRunner().invoke(app, ["data", "check", str(bomb)])
    assert result.exit_code == 2 and "nested aliases" in result.output and len(result.output.splitlines()) <= 3
    bomb.write_text("train: images/train\nnames: [cat, [a, b]]\n")  # a list where a name belongs
    with pytest.raises(UserError, match="`names` entry 1 is a list, not a class name"):
        load_data(bomb)


def test_names_and_rows_that_look_like_markup_print_as_written(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mnv3det.cli import app

    _image(tmp_path / "images/train/a.png")
    _label(tmp_path / "labels/train/a.txt", "0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n1 [/b] 0.5 0.2 0.2\n")
    long_name = "n" * 100_000
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"train": "images/train", "names": ["person [crowd]", "[/]", long_name]}))
    result = CliRunner().invoke(app, ["data", "check", str(data)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "person [crowd]" in result.output and "[/]" in result.output and "[/b]" in result.output
    assert "…" in result.output and result.output.count("n") < 1000  # one cell prints a bounded amount


# -- §1 which folder a data yaml names ------------------------------------------------------------------------------


def _two_candidate_folders(tmp_path: Path) -> tuple[Path, Path]:
    """A dataset beside its yaml (2 images) and an unrelated folder with its own images/train (1 image)."""
    ds, elsewhere = tmp_path / "ds", tmp_path / "elsewhere"
    for k in range(2):
        _image(ds / f"images/train/{k}.png", seed=k)
        _label(ds / f"labels/train/{k}.txt", "0 0.5 0.5 0.2 0.2\n")
    _image(elsewhere / "images/train/x.png")
    _label(elsewhere / "labels/train/x.txt", "1 0.5 0.5 0.2 0.2\n")
    return ds, elsewhere


@pytest.mark.parametrize("path_entry", [{"path": "."}, {}])
def test_a_relative_path_is_read_from_the_yaml_folder_and_the_other_candidate_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path_entry: dict
) -> None:
    from typer.testing import CliRunner

    from mnv3det.cli import app

    ds, elsewhere = _two_candidate_folders(tmp_path)
    data = _yaml(ds / "data.yaml", train="images/train", **path_entry)
    monkeypatch.chdir(elsewhere)
    spec = load_data(data)
    assert sorted(r.path.name for r in spec.records("train")) == ["0.png", "1.png"]
    (note,) = spec.notes
    assert f"using {ds.resolve()}" in note and f"current folder {elsewhere.resolve()}" in note and "not used" in note
    result = CliRunner().invoke(app, ["data", "check", str(data)], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert f"data: 'train' = {ds.resolve() / 'images' / 'train'}" in result.output and "not used" in result.output


def test_a_path_only_the_current_folder_holds_is_used_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds, elsewhere = _two_candidate_folders(tmp_path)
    data = _yaml(tmp_path / "configs" / "data.yaml", path="ds", train="images/train")  # YOLOv5 style: from the cwd
    monkeypatch.chdir(tmp_path)
    spec = load_data(data)
    assert len(spec.records("train")) == 2
    (note,) = spec.notes
    assert "holds no train split" in note and f"current folder {ds.resolve()}" in note
    monkeypatch.chdir(elsewhere)  # neither folder holds it: the error names the path under the yaml's folder
    with pytest.raises(Exception, match=str(tmp_path / "configs" / "ds")):
        load_data(data).records("train")


# -- §1 symlinked folders, §5 walking a whole disk, §1 caches and subfolders --------------------------------------


def test_symlinked_folders_in_a_split_are_followed_once(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    _image(ds / "images/train/a.png")
    _label(ds / "labels/train/a.txt", "0 0.5 0.5 0.2 0.2\n")
    _image(tmp_path / "elsewhere/b.png", seed=1)
    (ds / "images/train/linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    _label(ds / "labels/train/linked/b.txt", "1 0.5 0.5 0.2 0.2\n")
    (ds / "images/train/loop").symlink_to(ds / "images", target_is_directory=True)  # a link back up: walked once
    spec = load_data(_yaml(ds / "data.yaml", train="images/train"))
    (report,) = check_data(spec, ["train"], progress=False)
    assert sorted((r.path.name, r.classes.tolist()) for r in report.records) == [("a.png", [0]), ("b.png", [1])]
    assert report.problems == []  # b.txt is not "a label file without an image"


def test_the_walk_of_a_split_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mnv3det.data import walk
    from mnv3det.errors import UserError

    for k in range(6):
        _image(tmp_path / f"images/train/{k}.png", seed=k)
    data = _yaml(tmp_path / "data.yaml", train="images/train")
    monkeypatch.setattr(walk, "MAX_WALK_ENTRIES", 5)
    with pytest.raises(UserError, match=r"images/train holds more than 5 files and folders .*point the split at"):
        load_data(data).records("train")
    root = _yaml(tmp_path / "root.yaml", path="/", train=".")
    with pytest.raises(UserError, match="is the root of the file system"):
        load_data(root).records("train")


def test_the_records_cache_sees_a_repaired_image_in_a_subfolder(tmp_path: Path) -> None:
    import json

    (tmp_path / "images/train/sub").mkdir(parents=True)
    bad = tmp_path / "images/train/sub/a.png"
    bad.write_bytes(b"not an image")
    js = tmp_path / "annotations/instances_train.json"
    js.parent.mkdir()
    js.write_text(json.dumps({"images": [{"id": 1, "file_name": "sub/a.png"}], "categories": [{"id": 1, "name": "cat"}],
                              "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 20]}]}))
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump({"train": {"images": "images/train", "annotations": "annotations/instances_train.json"}}))
    (report,) = check_data(load_data(data), ["train"], progress=False)
    assert [p.kind for p in report.problems] == ["image_unreadable"]
    with open(bad, "wb") as f:  # repaired in place: the folder's own listing does not change
        f.write(cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes())
    assert [r.path.name for r in load_data(data).records("train")] == ["a.png"]  # not the cached "unreadable"


# -- §1 label rows that are something else, and an image listed twice -------------------------------------------------

POSE_2D = "0 0.5 0.5 0.4 0.6 0.4 0.3 0.6 0.3 0.5 0.7\n"  # box 0.3..0.7 x 0.2..0.8, three (x, y) keypoints inside it
POSE_3D = "1 0.5 0.5 0.4 0.6 0.4 0.3 2 0.6 0.3 1\n"  # box, two (x, y, visibility) keypoints
# A polygon whose first two points, read as a pose box, would hold the rest: a segmentation set stays polygons
# because its rows' point counts vary (the split decides, yolo_rows.py).
CENTRE_POLYGON = "0 0.45 0.45 0.55 0.45 0.55 0.55 0.45 0.55\n"
TRIANGLE = "1 0.1 0.1 0.3 0.1 0.2 0.3\n"


def _records_of(tmp_path: Path, rows: dict[str, str], **yaml_extra):
    for k, (stem, text) in enumerate(rows.items()):
        _image(tmp_path / f"images/train/{stem}.png", 100, 100, seed=k)
        _label(tmp_path / f"labels/train/{stem}.txt", text)
    spec = load_data(_yaml(tmp_path / "data.yaml", train="images/train", **yaml_extra))
    (report,) = check_data(spec, ["train"], progress=False)
    return {r.path.stem: r.boxes.round(1).tolist() for r in report.records}, report.problems


def test_pose_rows_are_read_as_their_box_by_the_stated_rule(tmp_path: Path) -> None:
    boxes, problems = _records_of(tmp_path / "pose2d", {"a": POSE_2D, "b": POSE_2D})
    assert boxes == {"a": [[30.0, 20.0, 70.0, 80.0]], "b": [[30.0, 20.0, 70.0, 80.0]]}  # the polygon reading: 40..60
    (note,) = problems
    assert (note.kind, Path(note.file).name, note.line) == ("pose_rows", "a.txt", 1)
    assert "add `kpt_shape: [3, 2]`" in note.detail
    boxes, problems = _records_of(tmp_path / "pose3d", {"a": POSE_3D}, kpt_shape=[2, 3])  # said in the yaml: no note
    assert boxes == {"a": [[30.0, 20.0, 70.0, 80.0]]} and problems == []
    boxes, problems = _records_of(tmp_path / "seg", {"a": CENTRE_POLYGON, "b": TRIANGLE})
    assert boxes == {"a": [[45.0, 45.0, 55.0, 55.0]], "b": [[10.0, 10.0, 30.0, 30.0]]} and problems == []
    _, problems = _records_of(tmp_path / "neither", {"a": "0 0.9 0.9 0.5 0.5 0.1 0.1 2\n"})  # even count, box holds nothing
    assert [(p.kind, p.line) for p in problems] == [("bad_row", 1)] and "does not hold its keypoints" in problems[0].detail
    _, problems = _records_of(tmp_path / "declared", {"a": POSE_2D}, kpt_shape=[17, 3])
    assert [p.kind for p in problems] == ["bad_row"] and "expected 5 + 17 x 3 = 56" in problems[0].detail


def test_an_image_listed_twice_in_a_split_is_reported_and_skipped(tmp_path: Path) -> None:
    import json

    for k, name in enumerate(("a.png", "b.png")):
        _image(tmp_path / "images/train" / name, seed=k)
    images = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}, {"id": 3, "file_name": "./a.png"}]
    anns = [{"id": k, "image_id": i, "category_id": 1, "bbox": [2, 2, 20, 20]} for k, i in enumerate((1, 2, 3))]
    js = tmp_path / "annotations/instances_train.json"
    js.parent.mkdir()
    js.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cat"}]}))
    (report,) = check_data(load_data(tmp_path), ["train"], progress=False)
    assert [r.path.name for r in report.records] == ["b.png"]
    repeated = [p for p in report.problems if p.kind == "duplicate_image_file"]
    assert len(repeated) == 2 and all("listed 2 times" in p.detail and "image ids 1, 3" in p.detail for p in repeated)
    assert report.skipped == 2
    listing = tmp_path / "train.txt"  # the same in a YOLO image list
    listing.write_text("images/train/a.png\nimages/train/b.png\nimages/train/a.png\n")
    (report,) = check_data(load_data(_yaml(tmp_path / "list.yaml", train="train.txt")), ["train"], progress=False)
    assert [r.path.name for r in report.records] == ["b.png"]
    assert [p.kind for p in report.problems] == ["duplicate_image_file"] * 2


# -- §1 a split with images but no usable box ------------------------------------------------------------------------


def test_a_split_without_a_usable_box_is_an_error_that_says_where_labels_were_looked_for(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mnv3det.cli import app
    from mnv3det.errors import UserError

    for k in range(2):  # `Images/` and `Labels/`: not the lower-case pair YOLO maps
        _image(tmp_path / f"ds/Images/train/{k}.png", seed=k)
        _label(tmp_path / f"ds/Labels/train/{k}.txt", "0 0.5 0.5 0.2 0.2\n")
    data = _yaml(tmp_path / "ds/data.yaml", train="Images/train", val="Images/train")
    with pytest.raises(UserError, match=r"split 'train': 2 images but no usable box: no label rows were read; labels "
                                        r"were looked for beside each image .*Labels \(2 \.txt\)"):
        load_data(data).records("train")
    runner = CliRunner()
    check = runner.invoke(app, ["data", "check", str(data)], terminal_width=400)
    assert check.exit_code == 1 and "no usable box" in check.output, check.output
    train = runner.invoke(app, ["train", "--data", str(data), "--device", "cpu", "--epochs", "1", "--imgsz", "64",
                                "--project", str(tmp_path / "runs")])
    assert train.exit_code == 2 and "no usable box" in train.output and not (tmp_path / "runs").exists()

    for k in range(2):  # pixel coordinates: every box lands outside the image and is clipped to nothing
        _image(tmp_path / f"px/images/train/{k}.png", seed=k)
        _label(tmp_path / f"px/labels/train/{k}.txt", "0 320 240 50 60\n")
    with pytest.raises(UserError, match=r"2 label rows were read and all dropped \(zero_size 2\); rows reach outside "
                                        r"the image: pixel coordinates\?"):
        load_data(_yaml(tmp_path / "px/data.yaml", train="images/train")).records("train")


# -- §1 validation images that are training images -------------------------------------------------------------------


def _leaky(tmp_path: Path) -> Path:
    """train: 3 images; val: one of them under another name (same bytes) and a new one; `test:` is the train folder."""
    for k in range(3):
        _image(tmp_path / f"images/train/{k}.png", seed=k)
        _label(tmp_path / f"labels/train/{k}.txt", "0 0.5 0.5 0.4 0.4\n")
    (tmp_path / "images/val").mkdir(parents=True)
    (tmp_path / "images/val/copy.png").write_bytes((tmp_path / "images/train/1.png").read_bytes())
    _image(tmp_path / "images/val/new.png", seed=9)
    for stem in ("copy", "new"):
        _label(tmp_path / f"labels/val/{stem}.txt", "1 0.5 0.5 0.4 0.4\n")
    return _yaml(tmp_path / "data.yaml", train="images/train", val="images/val", test="images/train")


def test_validation_images_that_are_training_images_are_warned_about(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from mnv3det.cli import app
    from mnv3det.train.config import TrainConfig
    from mnv3det.train.trainer import fit

    data = _leaky(tmp_path)
    reports = {r.split: r for r in check_data(load_data(data), progress=False)}
    assert reports["train"].leakage is None
    assert reports["val"].leakage.startswith("1 of the 2 'val' images are also training images: 1 have the same bytes")
    assert reports["test"].leakage.startswith("3 of the 3 'test' images are also training images: 3 are train files")
    result = CliRunner().invoke(app, ["data", "check", str(data), "--json"])
    assert result.exit_code == 0 and "same bytes" in json.loads(result.stdout)["splits"][1]["leakage"]

    import io

    from rich.console import Console

    out = io.StringIO()
    cfg = TrainConfig(data=str(data), epochs=1, imgsz=64, batch=4, workers=0, device="cpu", threads=1,
                      project=str(tmp_path / "runs"), plots=False, autoanchor=False)
    fit(cfg, console=Console(file=out, width=400), show_progress=False)
    log = out.getvalue()
    assert f"data: 'train' = {tmp_path / 'images' / 'train'}" in log and f"data: 'val' = {tmp_path / 'images' / 'val'}" in log
    assert "warning: 1 of the 2 'val' images are also training images" in log
    val = CliRunner().invoke(app, ["val", "--weights", str(tmp_path / "runs/exp/weights/best.pt"), "--data", str(data),
                                   "--device", "cpu", "--project", str(tmp_path / "val")], terminal_width=400)
    assert val.exit_code == 0 and f"data: 'val' = {tmp_path / 'images' / 'val'}" in val.output, val.output


# -- §1 --resume after the data changed -----------------------------------------------------------------------------


def test_resume_refuses_data_that_changed_and_says_what(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from mnv3det.core.checkpoint import Checkpoint, load_checkpoint
    from mnv3det.errors import UserError
    from mnv3det.train import trainer
    from mnv3det.train.config import TrainConfig
    from mnv3det.train.resume import config_for_resume

    for k in range(3):
        _image(tmp_path / f"images/train/{k}.png", seed=k)
        _label(tmp_path / f"labels/train/{k}.txt", f"{k % 2} 0.5 0.5 0.4 0.4\n")
    data = _yaml(tmp_path / "data.yaml", train="images/train")
    real = trainer.run_epochs

    def one_epoch_then_killed(run, parts, cfg, start_epoch, *a, **kw):
        real(run, parts, TrainConfig(**{**cfg.to_dict(), "epochs": start_epoch + 1}), start_epoch, *a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "run_epochs", one_epoch_then_killed)
    cfg = TrainConfig(data=str(data), epochs=2, imgsz=64, batch=4, workers=0, device="cpu", threads=1,
                      project=str(tmp_path / "runs"), plots=False, autoanchor=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(cfg, show_progress=False)
    monkeypatch.setattr(trainer, "run_epochs", real)
    last = tmp_path / "runs/exp/weights/last.pt"
    saved = load_checkpoint(last).data
    assert saved.nc == 2 and saved.splits["train"]["images"] == 3

    def resume() -> None:
        trainer.fit(config_for_resume(last)[0], resume=last, show_progress=False)

    _yaml(data, train="images/train", names=["dog", "cat"])
    with pytest.raises(UserError, match=r"data changed since the run started: the class names were reordered \(then "
                                        r"cat, dog; now dog, cat\)"):
        resume()
    _yaml(data, train="images/train", names=["cat", "dog", "bird"])
    with pytest.raises(UserError, match=r"the class names changed \(nc 2 -> 3; added bird\)"):
        resume()
    _yaml(data, train="images/train")
    _image(tmp_path / "images/train/3.png", seed=3)
    with pytest.raises(UserError, match=r"split 'train' holds other images \(3 images then, 4 now\)"):
        resume()
    (tmp_path / "images/train/3.png").unlink()
    resume()  # the data as it was: the run finishes
    assert load_checkpoint(last).epoch == 1
    raw = load_checkpoint(last).to_dict()  # a checkpoint written before nc and splits were recorded still loads
    raw["data"] = {k: raw["data"][k] for k in ("names", "category_ids", "format", "source")}
    old = Checkpoint.from_dict(raw, "old.pt")
    assert old.data.nc is None and old.data.splits == {} and isinstance(old.model, dict)
    assert all(isinstance(v, torch.Tensor) for v in old.model.values())
