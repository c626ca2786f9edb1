"""Videos for `mnv3det detect` (issue 12): a cut-short video says so; one that cannot be opened is a one-line
error naming it before any run folder exists."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.deploy.runtime.sources import collect_sources, iter_frames
from mnv3det.errors import UserError


def _avi(path: Path, frames: int = 30) -> Path:
    """An MJPG AVI: its header states the frame count and its index sits at the end of the file."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * 8, np.uint8))
    writer.release()
    return path


def test_a_video_that_ends_before_its_declared_frames_says_so(tmp_path: Path) -> None:
    whole = _avi(tmp_path / "whole.avi")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # a download stopped half way
    frames = list(iter_frames(collect_sources(cut)))
    read, (last,) = frames[:-1], frames[-1:]
    assert read and all(f.error is None and f.image is not None for f in read)
    assert last.image is None and last.frames == 30
    assert f"ended after {len(read)} of the 30 frames" in last.error
    # A whole video gives its frames and no such line.
    assert [f.error for f in iter_frames([whole])] == [None] * 30


@pytest.mark.parametrize("content", [b"not a video at all" * 10, b""])
def test_a_video_that_cannot_be_opened_is_a_user_error_before_anything_is_written(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(content)
    with pytest.raises(UserError, match=f"video {bad} cannot be opened"):
        collect_sources(bad)
    (tmp_path / "dir").mkdir()
    cv2.imwrite(str(tmp_path / "dir" / "a.jpg"), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "dir" / "clip.mp4").write_bytes(content)
    with pytest.raises(UserError, match="clip.mp4 cannot be opened"):
        collect_sources(tmp_path / "dir")
    project = tmp_path / "runs"
    # The CLI stops before loading the model (the weights file is not read: it only has to exist, which is checked
    # first) and before making a run folder.
    (tmp_path / "none.pt").write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(app, ["detect", str(bad), "-w", str(tmp_path / "none.pt"), "--project", str(project)])
    assert result.exit_code == 2 and "clip.mp4 cannot be opened" in result.output, result.output
    assert not project.exists()
