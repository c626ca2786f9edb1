"""Detect: sources, the prediction path (hand-computed scale-back), drawing, the CLI end to end, .pt vs .onnx."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.deploy.runtime.annotate import class_color, draw_detections, text_color
from mnv3det.deploy.runtime.backends import load_backend
from mnv3det.core.checkpoint import save_checkpoint
from mnv3det.deploy.runtime.predictor import predict
from mnv3det.deploy.runtime.sources import collect_sources, iter_frames
from mnv3det.errors import UserError

NAMES = ["cell", "dot", "ring"]


def make_checkpoint(path: Path) -> Path:
    """A random mnv3-small checkpoint whose scores depend on the image, so random weights still give varied boxes.

    Untrained, in eval mode, the init BN statistics let activations shrink layer by layer (std ~1e-9 at P5), so
    every score would equal the bias prior. One train-mode pass with cumulative BN momentum sets the running
    statistics from real batches; with zero head biases, scores then spread over about 0.25-0.4 (so tests use conf 0.32).
    """
    from mnv3det.models import build_model

    torch.manual_seed(0)
    model = build_model("mnv3-small", nc=len(NAMES))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 3, 128, 128))
        for conv in model.detect.m:
            conv.bias.zero_()
    model.eval()
    ckpt = {"recipe": model.recipe, "nc": model.nc, "names": NAMES, "model": model.state_dict(), "epoch": -1}
    return save_checkpoint(ckpt, path)


def write_image(path: Path, h: int = 96, w: int = 128, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.rectangle(image, (20, 20), (60, 70), (0, 200, 255), -1)
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


@pytest.fixture()
def image_dir(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "a.jpg", seed=1)
    write_image(folder / "b.png", 120, 80, seed=2)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "notes.md").write_text("not an image")
    return folder


# ---------------------------------------------------------------- sources


def test_sources_dir_glob_txt(image_dir, tmp_path):
    names = [p.name for p in collect_sources(image_dir)]
    assert names == ["a.jpg", "b.png", "broken.jpg"]  # sorted, non-media files left out
    assert [p.name for p in collect_sources(str(image_dir / "*.png"))] == ["b.png"]
    listing = tmp_path / "list.txt"
    listing.write_text("# two images\nimages/a.jpg\n\n" + str(image_dir / "b.png") + "\n")
    assert [p.name for p in collect_sources(listing)] == ["a.jpg", "b.png"]  # relative to the txt's folder


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.jpg", "does not exist"),
        (lambda d: d / "*.gif", "matches no images or videos"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "holds no images or videos"),
        (lambda d: (d / "x.md").write_text("hi") and d / "x.md", "is not an image, video"),
        (lambda d: (d / "l.txt").write_text("a.jpg\nnope.jpg\n") and d / "l.txt", r"l.txt, line 1: 'a.jpg' is not a file"),
    ],
)
def test_bad_sources_are_clear_errors(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        collect_sources(make(tmp_path))


def test_corrupt_image_becomes_an_error_frame(image_dir):
    frames = list(iter_frames(collect_sources(image_dir)))
    assert [f.path.name for f in frames] == ["a.jpg", "b.png", "broken.jpg"]
    assert frames[0].image.shape == (96, 128, 3) and frames[0].error is None
    assert frames[2].image is None and "not a decodable image" in frames[2].error


def test_unreadable_video_becomes_an_error_frame(tmp_path):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    (frame,) = list(iter_frames([video]))
    assert frame.image is None and frame.error


# ---------------------------------------------------------------- prediction path


class OneBoxBackend:
    """Returns one fixed box (cx, cy, w, h in input pixels) per image, so the scale-back can be computed by hand."""

    names = NAMES
    stride = 32
    fixed_shape = None
    device = torch.device("cpu")
    imgsz = None

    def __init__(self, cxcywh, cls=1):
        self.row = torch.tensor([*cxcywh, 0.9] + [0.1] * len(NAMES))
        self.row[5 + cls] = 1.0
        self.inputs = []

    def __call__(self, images):
        self.inputs.append(tuple(images.shape))
        return self.row.expand(images.shape[0], 1, -1).clone()


def test_predict_scales_boxes_back_by_hand():
    image = np.zeros((100, 200, 3), np.uint8)  # h=100, w=200
    # imgsz 64: scale 0.32 -> 32x64 content; auto padding to a multiple of 32 adds nothing: input (1, 3, 32, 64).
    backend = OneBoxBackend((32, 16, 32, 16))  # x1, y1, x2, y2 = 16, 8, 48, 24 in the input
    prediction = predict(backend, [image], imgsz=64, conf=0.25)
    assert backend.inputs == [(1, 3, 32, 64)]
    (det,) = prediction.detections
    assert det.shape == (1, 6)
    assert det[0, :4].tolist() == pytest.approx([50, 25, 150, 75], abs=1e-4)  # / 0.32
    assert det[0, 4].item() == pytest.approx(0.9) and det[0, 5].item() == 1

    # A square (non-auto) batch of two pads the short side: 64x64 input, 16 px of padding above and below.
    backend = OneBoxBackend((32, 32, 32, 16))
    prediction = predict(backend, [image, image], imgsz=64, conf=0.25)
    assert backend.inputs == [(2, 3, 64, 64)]
    for det in prediction.detections:
        assert det[0, :4].tolist() == pytest.approx([50, 25, 150, 75], abs=1e-4)


def test_predict_below_threshold_gives_empty_tensor_not_none():
    backend = OneBoxBackend((32, 16, 32, 16))
    (det,) = predict(backend, [np.zeros((64, 64, 3), np.uint8)], imgsz=64, conf=0.95).detections
    assert det.shape == (0, 6)


# ---------------------------------------------------------------- drawing


def test_colours_are_distinct_and_labels_readable():
    colours = [class_color(c) for c in range(20)]
    assert len(set(colours)) == 20
    assert text_color((255, 255, 255)) == (0, 0, 0) and text_color((20, 20, 20)) == (255, 255, 255)


def test_draw_detections_returns_a_new_annotated_image():
    image = np.full((100, 120, 3), 114, np.uint8)
    drawn = draw_detections(image, np.array([[10, 30, 60, 90, 0.8, 2]]), NAMES)
    assert (image == 114).all()  # input untouched
    assert tuple(drawn[60, 10]) == class_color(2)  # left edge of the box has the class colour
    assert (drawn[10:30, 10:60] != 114).any()  # the label sits above the box


# ---------------------------------------------------------------- CLI end to end


def test_detect_cli_directory_with_corrupt_file(weights, image_dir, tmp_path):
    project = tmp_path / "runs"
    args = ["detect", str(image_dir), "-w", str(weights), "--imgsz", "128", "--conf", "0.32", "--project", str(project)]
    result = CliRunner().invoke(app, args + ["--save-txt", "--save-conf", "--save-json", "--save-crop"])
    assert result.exit_code == 0, result.output
    out = project / "exp"
    assert "broken.jpg" in result.output and "not a decodable image" in result.output  # reported, not silent
    assert f"results saved to {out}" in " ".join(result.output.split())
    assert (out / "a.jpg").is_file() and (out / "b.png").is_file() and not (out / "broken.jpg").exists()
    assert cv2.imread(str(out / "b.png")).shape == (120, 80, 3)

    records = json.loads((out / "predictions.json").read_text())
    assert records, "the calibrated random model should give boxes"
    labels = sorted((out / "labels").glob("*.txt"))
    rows = [line.split() for p in labels for line in p.read_text().splitlines()]
    assert len(rows) == len(records) and all(len(r) == 6 for r in rows)  # class cx cy w h conf
    assert all(0 <= float(v) <= 1 for r in rows for v in r[1:5])
    crops = list((out / "crops").rglob("*.jpg"))
    assert len(crops) == len(records)
    assert {p.parent.name for p in crops} <= set(NAMES)

    # --nosave alone writes nothing: no empty exp2 folder, and no "results saved to" pointing at one.
    again = CliRunner().invoke(app, args + ["--nosave"])
    assert again.exit_code == 0, again.output
    assert not (project / "exp2").exists()
    assert "results saved to" not in again.output and "no files written (--nosave" in again.output


def test_detect_that_finds_nothing_says_so_and_suggests_a_lower_conf(weights, image_dir, tmp_path):
    args = ["detect", str(image_dir), "-w", str(weights), "--imgsz", "128", "--conf", "0.99", "--project", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "no objects found in 2 image(s) at --conf 0.99: try a lower --conf (e.g. --conf 0.4)" in text
    found = CliRunner().invoke(app, [*args[:-4], "--conf", "0.32", "--project", str(tmp_path)])
    assert found.exit_code == 0 and "no objects found" not in found.output, found.output


def test_detect_cli_missing_source_exit_2(weights, tmp_path):
    result = CliRunner().invoke(app, ["detect", str(tmp_path / "nothing.jpg"), "-w", str(weights)])
    assert result.exit_code == 2
    assert "nothing.jpg does not exist" in result.output


def test_detect_cli_takes_the_source_as_yolov5s_source_option_too(weights, image_dir, tmp_path):
    args = ["detect", "-w", str(weights), "--imgsz", "128", "--nosave", "--save-txt", "--project", str(tmp_path)]
    result = CliRunner().invoke(app, args + ["--source", str(image_dir), "--name", "by-option"])
    assert result.exit_code == 0, result.output
    assert "broken.jpg" in result.output  # the folder was read: its corrupt file is reported
    assert f"results saved to {tmp_path / 'by-option'}" in " ".join(result.output.split())
    none = CliRunner().invoke(app, args)
    assert none.exit_code == 2 and "no source" in none.output
    two = CliRunner().invoke(app, args + [str(image_dir), "--source", str(tmp_path)])
    assert two.exit_code == 2 and "two sources given" in two.output


def test_detect_cli_bad_classes_exit_2(weights, image_dir, tmp_path):
    result = CliRunner().invoke(
        app, ["detect", str(image_dir), "-w", str(weights), "--classes", "0,7", "--project", str(tmp_path)]
    )
    assert result.exit_code == 2 and "--classes [7]" in result.output


def write_clip(video: Path, frames: int, step: int) -> Path:
    """A 96x64 mp4 at 5 fps: `frames` frames, each a white square sliding on a background `step` brighter."""
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 64))
    for k in range(frames):
        frame = np.full((64, 96, 3), step * k, np.uint8)
        cv2.rectangle(frame, (10 + 5 * k, 10), (50, 50), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return video


def test_detect_cli_video(weights, tmp_path):
    video = write_clip(tmp_path / "clip.mp4", frames=4, step=40)
    project = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["detect", str(video), "-w", str(weights), "--imgsz", "96", "--project", str(project), "--save-txt"]
    )
    assert result.exit_code == 0, result.output
    out = cv2.VideoCapture(str(project / "exp" / "clip.mp4"))
    assert out.isOpened() and int(out.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert (int(out.get(cv2.CAP_PROP_FRAME_WIDTH)), int(out.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (96, 64)
    out.release()
    assert {p.name for p in (project / "exp" / "labels").glob("*.txt")} <= {f"clip_{k}.txt" for k in range(4)}


# ---------------------------------------------------------------- .pt and .onnx agree


def _same_boxes(a: torch.Tensor, b: torch.Tensor) -> None:
    """The same set of detections: one-to-one, same class, corners within 1e-2 px, scores within 1e-4.

    Compared as sets, since two boxes whose scores differ by less than the float noise may swap places.
    """
    assert a.shape == b.shape
    unused = list(range(len(b)))
    for row in a:
        errors = [((b[j, :4] - row[:4]).abs().max().item(), j) for j in unused if b[j, 5] == row[5]]
        assert errors, f"no box of class {int(row[5])} left to match {row.tolist()}"
        err, j = min(errors)
        assert err < 1e-2 and abs(b[j, 4] - row[4]) < 1e-4, (row.tolist(), b[j].tolist())
        unused.remove(j)


@pytest.mark.parametrize(
    ("format", "dynamic"), [("onnx", True), ("onnx", False), ("torchscript", False)], ids=["onnx-dynamic", "onnx-static", "torchscript"]
)
def test_pt_and_exported_give_the_same_boxes(weights, tmp_path, format, dynamic):
    pytest.importorskip("onnxruntime")
    from mnv3det.models.checkpoint import load_model
    from mnv3det.deploy.export.pipeline import export_model

    model, _ = load_model(weights)
    path = export_model(model, tmp_path / "m", format=format, imgsz=128, dynamic=dynamic, runs=1).path
    pt, exported = load_backend(weights), load_backend(path)
    images = [cv2.imread(str(write_image(tmp_path / f"{k}.jpg", 96 + 32 * k, 128, seed=k))) for k in range(3)]
    found = 0
    for image in images:
        # A static export always sees 128x128; the .pt backend is asked for the same square input.
        a = predict(pt, [image], imgsz=128, conf=0.32, square=not dynamic).detections[0]
        b = predict(exported, [image], imgsz=128, conf=0.32).detections[0]
        _same_boxes(a, b)
        found += len(a)
    assert found > 0


def test_detect_cli_onnx_writes_the_same_labels_as_pt(weights, image_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from mnv3det.models.checkpoint import load_model
    from mnv3det.deploy.export.pipeline import export_model

    model, _ = load_model(weights)
    onnx_path = export_model(model, tmp_path / "m.onnx", imgsz=128, dynamic=True, runs=1).path
    outputs = {}
    for tag, w in (("pt", weights), ("onnx", onnx_path)):
        project = tmp_path / tag
        result = CliRunner().invoke(
            app, ["detect", str(image_dir), "-w", str(w), "--imgsz", "128", "--conf", "0.32", "--project", str(project), "--save-json"]
        )
        assert result.exit_code == 0, result.output
        records = json.loads((project / "exp" / "predictions.json").read_text())
        outputs[tag] = sorted((r["image"], r["category"], *r["bbox"], r["score"]) for r in records)
    assert len(outputs["pt"]) == len(outputs["onnx"]) > 0
    for a, b in zip(outputs["pt"], outputs["onnx"]):
        assert a[:2] == b[:2]
        assert a[2:] == pytest.approx(b[2:], abs=0.02)  # json rounds boxes to 0.01 px and scores to 1e-5


# ---------------------------------------------------------------- outputs of one run never mix or collide


def _detect(weights, source, project, *extra):
    args = ["detect", str(source), "-w", str(weights), "--imgsz", "96", "--conf", "0.01", "--project", str(project)]
    return CliRunner().invoke(app, [*args, *extra], env={"COLUMNS": "200"})


def test_exist_ok_starts_a_fresh_labels_folder(weights, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    write_image(first / "a.jpg"), write_image(first / "b.jpg", seed=1), write_image(second / "c.jpg", seed=2)
    project = tmp_path / "runs"
    assert _detect(weights, first, project, "--save-txt", "--exist-ok").exit_code == 0
    result = _detect(weights, second, project, "--save-txt", "--exist-ok")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (project / "exp" / "labels").iterdir()) == ["c.txt"]
    assert "removed 2 file(s) of an earlier run" in result.output


def test_a_video_and_an_image_named_like_its_frame_write_separate_labels(weights, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    write_clip(source / "a.mp4", frames=2, step=40)
    write_image(source / "a_0.jpg", h=64, w=96)
    project = tmp_path / "runs"
    result = _detect(weights, source, project, "--save-txt", "--nosave")
    assert result.exit_code == 0, result.output
    labels = sorted(p.name for p in (project / "exp" / "labels").iterdir())
    assert labels == ["a_0-2.txt", "a_0.txt", "a_1.txt"]  # two frames and the image: three files


def test_a_folder_gives_its_own_files_and_says_what_its_subfolders_hold(weights, tmp_path):
    source = tmp_path / "src"
    (source / "sub" / "deeper").mkdir(parents=True)
    write_image(source / "top.jpg")
    write_image(source / "sub" / "one.jpg", seed=1)
    write_image(source / "sub" / "deeper" / "two.jpg", seed=2)
    result = _detect(weights, source, tmp_path / "runs", "--nosave")
    assert result.exit_code == 0, result.output
    assert "2 image(s)/video(s) in its subfolders are not read" in result.output and "/**/*" in result.output
    assert "top.jpg" in result.output and "one.jpg" not in result.output
    everything = _detect(weights, f"{source}/**/*", tmp_path / "runs", "--nosave")  # the way the note gives
    assert everything.exit_code == 0 and "one.jpg" in everything.output and "two.jpg" in everything.output
    assert "not read" not in everything.output


def test_class_names_and_paths_with_console_markup_are_printed_as_they_are(weights, tmp_path):
    from mnv3det.core.checkpoint import load_checkpoint

    ckpt = load_checkpoint(weights)
    ckpt.names = ["person [crowd] [/crowd]", "[/]dot", "[bold]ring"]  # unbalanced tags: rich raises MarkupError
    marked = save_checkpoint(ckpt, tmp_path / "marked.pt")
    source = tmp_path / "images"
    source.mkdir()
    write_image(source / "[red]a.jpg"), write_image(source / "b.jpg", seed=1)
    result = _detect(marked, source, tmp_path / "runs", "--nosave")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert any(name in result.output for name in ckpt.names) and "[red]a.jpg" in result.output
