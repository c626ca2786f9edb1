"""The CPU thread governor: threads follow the cores other processes leave free (mnv3det/core/cpu_share.py)."""

from __future__ import annotations

import re

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnv3det.core import cpu_share
from mnv3det.core.cpu_share import CpuSample, ThreadGovernor, adaptive_governor, other_cores, threads_for

TICK = cpu_share.TICKS_PER_S


def test_threads_for_counts_a_core_free_below_a_quarter_of_competing_load():
    assert threads_for(0.0, cores=2, max_threads=2) == 2
    assert threads_for(0.2, cores=2, max_threads=2) == 2
    assert threads_for(0.3, cores=2, max_threads=2) == 1
    assert threads_for(1.0, cores=2, max_threads=2) == 1
    assert threads_for(3.5, cores=2, max_threads=2) == 1  # never 0
    assert threads_for(1.0, cores=8, max_threads=8) == 7
    assert threads_for(0.0, cores=8, max_threads=4) == 4  # never above the start count


def _governor(readings: list[float], max_threads: int = 2, cores: int = 2, up_polls: int = 3):
    """A governor fed synthetic samples in which competitors use readings[i] cores during poll i (1 s each)."""
    state = {"t": 0.0, "busy": 0, "i": -1}
    set_calls: list[int] = []

    def sample() -> CpuSample:
        if state["i"] >= 0:
            state["busy"] += int(readings[state["i"]] * TICK)
        state["i"] += 1
        state["t"] += 1.0
        return CpuSample(state["t"], state["busy"], 0, {})

    gov = ThreadGovernor(max_threads, poll_s=0.0, up_polls=up_polls, set_threads=set_calls.append, sample=sample,
                         cores=cores)
    return gov, set_calls


def test_governor_drops_at_once_and_comes_back_after_quiet_polls():
    readings = [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    gov, set_calls = _governor(readings)
    seen = [gov.poll() for _ in readings]
    assert seen == [2, 1, 1, 1, 1, 2, 2]  # down on the first busy poll; up on the third quiet one
    assert set_calls == [2, 1, 2]  # the start count, then each change
    assert gov.changes == 2


def test_governor_quiet_polls_must_be_consecutive():
    gov, _ = _governor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    assert [gov.poll() for _ in range(7)] == [1, 1, 1, 1, 1, 1, 2]


def test_governor_waits_poll_s_between_measurements():
    calls = []
    gov = ThreadGovernor(2, poll_s=3600, set_threads=lambda n: None,
                         sample=lambda: calls.append(1) or CpuSample(time.monotonic(), 0, 0, {}), cores=2)
    for _ in range(100):
        gov.poll()
    assert len(calls) == 1  # the baseline only: an hour has not passed


def test_other_cores_discounts_own_tree_and_yielding_processes():
    before = CpuSample(0.0, busy_ticks=0, own_ticks=0, yielding={7: 100})
    after = CpuSample(2.0, busy_ticks=4 * TICK, own_ticks=2 * TICK, yielding={7: 100 + TICK, 9: TICK // 2})
    # 4 core-seconds busy over 2 s: 2 ours, 1 from niced pid 7, 0.5 from niced pid 9 (new: counted whole) -> 0.5 left
    assert other_cores(before, after) == pytest.approx(0.25)


def test_busy_ticks_reads_only_the_watched_cpus(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  9 9 9 9 9 9 9 9 0 0\n"
                    "cpu0 1 2 3 1000 5 6 7 8 0 0\n"
                    "cpu1 10 20 30 1000 50 60 70 80 0 0\n"
                    "intr 1 2 3\n")
    assert cpu_share.busy_ticks({0}, stat) == 1 + 2 + 3 + 6 + 7 + 8  # idle and iowait left out
    assert cpu_share.busy_ticks({0, 1}, stat) == 27 + 270


def _fake_proc(tmp_path: Path, rows: dict[int, tuple[int, int, int, int]]) -> Path:
    """rows: pid -> (ppid, utime + stime, cutime, nice), written as /proc/<pid>/stat lines."""
    for pid, (ppid, ticks, cutime, nice) in rows.items():
        (tmp_path / str(pid)).mkdir()
        fields = ["S", ppid, 0, 0, 0, 0, 0, 0, 0, 0, 0, ticks, 0, cutime, 0, 20, nice] + [0] * 30
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (a name) with) " + " ".join(map(str, fields)) + "\n")
    (tmp_path / "self").mkdir()  # non-numeric entries are skipped
    return tmp_path


def test_process_ticks_sums_the_tree_and_lists_niced_strangers(tmp_path: Path):
    proc = _fake_proc(tmp_path, {
        10: (1, 100, 40, 0),  # us; 40 ticks of children already reaped
        11: (10, 5, 0, 0),  # our loader worker
        12: (11, 3, 0, 0),  # its child
        20: (1, 500, 0, 0),  # a competitor
        30: (1, 70, 0, 19),  # a niced background job: yields
        31: (1, 9, 0, 5),  # niced a little: still competes
    })
    own, yielding = cpu_share.process_ticks(10, proc)
    assert own == 100 + 40 + 5 + 3
    assert yielding == {30: 70}


def test_adaptive_governor_only_when_mnv3det_chooses_the_threads(monkeypatch):
    monkeypatch.delenv("MNV3DET_ADAPT_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert adaptive_governor(2, 2) is None  # --threads given: fixed
        assert adaptive_governor(None, 2, processes=2) is None  # DDP ranks would see each other as competitors
        assert adaptive_governor(None, 1) is None  # nothing to share
        assert adaptive_governor(None, 2, device="cuda:0") is None  # GPU work: CPU threads do not decide its speed
        monkeypatch.setenv("MNV3DET_ADAPT_THREADS", "0")
        assert adaptive_governor(None, 2) is None
        monkeypatch.delenv("MNV3DET_ADAPT_THREADS")
        if not ThreadGovernor.supported():
            pytest.skip("no /proc on this system: the governor is off here")
        gov = adaptive_governor(None, 2)
        assert gov is not None and gov.threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


BURN = "import time\nend = time.time() + {s}\nwhile time.time() < end: pass\n"


@pytest.mark.skipif(not ThreadGovernor.supported(), reason="the governor reads /proc (Linux only)")
def test_a_real_competitor_counts_and_our_own_child_does_not(tmp_path: Path):
    """A CPU-bound process outside our tree shows as competing load; one inside it shows as our own ticks."""
    pid = os.getpid()
    own_before, _ = cpu_share.process_ticks(pid)
    child = subprocess.Popen([sys.executable, "-c", BURN.format(s=1.5)])  # our descendant
    child.wait()
    own_after, _ = cpu_share.process_ticks(pid)
    assert own_after - own_before >= 0.5 * TICK  # the reaped child's CPU time is ours

    # start_new_session + an exiting parent: the burner is re-parented away from us, like an unrelated program
    launcher = ("import subprocess, sys; subprocess.Popen([sys.executable, '-c', sys.argv[1]], start_new_session=True,"
                " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)")
    subprocess.run([sys.executable, "-c", launcher, BURN.format(s=3)], check=True)
    time.sleep(0.3)
    cpus = set(os.sched_getaffinity(0))
    before = CpuSample(time.monotonic(), cpu_share.busy_ticks(cpus), *cpu_share.process_ticks(pid))
    time.sleep(1.5)
    after = CpuSample(time.monotonic(), cpu_share.busy_ticks(cpus), *cpu_share.process_ticks(pid))
    assert other_cores(before, after) >= 0.5


class _CountingGovernor:
    """Stands in for ThreadGovernor: counts polls and reports one change on the first poll."""

    def __init__(self, on_change):
        self.polls, self.changes, self.cores, self.on_change = 0, 0, 2, on_change

    def poll(self) -> int:
        self.polls += 1
        if self.polls == 1:
            self.changes = 1
            self.on_change(1, 1.0)
        return 1


@pytest.mark.slow
def test_training_polls_the_governor_in_the_loop_and_in_validation(tmp_path: Path, monkeypatch):
    from mnv3det.evaluate import evaluator
    from mnv3det.train import trainer
    from tests.test_train import tiny

    made: list[_CountingGovernor] = []

    def fake_governor(threads, max_threads, *, device="cpu", processes=1, on_change=None):
        assert threads is None and processes == 1
        made.append(_CountingGovernor(on_change))
        return made[-1]

    val_polls: list[bool] = []
    real_evaluate = evaluator.evaluate

    def spy_evaluate(*args, **kwargs):
        val_polls.append(kwargs.get("between_batches") is not None)
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "adaptive_governor", fake_governor)
    monkeypatch.setattr(evaluator, "evaluate", spy_evaluate)
    from io import StringIO

    from rich.console import Console

    log = StringIO()
    result = trainer.fit(tiny(tmp_path, threads=None, epochs=1, max_images=16, batch=8), show_progress=False,
                         console=Console(file=log, width=200))
    assert re.search(r"CPU threads: \d+ -> 1 \(other processes used 1\.0 of 2 cores\)", log.getvalue())
    assert len(made) == 1
    assert made[0].polls >= 2 + 1  # two training batches and at least one validation batch
    assert val_polls == [True, True]  # the epoch's validation and the closing pycocotools run of best.pt
    assert result.run_dir.is_dir()


def test_training_with_threads_given_makes_no_governor(tmp_path: Path, monkeypatch):
    from mnv3det.train import trainer

    seen = []
    monkeypatch.setattr(trainer, "adaptive_governor",
                        lambda threads, max_threads, **kw: seen.append(threads) or adaptive_governor(threads, max_threads, **kw))
    from tests.test_train import tiny

    trainer.fit(tiny(tmp_path, threads=1, epochs=1, max_images=8, batch=8), show_progress=False)
    assert seen == [1]


class _FixedPoll:
    def __init__(self, threads: int):
        self.threads = threads

    def poll(self) -> int:
        return self.threads


def test_onnx_backend_switches_to_a_smaller_non_spinning_session_under_contention(tmp_path: Path, monkeypatch):
    from mnv3det.deploy.runtime.backends import load_backend
    from mnv3det.deploy.export.pipeline import export_checkpoint
    from tests.test_detect import make_checkpoint

    monkeypatch.delenv("MNV3DET_ADAPT_THREADS", raising=False)
    onnx = export_checkpoint(make_checkpoint(tmp_path / "m.pt"), imgsz=64, runs=1, threads=1).path
    fixed = load_backend(onnx, "cpu", threads=2)
    assert fixed.governor is None  # --threads given: one session, fixed
    backend = load_backend(onnx, "cpu")
    backend._free = 2  # as on a 2-core machine, whatever this one has
    images = torch.rand(1, 3, 64, 64)
    backend.governor = _FixedPoll(2)
    assert backend.active_session() is backend.session
    full = backend(images)
    backend.governor = _FixedPoll(1)
    fewer = backend.active_session()
    assert fewer is not backend.session and backend.active_session() is fewer  # built once, then reused
    options = fewer.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    torch.testing.assert_close(backend(images), full, rtol=1e-4, atol=1e-4)  # same model, same outputs
