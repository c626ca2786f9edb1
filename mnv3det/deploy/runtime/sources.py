"""What `mnv3det detect SOURCE` reads: an image, a directory, a glob, a video file, a .txt list of paths, a camera
index (`0`) or a stream URL (rtsp://, rtmp://, http://, https://), the last two through cv2.VideoCapture as a `Stream`.

`collect_sources(source)` turns SOURCE into a sorted list of image/video files (a clear `UserError` when
there is nothing to read). A directory gives its own files, not its subfolders', as YOLOv5's and Ultralytics'
detect read one (training, by contrast, reads a split's subfolders); `media_in_subfolders(source)` says in one
line what that leaves out and how to include it (a recursive glob, `'DIR/**/*'`). It opens every video and decodes its first frame there and then, so a video that
cannot be read is a `UserError` naming it before the caller has written anything (call it before creating
a run folder). `iter_frames(paths)` yields one `Frame` per image or video frame. An image that cannot be
decoded becomes a `Frame` with `error` set, so the caller reports it and goes on; so does a video that ends
before the frame count its header declares (a cut-short file: the frames before are still yielded).
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from mnv3det.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv"})
GLOB_CHARS = frozenset("*?[")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://")


@dataclass(frozen=True)
class Stream:
    """A camera index or stream URL, standing where a video Path stands (name, stem, suffix for the outputs)."""

    target: str  # "0" or "rtsp://host/path"

    @property
    def capture_arg(self) -> int | str:
        return int(self.target) if self.target.isdigit() else self.target

    @property
    def name(self) -> str:  # camera0, or the URL without its scheme as a safe file name
        if self.target.isdigit():
            return f"camera{self.target}"
        return re.sub(r"[^\w.-]+", "_", self.target.split("://", 1)[1]).strip("_")[:80] or "stream"

    stem = name
    suffix = ".mp4"  # the annotated output is written as a video

    def __str__(self) -> str:
        return self.target


def _capture(path: Path | Stream) -> cv2.VideoCapture:
    return cv2.VideoCapture(path.capture_arg if isinstance(path, Stream) else str(path))


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _media_in(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.is_file() and (is_image(p) or is_video(p))]


def _from_txt(txt: Path) -> list[Path]:
    """One path per line ('#' comments and blank lines skipped); relative paths resolve against the txt's folder."""
    out: list[Path] = []
    for lineno, line in enumerate(txt.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        if not path.is_absolute() and not path.exists():
            path = txt.parent / path
        if not path.is_file():
            raise UserError(f"{txt}, line {lineno}: {line!r} is not a file; fix or remove that line")
        if not (is_image(path) or is_video(path)):
            raise UserError(
                f"{txt}, line {lineno}: {line!r} is not an image or video "
                f"(known suffixes: {', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})"
            )
        out.append(path)
    if not out:
        raise UserError(f"source list {txt} names no files; put one image or video path per line")
    return out


def check_video(path: Path | Stream) -> None:
    """Open `path` and decode its first frame; a UserError naming the file when either fails."""
    if isinstance(path, Stream):
        capture = _capture(path)
        opened = capture.isOpened()
        capture.release()
        if not opened:
            raise UserError(f"cannot open {'camera' if path.target.isdigit() else 'stream'} {path.target}; "
                            "check the index or URL (and that nothing else holds the camera)")
        return
    capture = _capture(path)
    try:
        if not capture.isOpened():
            raise UserError(
                f"video {path} cannot be opened (damaged, cut short or an unsupported codec); "
                "check that it plays, or re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)"
            )
        if not capture.read()[0]:
            raise UserError(f"video {path} opens but holds no readable frame; check that it plays, or re-encode it")
    finally:
        capture.release()


def collect_sources(source: str | Path) -> list[Path]:
    """The image and video files SOURCE stands for, in a stable order; every video is checked to open
    (see `check_video`), so a bad one stops the run before anything is written."""
    paths = _collect(source)
    for path in paths:
        if is_video(path):
            check_video(path)
    return paths


MAX_WALK = 10_000  # entries looked at below a source folder before the subfolder count gives up (a huge tree)


def _nested_media(folder: Path) -> tuple[int, bool]:
    """(images and videos in the subfolders of `folder`, True when the walk stopped at MAX_WALK entries)."""
    count = seen = 0
    for root, dirs, files in os.walk(folder):
        if Path(root) == folder:
            continue  # the folder's own files are read
        for name in files:
            count += is_image(Path(name)) or is_video(Path(name))
        seen += len(files) + len(dirs)
        if seen >= MAX_WALK:
            return count, True
    return count, False


def _nested_note(folder: Path, count: int, more: bool) -> str:
    return (f"{folder}: {count}{'+' if more else ''} image(s)/video(s) in its subfolders are not read (a folder "
            f"gives its own files, as in YOLOv5); to include them pass '{folder}/**/*' (quoted)")


def media_in_subfolders(source: str | Path) -> str:
    """One line when SOURCE is a folder whose subfolders hold images or videos that `collect_sources` leaves out
    (and how to include them); '' otherwise."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return ""
    count, more = _nested_media(folder)
    return _nested_note(folder, count, more) if count else ""


def _collect(source: str | Path) -> list[Path]:
    text = str(source)
    path = Path(text).expanduser()
    if not path.exists() and (text.isdigit() or text.lower().startswith(STREAM_SCHEMES)):
        return [Stream(text)]  # type: ignore[list-item]  (a Stream reads like a video Path downstream)
    if path.is_dir():
        files = _media_in(sorted(path.iterdir()))
        if not files:
            count, more = _nested_media(path)
            raise UserError(
                f"source directory {path} holds no images or videos itself "
                f"(known suffixes: {', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})"
                + (f"; its subfolders hold {count}{'+' if more else ''}: pass '{path}/**/*' (quoted) to read them"
                   if count else "")
            )
        return files
    if path.is_file():
        if path.suffix.lower() == ".txt":
            return _from_txt(path)
        if is_image(path) or is_video(path):
            return [path]
        raise UserError(
            f"source {path} is not an image, video, directory or .txt list "
            f"(known suffixes: {', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})"
        )
    if GLOB_CHARS & set(text):
        files = _media_in(sorted(Path(p) for p in glob.glob(str(path), recursive=True)))
        if not files:
            raise UserError(f"source pattern {text!r} matches no images or videos; check the pattern and quote it")
        return files
    raise UserError(f"source {text} does not exist; pass an image, a directory, a glob, a video or a .txt list")


@dataclass
class Frame:
    """One image to run on: a still image (index 0 of 1) or one frame of a video."""

    path: Path
    image: np.ndarray | None  # BGR uint8 (H, W, 3); None when it could not be read (see `error`)
    index: int = 0  # frame number inside a video; 0 for an image
    frames: int = 1  # frames in the video (as the container reports it); 1 for an image
    fps: float = 0.0  # video frame rate; 0 for an image
    error: str | None = None

    @property
    def is_video(self) -> bool:
        return is_video(self.path)


class UnreadableImage(Exception):
    """An image file that cannot be decoded; the message says why (short, for a report table)."""


def read_image(path: Path) -> np.ndarray:
    """The decoded BGR image (H, W, 3) uint8 by the one decoder (`data.imageio.read_image`: orientation applied,
    sizes it cannot process refused from the header); raises UnreadableImage with a short reason."""
    from mnv3det.data import imageio

    try:
        if path.stat().st_size == 0:
            raise UnreadableImage("file is empty")
    except OSError as err:
        raise UnreadableImage(f"cannot read file: {err.strerror or err}") from None
    try:
        return imageio.read_image(path)
    except imageio.UnprocessableImage as err:  # decodes, but its size cannot be processed: the rule's reason
        raise UnreadableImage(err.reason) from None
    except imageio.UnreadableImage:
        raise UnreadableImage("not a decodable image (corrupt or wrong format)") from None


def frame_count(path: Path) -> int:
    """1 for an image; the frame count the video container reports (at least 1) for a video."""
    if not is_video(path):
        return 1
    capture = _capture(path)
    try:
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 1)
    finally:
        capture.release()


def iter_frames(paths: list[Path]) -> Iterator[Frame]:
    """Yield a Frame per image and per video frame; unreadable files give one Frame with `error` set."""
    for path in paths:
        if is_video(path):
            capture = _capture(path)
            if not capture.isOpened():
                yield Frame(path, None, error="cannot open video (corrupt or unsupported codec)")
                continue
            frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or 0
            fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
            index = 0
            try:
                while True:
                    ok, image = capture.read()
                    if not ok:
                        break
                    yield Frame(path, image, index=index, frames=frames, fps=fps)
                    index += 1
            finally:
                capture.release()
            if index == 0:
                yield Frame(path, None, error="video holds no readable frames")
            elif index < frames:  # the header promised more: a cut-short or damaged file
                yield Frame(
                    path, None, index=index, frames=frames, fps=fps,
                    error=f"video ended after {index} of the {frames} frames its header declares "
                    f"(cut short or damaged?); the {index} frames read were processed",
                )
        else:
            try:
                image = read_image(path)
            except UnreadableImage as err:
                yield Frame(path, None, error=str(err))
                continue
            yield Frame(path, image)

