"""ncnn runtime: best_ncnn_model/{model.ncnn.param, model.ncnn.bin, metadata.json} run by the `ncnn` pip package.

Written by deploy/export/ncnn.py (pnnx, float32 weights).

Accuracy: a first try differed from ORT by up to 42 px. The cause was not the conversion: `ncnn.Mat(array)`
borrows a numpy array's memory, and a temporary array passed to it is freed (and its memory reused) before
`extract` runs; the Backend keeps its input alive (measured on a trained demo model at 256 px: 73 px and 0.97
in probability off with a freed temporary, 2.5e-4 px with the array kept). ncnn's defaults on x86 also store
activations in float16 (F16C): that costs about 0.016 px and 5e-4 in probability on the same model, small, but
above the 1e-4 every float export is checked to, so `net_options` keeps float32 throughout.

ncnn's Mat has no batch axis, so the Backend runs a batch image by image: (3, H, W) in, (N, 5 + nc) out.

Speed: ncnn parallelises each layer with OpenMP, about 400 parallel regions per forward for mnv3-small. In an
mnv3det process torch is imported first, and its libgomp (loaded RTLD_GLOBAL) then also serves ncnn's OpenMP calls
(its wheel bundles a libgomp of its own, which stays unused), with the wait policy set for PyTorch: a 10k spin now
(core/threads.py), PASSIVE everywhere until then, and PASSIVE wherever a user sets it. A passive worker thread
sleeps after every region and is woken for the next (strace: ~800 more futex calls per forward with 2 threads than
with 1), which on an idle VM means waking a halted vCPU each time: mnv3-small at 320 took 18.5 ms (PASSIVE) with
2 threads idle, 7.7 ms with 2 threads and 5.4 ms with 1 thread at load average 5. So ncnn runs on one thread unless
`threads` is given (`NCNN_DEFAULT_THREADS`), the reasoning that gives PyTorch one thread for one image; 2 threads
with the 10k spin are faster idle but not yet timed under contention. Spinning (libgomp's default spin count, ncnn's
own libgomp without torch) cost 26 ms at load 5; a spin has to be set before torch loads, so it is torch's choice
too. Option switches made no difference beyond noise at 1 thread (fp16 storage, winograd, sgemm, lightmode:
5.3-5.6 ms, lightmode off 7.0), except packing layout, which is on (off: 13.7 ms).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnv3det.deploy.runtime.backends import ArrayBackend
from mnv3det.deploy.runtime.metadata import meta_imgsz, model_folder, read_metadata
from mnv3det.core.threads import resolve_threads
from mnv3det.errors import UserError

PARAM, BIN = "model.ncnn.param", "model.ncnn.bin"
# ncnn's default thread count when none is given (see "Speed" above): one thread, as for PyTorch on one image.
NCNN_DEFAULT_THREADS = 1


def net_options(net: Any, threads: int | None) -> None:
    """float32 storage and arithmetic everywhere; `threads` threads, one when None (see the module docstring)."""
    opt = net.opt
    opt.use_fp16_packed = False
    opt.use_fp16_storage = False
    opt.use_fp16_arithmetic = False
    opt.use_bf16_storage = False
    opt.use_vulkan_compute = False
    opt.lightmode = True  # free intermediate blobs as soon as they are used
    opt.num_threads = NCNN_DEFAULT_THREADS if threads is None else resolve_threads(threads)


class Backend(ArrayBackend):
    """An ncnn folder (or its .param file) on the CPU; the `Backend` protocol of runtime/backends.py."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", threads: int | None = None):
        import ncnn

        folder, param = model_folder(Path(path), "*.param")
        self.meta = read_metadata(folder)
        weights = param.with_suffix(".bin")
        self.net = ncnn.Net()
        net_options(self.net, threads)
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise UserError(f"could not load ncnn model {param} / {weights.name}; re-export with --format ncnn")
        self.input_name, self.output_name = self.net.input_names()[0], self.net.output_names()[0]
        self.device = torch.device("cpu")
        self.names = list(self.meta["names"])
        self.stride = int(self.meta["stride"])
        self.imgsz = meta_imgsz(self.meta)  # the trained size (what val/detect report), else the exported size
        h, w = self.meta["imgsz"]
        self.fixed_shape = (1, 3, int(h), int(w))
        self._mat = ncnn.Mat

    def run(self, array: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 -> (B, N, 5 + nc) float32, one image per ncnn call."""
        outs = []
        for image in array:
            # ncnn.Mat(ndarray) borrows the array's memory without a reference to it: `pixels` must outlive the
            # extract call. A temporary freed earlier (Mat(np.ascontiguousarray(x[0]))) gets its memory reused,
            # and the output is then wrong by tens of pixels with no error.
            pixels = np.ascontiguousarray(image, dtype=np.float32)
            extractor = self.net.create_extractor()
            extractor.input(self.input_name, self._mat(pixels))
            ret, out = extractor.extract(self.output_name)
            if ret != 0:
                raise RuntimeError(f"ncnn extract failed with code {ret}")
            outs.append(np.array(out))  # copies out of ncnn's memory
            del pixels
        return np.stack(outs)



runner = Backend.runner  # (run, input shape) for the timing worker


def runs_here() -> bool:
    """This runtime runs on every system mnv3det supports."""
    return True
