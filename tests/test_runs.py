"""Run folders: claimed atomically, clear errors for unusable --project folders, one writer per folder."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest

from mnv3det.core import runs
from mnv3det.core.runs import claim_run_dir, run_lock
from mnv3det.errors import UserError


def test_a_name_taken_by_another_process_meanwhile_is_not_shared(tmp_path, monkeypatch):
    real = runs.increment_path
    raced: list[Path] = []

    def other_process_wins(base, name, exist_ok=False):
        chosen = real(base, name, exist_ok)
        if not raced:  # another run creates the folder between our choice and our mkdir
            chosen.mkdir()
            raced.append(chosen)
        return chosen

    monkeypatch.setattr(runs, "increment_path", other_process_wins)
    mine = claim_run_dir(tmp_path, "same")
    assert raced == [tmp_path / "same"] and mine == tmp_path / "same2" and mine.is_dir()


def _claim(args):
    base, barrier = args
    barrier.wait()
    return str(claim_run_dir(Path(base), "same"))


def test_runs_started_together_get_distinct_folders(tmp_path):
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(6)
        with ctx.Pool(6) as pool:
            got = pool.map(_claim, [(str(tmp_path), barrier)] * 6)
    assert len(set(got)) == 6


def test_unusable_project_folders_are_one_line_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="--project .*cannot create the run folder"):
        claim_run_dir(tmp_path / "file" / "runs", "exp")
    with pytest.raises(UserError, match="cannot create"):
        claim_run_dir(tmp_path, "file", exist_ok=True)  # a file where the folder should be


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_project_is_a_one_line_error(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o555)
    with pytest.raises(UserError, match="pass a writable folder"):
        claim_run_dir(locked, "exp")


def test_a_second_writer_of_one_run_folder_is_refused(tmp_path):
    with run_lock(tmp_path):
        with pytest.raises(UserError, match="in use by another running mnv3det process"):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released at the end of the block
        pass
