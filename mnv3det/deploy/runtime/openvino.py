"""OpenVINO runtime: an IR folder (best_openvino_model/{best.xml, best.bin, metadata.json}) on the CPU.

Written by deploy/export/openvino.py (float32) and openvino_int8.py (nncf).

Runtime settings (`compile_cpu`): the LATENCY performance hint with one stream (batch 1, one request at a time,
as `detect` runs), `threads` inference threads (default: the cores this process may use), and float32 inference
precision. OpenVINO would otherwise pick bfloat16 on CPUs that have it (AVX512-BF16, AMX): about 3 significant
digits, which moves boxes at 640 px by a pixel or more and would also run an INT8 model's float decode in bfloat16.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from mnv3det.deploy.runtime.backends import ArrayBackend
from mnv3det.deploy.runtime.metadata import meta_imgsz, model_folder, read_metadata
from mnv3det.core.threads import resolve_threads
from mnv3det.errors import UserError


class _SignalStack(ctypes.Structure):
    """POSIX stack_t for sigaltstack(2)."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Restore the calling thread's alternate signal stack after OpenVINO work (Linux; elsewhere nothing is done).

    Why: each model OpenVINO's CPU plugin compiles installs an 11.5 kB alternate signal stack on the compiling
    thread and, when destroyed, restores the one it found. Two models destroyed in creation order therefore leave
    the thread's alternate stack pointing at freed memory (seen with openvino 2026.4: compile a, compile b, del a,
    del b). CPython installs its signal handlers with SA_ONSTACK, so the next handled signal (torch's DataLoader
    SIGCHLD handler, when any child process exits) killed the process with SIGSEGV. Putting back the stack that
    was there before each compile means every model saves and later restores that same, valid one.
    """
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    before = _SignalStack()
    libc.sigaltstack(None, ctypes.byref(before))
    try:
        yield
    finally:
        gc.collect()  # models made and dropped inside (nncf's) restore their saved stacks now, not later
        libc.sigaltstack(ctypes.byref(before), None)


def compile_cpu(model: Any, threads: int | None = None) -> Any:
    """A CPU CompiledModel of `model` (an ov.Model or an .xml path) with the latency settings above."""
    import openvino as ov

    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": "f32",
    }
    config["INFERENCE_NUM_THREADS"] = resolve_threads(threads)  # None: the cores this process may use
    with keep_signal_stack():
        return ov.Core().compile_model(model if not isinstance(model, Path) else str(model), "CPU", config)


class Backend(ArrayBackend):
    """An OpenVINO IR folder (or its .xml) run on the CPU; the `Backend` protocol of runtime/backends.py."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", threads: int | None = None):
        folder, xml = model_folder(Path(path), "*.xml")
        self.meta = read_metadata(folder)
        if torch.device(device).type != "cpu":
            import warnings

            warnings.warn(f"{folder.name} runs on the CPU (OpenVINO CPU plugin)", stacklevel=2)
        try:
            compiled = compile_cpu(xml, threads)
        except Exception as err:  # unreadable or foreign IR
            raise UserError(f"could not load OpenVINO model {xml}: {type(err).__name__}: {str(err)[:200]}") from None
        self._setup(compiled)

    @classmethod
    def wrap(cls, compiled: Any, meta: dict[str, Any]) -> "Backend":
        """A Backend over an already compiled model (nncf's accuracy control hands one to its metric)."""
        backend = cls.__new__(cls)
        backend.meta = meta
        backend._setup(compiled)
        return backend

    def _setup(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.device = torch.device("cpu")
        self.names = list(self.meta["names"])
        self.stride = int(self.meta["stride"])
        self.imgsz = meta_imgsz(self.meta)  # the trained size (what val/detect report), else the exported size
        shape = compiled.input(0).get_partial_shape()
        self.fixed_shape = tuple(int(d.get_length()) for d in shape) if shape.is_static else None

    def run(self, array: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 -> (B, N, 5 + nc) float32 (a copy: the request reuses its output buffer)."""
        self.request.infer({0: array})
        return self.request.get_output_tensor(0).data.copy()


runner = Backend.runner  # (run, input shape) for the timing worker


def runs_here() -> bool:
    """This runtime runs on every system mnv3det supports."""
    return True
