"""PyTorch threads that follow the cores other processes leave free (`ThreadGovernor`).

Why: on an idle machine, training is fastest with one thread per core whose OpenMP workers spin briefly between
ops; beside one CPU-bound process the same setting keeps only ~30% of its speed, because every parallel region
waits for a worker whose core is taken. One thread keeps ~70% there but gives up ~30% idle
(benchmarks/bench_contention.py). So the governor measures, about once a second, how much CPU *other* processes
used on the cores this process may run on (busy time from /proc/stat minus this process tree's own time from
/proc/<pid>/stat, so our own spinning workers and data-loader processes never count, and minus processes niced far
below us, which yield) and sets torch's thread count to the cores left free: fewer at once when a competitor
appears, more again after it has been gone for a few polls.

Linux only (/proc); elsewhere `ThreadGovernor.supported()` is False and callers keep a fixed count. torch's thread
count is per calling thread, so `poll()` must run on the thread that computes (between batches), never a timer.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# A core counts as free while other processes use less than this share of it. Measured on an idle 2-core machine:
# background noise (shell, logging) stays under 0.05 core; one CPU-bound competitor shows as 0.5-1.0 core.
FREE_CORE_SLACK = 0.25
POLL_S = 0.5  # seconds between measurements (a /proc scan costs about 1 ms; ticks are 10 ms)
UP_POLLS = 3  # consecutive polls that must agree before threads are added back (down happens at the first poll)


# A process niced this much more than ours gets about a tenth of a core beside each of our busy threads, so it yields
# rather than competes; it is not counted as a competitor, or a niced background job that fills the cores we leave
# free would keep us from taking them back.
YIELDING_NICE = 10


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU ticks at one moment: on the watched cores (all processes, seen or not: other containers
    too), of this process tree, and per process of those niced `YIELDING_NICE` above ours."""

    wall_s: float
    busy_ticks: int
    own_ticks: int
    yielding: dict[int, int]


def busy_ticks(cpus: set[int], stat: Path = PROC / "stat") -> int:
    """Non-idle ticks (user, nice, system, irq, softirq, steal) summed over `cpus`, from /proc/stat's cpuN rows."""
    total = 0
    for line in stat.read_text().splitlines():
        if not line.startswith("cpu") or line[3:4] in ("", " "):  # skip the all-cpu row and non-cpu rows
            continue
        name, *fields = line.split()
        if int(name[3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
            total += user + nice + system + irq + softirq + steal
    return total


def process_ticks(pid: int, proc: Path = PROC) -> tuple[int, dict[int, int]]:
    """(ticks of `pid`, its living descendants and its reaped children (cutime); ticks per process niced at least
    `YIELDING_NICE` above `pid` and not in its tree), from one scan of /proc/<pid>/stat."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    nice: dict[int, int] = {}
    reaped = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # exited since listdir
            continue
        fields = raw[raw.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid ... (comm may hold spaces)
        other = int(entry.name)
        parents[other], ticks[other], nice[other] = int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[16])
        if other == pid:
            reaped = int(fields[13]) + int(fields[14])  # cutime + cstime
    children: dict[int, list[int]] = {}
    for child, ppid in parents.items():
        children.setdefault(ppid, []).append(child)
    own, frontier = {pid}, [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in own:
                own.add(child)
                frontier.append(child)
    own_nice = nice.get(pid, 0)
    yielding = {p: t for p, t in ticks.items() if p not in own and nice[p] >= own_nice + YIELDING_NICE}
    return reaped + sum(ticks.get(p, 0) for p in own), yielding


def other_cores(before: CpuSample, after: CpuSample) -> float:
    """Cores' worth of CPU that competing processes used between two samples: everything busy on the watched cores,
    less this process tree and less the processes that yield to it (a process first seen in `after` counts whole)."""
    elapsed = max(after.wall_s - before.wall_s, 1e-6)
    yielded = sum(t - before.yielding.get(p, 0) for p, t in after.yielding.items())
    ticks = after.busy_ticks - before.busy_ticks - (after.own_ticks - before.own_ticks) - yielded
    return max(ticks, 0) / TICKS_PER_S / elapsed


def threads_for(other_cores: float, cores: int, max_threads: int) -> int:
    """Threads that fit beside `other_cores` of competing load on `cores` cores, between 1 and `max_threads`."""
    free = cores - max(other_cores, 0.0)
    return max(1, min(max_threads, math.floor(free + FREE_CORE_SLACK)))


class ThreadGovernor:
    """Sets torch's intra-op threads, between 1 and `max_threads`, to the cores other processes leave free.

    Call `poll()` between batches on the computing thread; it measures at most every `poll_s` seconds.
    `on_change(threads, other_cores)` is told of each change (for one log line).
    """

    def __init__(self, max_threads: int, *, poll_s: float = POLL_S, up_polls: int = UP_POLLS,
                 set_threads: Callable[[int], None] | None = None,
                 on_change: Callable[[int, float], None] | None = None,
                 sample: Callable[[], CpuSample] | None = None, cores: int | None = None):
        import torch

        self.cpus = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
        self.cores = cores or len(self.cpus)
        self.max_threads = max(1, max_threads)
        self.poll_s, self.up_polls = poll_s, up_polls
        self._set = set_threads or torch.set_num_threads
        self._on_change = on_change
        self._sample = sample or self._sample_proc
        self.threads = self.max_threads
        self.changes = 0
        self._set(self.threads)
        self._last = self._sample()
        self._ups = 0  # consecutive polls that asked for more threads

    @staticmethod
    def supported() -> bool:
        """True where /proc gives per-cpu and per-process CPU times (Linux)."""
        return (PROC / "stat").is_file() and (PROC / str(os.getpid()) / "stat").is_file()

    def _sample_proc(self) -> CpuSample:
        own, yielding = process_ticks(os.getpid())
        return CpuSample(time.monotonic(), busy_ticks(self.cpus), own, yielding)

    def poll(self) -> int:
        """Measure if `poll_s` has passed since the last measurement and adjust; returns the thread count."""
        if time.monotonic() - self._last.wall_s < self.poll_s:
            return self.threads
        now = self._sample()
        other = other_cores(self._last, now)
        self._last = now
        self.decide(other)
        return self.threads

    def decide(self, other_cores: float) -> None:
        """Fewer threads at once when competitors take cores; more only after `up_polls` polls in a row."""
        want = threads_for(other_cores, self.cores, self.max_threads)
        if want > self.threads:
            self._ups += 1
            if self._ups < self.up_polls:
                return
        self._ups = 0
        if want != self.threads:
            self.threads = want
            self.changes += 1
            self._set(want)
            if self._on_change is not None:
                self._on_change(want, other_cores)


def adaptive_governor(threads: int | None, max_threads: int, *, device: object = "cpu", processes: int = 1,
                      on_change: Callable[[int, float], None] | None = None,
                      set_threads: Callable[[int], None] | None = None) -> ThreadGovernor | None:
    """A governor when the work runs on the CPU (`device`, a torch.device or its name), the user left the thread
    count to mnv3det (`threads` None), the process is alone (`processes` 1: DDP ranks would count each other as
    competitors), there is more than one core to share and /proc is readable; otherwise None (the fixed count
    applies). MNV3DET_ADAPT_THREADS=0 turns it off.
    set_threads: what a change does (default torch.set_num_threads; ONNX Runtime switches sessions instead)."""
    if not adapts(threads, max_threads, device=device, processes=processes):
        return None
    return ThreadGovernor(max_threads, on_change=on_change, set_threads=set_threads)


def adapts(threads: int | None, max_threads: int, *, device: object = "cpu", processes: int = 1) -> bool:
    """True when `adaptive_governor` would give a governor: the thread count then follows the free cores (a log
    that states the count says so, rather than a fixed number that the first change contradicts)."""
    on_cpu = str(getattr(device, "type", device)).split(":")[0] == "cpu"
    turned_off = os.environ.get("MNV3DET_ADAPT_THREADS") == "0"
    if not on_cpu or threads is not None or processes > 1 or max_threads < 2 or turned_off:
        return False
    return ThreadGovernor.supported()
