"""One image-size type: every accepted spelling parses alike, and every command refuses a bad size in one wording."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.core.imgsz import DEFAULT_IMGSZ, ImgSize, check_imgsz, choose_imgsz, parse_imgsz
from mnv3det.errors import UserError
from tests.test_detect import make_checkpoint, write_image

runner = CliRunner()
WORDING = "--imgsz 100: not a multiple of 32, the model's stride; nearest valid: 96 or 128"


@pytest.mark.parametrize("value", [640, "640", " 640 ", (640,), [640, 640], "640,640", ImgSize(640, 640), 640.0])
def test_square_spellings(value):
    assert parse_imgsz(value) == ImgSize(640, 640)
    assert str(parse_imgsz(value)) == "640" and parse_imgsz(value).square


@pytest.mark.parametrize("value", ["480,640", "480 640", "480x640", (480, 640), [480, 640]])
def test_height_width_spellings(value):
    size = parse_imgsz(value)
    assert size.hw == (480, 640) and size.long == 640 and str(size) == "480,640"


@pytest.mark.parametrize("value", [0, -32, "abc", "1,2,3", "", (), 64.5, True, None])
def test_bad_values_are_one_clear_error(value):
    with pytest.raises(UserError, match="give a positive size such as 640, or height,width such as 480,640"):
        parse_imgsz(value)


def test_check_names_the_nearest_valid_sizes():
    assert check_imgsz(640, 32) == ImgSize(640, 640)
    with pytest.raises(UserError) as err:
        check_imgsz(100, 32)
    assert str(err.value) == WORDING
    with pytest.raises(UserError, match=r"--imgsz 480,650: .* nearest valid: 480,640 or 480,672"):
        check_imgsz("480,650", 32)
    with pytest.raises(UserError, match=r"nearest valid: 64$"):  # below one stride: only the size above
        check_imgsz(20, 64)
    assert check_imgsz(96, 16) == ImgSize(96, 96)  # the model's stride decides, not a fixed 32


def test_the_size_is_asked_else_trained_else_640_in_one_place():
    assert choose_imgsz("320,416", 512, 32) == ImgSize(320, 416)
    assert choose_imgsz(None, 512, 32) == ImgSize(512, 512)
    assert choose_imgsz(None, None, 32) == ImgSize(DEFAULT_IMGSZ, DEFAULT_IMGSZ) == ImgSize(640, 640)
    with pytest.raises(UserError, match="--imgsz 650: not a multiple of 32"):
        choose_imgsz(650, 512, 32)


def test_side_refuses_a_rectangle_where_squares_are_needed():
    assert ImgSize(320, 320).side() == 320
    with pytest.raises(UserError, match="--imgsz 320,480: give one size such as 480"):
        ImgSize(320, 480).side()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("imgsz") / "best.pt")


@pytest.mark.parametrize("command", ["val", "detect", "export", "profile"])
def test_every_command_refuses_a_bad_size_in_the_same_words(command, weights, tmp_path):
    pytest.importorskip("onnxruntime")
    args = {
        "val": ["val", "-w", str(weights), "--project", str(tmp_path)],
        "detect": ["detect", str(write_image(tmp_path / "a.jpg")), "-w", str(weights), "--project", str(tmp_path)],
        "export": ["export", "-w", str(weights), "--runs", "1"],
        "profile": ["profile", "--runs", "0"],
    }[command]
    result = runner.invoke(app, [*args, "--imgsz", "100"])
    assert result.exit_code == 2, result.output
    assert WORDING in " ".join(result.output.split())
    assert not list(tmp_path.glob("exp*")), "no run folder for a command that could not start"


def test_train_config_uses_the_same_check():
    from mnv3det.train.config import TrainConfig, apply_overrides

    with pytest.raises(UserError, match="imgsz 100: not a multiple of 32, the model's stride; nearest valid: 96 or 128"):
        apply_overrides(TrainConfig(), {"imgsz": 100}, "cli")


def test_the_data_loader_no_longer_checks_sizes_itself():
    import inspect

    from mnv3det.data import loader

    assert "% stride" not in inspect.getsource(loader.create_dataloader)
