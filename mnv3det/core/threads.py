"""CPU threading that keeps its speed when another process shares the cores.

Why this module exists: PyTorch's OpenMP threads and ONNX Runtime's thread pool *spin* while they wait for work.
With as many threads as cores, one competing process (a second training job, a browser, the test suite) makes every
parallel region wait for a thread whose core is taken, and the spinning threads burn the cycles the competitor
needs; mnv3det measured 7-30x slow-downs (`benchmarks/bench_contention.py`). The fixes, in order of effect:
- for multi-threaded PyTorch work (training, batched validation), a thread count that follows the cores other
  processes leave free, measured while it runs (`mnv3det.core.cpu_share.ThreadGovernor`);
- a short OpenMP spin, which libgomp reads once when torch is first imported, so it is set by the entry point
  (`configure_openmp`) and never overrides a value the user already set;
- one thread for PyTorch inference on one image at a time (`TORCH_ONE_IMAGE_THREADS`);
- a thread count taken from the cores this process may use (`available_cores`), not from the machine's total.
ONNX Runtime's own pool spins only briefly and kept its speed under contention, so its default stays.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

# Chosen from benchmarks/bench_contention.py (table in README "CPU speed on a shared machine"). A short spin (10k
# iterations, then sleep) is the fastest idle setting for training (2 threads + a loader process on 2 cores): longer
# spins (libgomp's default) starve the loader, PASSIVE (sleep at once) pays a wake-up per op. Under contention the
# spin would hurt, but there the ThreadGovernor drops to the free cores and one thread never waits for another.
# GOMP_SPINCOUNT is read by libgomp (torch's OpenMP on Linux); other OpenMP runtimes keep their own default.
OPENMP_DEFAULTS = {"GOMP_SPINCOUNT": "10000"}
# A user who set any of these chose how OpenMP waits (libgomp and LLVM/Intel OpenMP names).
USER_SPIN_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

# PyTorch on CPU with one image per forward (detect, mnv3det.load): every op is small, so waking a second thread
# costs more than it saves. mnv3-small at 320: 12.0 ms with 1 thread against 13.5 ms (2 spinning threads) and
# 25.3 ms (2 PASSIVE threads) idle; 11.0 ms against 41.4 / 18.0 ms beside a competing process.
TORCH_ONE_IMAGE_THREADS = 1


def openmp_defaults_for(env: Mapping[str, str]) -> dict[str, str]:
    """The OpenMP settings mnv3det adds to `env`: none when the user chose how OpenMP waits, else OPENMP_DEFAULTS."""
    if any(key in env for key in USER_SPIN_SETTINGS):
        return {}
    return dict(OPENMP_DEFAULTS)


def configure_openmp() -> dict[str, str]:
    """Put the OpenMP defaults into os.environ unless the user set them; returns what was set.

    Must run before torch is first imported (libgomp reads the environment once, when it loads); when torch is
    already imported this does nothing and returns {} so that the process stays consistent with what it runs.
    """
    if "torch" in sys.modules:
        return {}
    applied = openmp_defaults_for(os.environ)
    os.environ.update(applied)
    return applied


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under taskset or a container's cpuset), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None, processes: int = 1) -> int:
    """`threads` if given, else the available cores shared out over `processes` (at least 1)."""
    if threads is not None:
        return max(1, int(threads))
    return max(1, available_cores() // max(processes, 1))


def apply_threads(threads: int | None, processes: int = 1) -> int:
    """Set torch's intra-op thread count (see `resolve_threads`) and return it."""
    import torch

    count = resolve_threads(threads, processes)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def ort_session_options(threads: int | None = None, spinning: bool | None = None):
    """onnxruntime SessionOptions with `resolve_threads(threads)` intra-op threads and one inter-op thread.

    spinning: whether idle pool threads spin; None = `ORT_ALLOW_SPINNING` (ORT's default unless MNV3DET_ORT_SPIN=0).
    """
    import onnxruntime as ort

    spin = ORT_ALLOW_SPINNING if spinning is None else ("1" if spinning else "0")
    options = ort.SessionOptions()
    options.intra_op_num_threads = resolve_threads(threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return options


# ORT's own default (workers spin briefly, then yield). benchmarks/bench_ort_spin.py, mnv3-small at 320, 2 threads:
# spinning 3.51 ms idle / 7.77 ms beside a competing process (45% kept); without 4.61 / 5.37 ms (86% kept). Idle speed
# decides (31% faster), since 45% still meets the goal; MNV3DET_ORT_SPIN=0 turns it off for a machine known shared.
ORT_ALLOW_SPINNING = "0" if os.environ.get("MNV3DET_ORT_SPIN") == "0" else "1"
