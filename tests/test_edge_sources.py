"""detect reads camera indices and stream URLs through cv2.VideoCapture (tested with a local video file)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.deploy.runtime import sources
from mnv3det.deploy.runtime.sources import Stream, collect_sources, iter_frames
from mnv3det.errors import UserError

sys.path.insert(0, str(Path(__file__).parent))
from test_detect import write_clip  # noqa: E402
from test_edge_formats import make_checkpoint  # noqa: E402


@pytest.fixture()
def clip(tmp_path) -> Path:
    return write_clip(tmp_path / "clip.mp4", frames=3, step=50)


@pytest.fixture()
def capture_opens(clip, monkeypatch):
    """cv2.VideoCapture as seen by sources.py: camera 0 and one URL play the local clip; what it was asked for."""
    real, asked = cv2.VideoCapture, []

    def fake(target, *args):
        asked.append(target)
        if target in (0, "rtsp://cam.local:554/live"):
            return real(str(clip), *args)
        # any other camera or URL: a capture that does not open (and no network is touched)
        return real(str(clip) if not isinstance(target, int) and Path(str(target)).exists() else "/nonexistent.mp4")

    monkeypatch.setattr(sources.cv2, "VideoCapture", fake)
    return asked


def test_camera_index_and_urls_become_streams(capture_opens):
    assert collect_sources("0") == [Stream("0")]
    frames = list(iter_frames(collect_sources("0")))
    assert len(frames) == 3 and all(f.error is None and f.image.shape == (64, 96, 3) for f in frames)
    assert 0 in capture_opens  # the index reached cv2 as an int (a camera), not as the file name "0"
    stream = collect_sources("rtsp://cam.local:554/live")[0]
    assert stream.name == "cam.local_554_live" and stream.suffix == ".mp4" and str(stream) == "rtsp://cam.local:554/live"
    assert Stream("2").name == "camera2"


def test_a_stream_that_does_not_open_is_one_line_error(capture_opens):
    with pytest.raises(UserError, match="cannot open camera 7"):
        collect_sources("7")
    with pytest.raises(UserError, match="cannot open stream http://nowhere.invalid/x"):
        collect_sources("http://nowhere.invalid/x")


def test_detect_cli_reads_a_camera(capture_opens, tmp_path):
    weights = make_checkpoint(tmp_path / "best.pt")
    project = tmp_path / "runs"
    result = CliRunner().invoke(app, ["detect", "0", "-w", str(weights), "--imgsz", "96", "--project", str(project)])
    assert result.exit_code == 0, result.output
    out = cv2.VideoCapture(str(project / "exp" / "camera0.mp4"))
    assert out.isOpened() and int(out.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    out.release()


def test_a_local_file_named_like_an_index_is_still_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("0.jpg", np.zeros((8, 8, 3), np.uint8))
    assert collect_sources("0.jpg") == [Path("0.jpg")]
