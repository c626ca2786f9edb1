"""Exports never lose a file: written beside the target, verified, then renamed; Ctrl-C, a second export to the same
file and unwritable outputs are handled in one line."""

from __future__ import annotations

import errno
import fcntl
import os

import pytest
from typer.testing import CliRunner

from mnv3det.cli import app
from mnv3det.deploy.export import pipeline as export_module
from mnv3det.deploy.runtime.backends import load_backend
from mnv3det.deploy.export.pipeline import export_model
from mnv3det.errors import UserError

from test_export import make_checkpoint, make_model

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

runner = CliRunner()


def _leftovers(folder, name):
    return sorted(p.name for p in folder.glob(f".{name}*"))


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".torchscript")])
def test_the_file_is_verified_before_it_replaces_the_earlier_one(tmp_path, monkeypatch, fmt, suffix):
    path = tmp_path / f"m{suffix}"
    export_model(make_model(), path, format=fmt, imgsz=64, runs=1)
    before = path.read_bytes()
    seen = []
    real_verify = export_module._verify

    def verify(model, backend, *args):
        seen.append(path.read_bytes() == before)  # the earlier file is untouched while the new one is checked
        return real_verify(model, backend, *args)

    monkeypatch.setattr(export_module, "_verify", verify)
    result = export_model(make_model("mnv3-small-min"), path, format=fmt, imgsz=64, runs=1)
    assert seen == [True] and result.passed and result.path == path
    assert path.read_bytes() != before and load_backend(path).names == ["cell", "dot", "ring"]
    assert _leftovers(tmp_path, path.name) == []


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_ctrl_c_prints_one_line_and_leaves_the_earlier_file_whole(tmp_path, monkeypatch, fmt):
    weights, _ = make_checkpoint(tmp_path / "best.pt")
    args = ["export", "-w", str(weights), "--format", fmt, "--imgsz", "64", "--runs", "1"]
    assert runner.invoke(app, args).exit_code == 0
    out = tmp_path / f"best.{fmt}"
    before = out.read_bytes()

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "_verify", interrupted)
    result = runner.invoke(app, args)
    assert result.exit_code == 130
    assert result.output.strip().splitlines() == [f"export interrupted: nothing was written (the earlier {out} is "
                                                  "unchanged)"]
    assert out.read_bytes() == before and _leftovers(tmp_path, out.name) == []


def test_two_exports_to_one_file_each_verify_their_own(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    verified = []
    real_verify = export_module._verify

    def verify(model, backend, *args):
        verified.append(backend._path)
        if len(verified) == 1:  # a second export to the same file starts and ends while the first is verifying
            export_model(make_model("mnv3-small-min"), path, imgsz=64, runs=1)
        return real_verify(model, backend, *args)

    monkeypatch.setattr(export_module, "_verify", verify)
    result = export_model(make_model(), path, imgsz=64, runs=1)
    assert result.passed and len(verified) == 2
    assert len(set(verified)) == 2 and str(path) not in verified  # each checked its own temporary
    assert load_backend(path).names and _leftovers(tmp_path, path.name) == []


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    from mnv3det.core.atomic import AtomicOutput, remove_stale

    path = tmp_path / "m.onnx"
    dead = tmp_path / ".m.onnx.deadbeef.tmp.onnx"
    dead.write_bytes(b"half a model")  # what kill -9 during an export leaves
    with AtomicOutput(path, keep_suffix=True) as live:
        assert remove_stale(path) == [dead]
        assert live.exists() and not dead.exists()
        live.write_bytes(b"whole")
    assert path.read_bytes() == b"whole" and _leftovers(tmp_path, path.name) == []


def test_a_failing_writer_leaves_nothing(tmp_path):
    from mnv3det.core.atomic import AtomicOutput

    path = tmp_path / "m.onnx"
    path.write_bytes(b"earlier")
    with pytest.raises(RuntimeError):
        with AtomicOutput(path) as tmp:
            tmp.write_bytes(b"part")
            raise RuntimeError("writer failed")
    assert path.read_bytes() == b"earlier" and _leftovers(tmp_path, path.name) == []


def test_a_locked_temporary_is_left_alone(tmp_path):
    from mnv3det.core.atomic import remove_stale

    path = tmp_path / "m.onnx"
    other = tmp_path / ".m.onnx.0badf00d.tmp.onnx"
    other.write_bytes(b"being written")
    fd = os.open(other, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process's writer, alive
        assert remove_stale(path) == [] and other.exists()
    finally:
        os.close(fd)


def test_export_under_a_file_is_one_line(tmp_path):
    weights, _ = make_checkpoint(tmp_path / "best.pt")
    (tmp_path / "afile").write_text("x")
    result = runner.invoke(app, ["export", "-w", str(weights), "-o", str(tmp_path / "afile" / "m.onnx"), "--imgsz",
                                 "64", "--runs", "1"])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "afile is a file, not a folder" in result.output


@pytest.mark.parametrize("fmt", ["onnx", "onnx-int8"])
def test_export_into_a_read_only_folder_is_one_line(tmp_path, monkeypatch, fmt):
    weights, _ = make_checkpoint(tmp_path / "best.pt")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: refuse creation in that folder as the kernel would for a user
        def deny_in(real):
            def call(path, *a, **kw):
                if os.path.dirname(os.fspath(path)) == str(locked):
                    raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
                return real(path, *a, **kw)

            return call

        monkeypatch.setattr(os, "open", deny_in(os.open))
        monkeypatch.setattr(os, "mkdir", deny_in(os.mkdir))
    result = runner.invoke(app, ["export", "-w", str(weights), "--format", fmt, "-o", str(locked / "m.onnx"),
                                 "--imgsz", "64", "--runs", "1"])
    locked.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert f"cannot write in {locked} (Permission denied)" in result.output


def test_an_opset_the_exporter_cannot_write_is_one_line(tmp_path):
    weights, _ = make_checkpoint(tmp_path / "best.pt")
    result = runner.invoke(app, ["export", "-w", str(weights), "--opset", "99", "--imgsz", "64"])
    assert result.exit_code == 2, result.output
    assert "--opset 99: the ONNX exporter of this torch writes opsets 14 to" in result.output
    with pytest.raises(UserError, match="--opset 21"):
        export_model(make_model(), tmp_path / "m.onnx", opset=21, imgsz=64)


def _edit_onnx_metadata(path, **changes):
    import json

    import onnx

    proto = onnx.load(str(path))
    entry = next(e for e in proto.metadata_props if e.key == "mnv3det")
    entry.value = json.dumps({**json.loads(entry.value), **changes})
    onnx.save(proto, str(path))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    return export_model(make_model("mnv3-small-min"), folder / "m.onnx", imgsz=64, runs=1).path


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"names": []}, ["key 'names'", "[]"]),
        ({"stride": 0}, ["key 'stride'", "is 0"]),
        ({"names": ["a", "b", "c", "d"], "nc": 4}, ["key 'names' lists 4 classes", "outputs 3 class scores"]),
        ({"names": ["a", "b"]}, ["key 'nc' is 3", "lists 2 classes"]),
        ({"imgsz": [64]}, ["key 'imgsz'"]),
    ],
)
def test_export_metadata_edited_by_hand_is_refused_in_one_line(exported, tmp_path, changes, words):
    import shutil

    import cv2
    import numpy as np

    edited = tmp_path / "edited.onnx"
    shutil.copy(exported, edited)
    _edit_onnx_metadata(edited, **changes)
    with pytest.raises(UserError) as err:
        load_backend(edited)
    assert str(err.value).startswith(f"{edited}: export metadata key")
    for word in words:
        assert word in str(err.value)
    image = tmp_path / "im.jpg"
    cv2.imwrite(str(image), np.full((64, 64, 3), 100, np.uint8))
    result = runner.invoke(app, ["detect", str(image), "-w", str(edited), "--project", str(tmp_path / "runs")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_a_folder_formats_metadata_json_is_checked_the_same_way(tmp_path):
    import json

    from mnv3det.deploy.runtime.metadata import read_metadata

    folder = tmp_path / "m_openvino_model"
    folder.mkdir()
    meta = {"mnv3det": "mnv3det-export/1", "names": ["a"], "nc": 1, "strides": [8, 16, 32], "stride": 0,
            "imgsz": [64, 64], "batch": 1}
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=rf"^{folder}/metadata.json: export metadata key 'stride' is 0"):
        read_metadata(folder)


def test_ctrl_c_during_an_edge_export_prints_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from mnv3det.deploy.export import openvino

    weights, _ = make_checkpoint(tmp_path / "best.pt", "mnv3-small-min")

    def interrupted(job, out):
        (out / "best.xml").write_text("<half")  # part of the model written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(openvino, "write", interrupted)
    result = runner.invoke(app, ["export", "-w", str(weights), "--format", "openvino", "--imgsz", "64"])
    assert result.exit_code == 130, result.output
    out = tmp_path / "best_openvino_model"
    assert result.output.strip().splitlines() == [f"export interrupted: nothing was written (no {out} was made)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
