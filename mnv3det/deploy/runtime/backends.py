"""Run a detector from a .pt checkpoint, an exported .onnx model or a .torchscript file behind one call.

Every backend takes `images: float Tensor (B, 3, H, W)` RGB in 0..1 and returns the decoded predictions
`Tensor (B, N, 5 + nc)` = (cx, cy, w, h in input pixels, obj, class probs) (anchor-free head: 4 + nc), exactly what
a `DetectionModel` returns in eval mode; or, when `backend.nms` is set (an `export --nms` file), its final
detections `Tensor (B, max_det, 6)` = (x1, y1, x2, y2 in input pixels, score, class), zero rows after each image's
count. `val` and `detect` use this call and nothing else, so an exported file is evaluated by the same code as the
checkpoint it came from.

Exported files carry their own description (class names, strides, input shape, trained size) so they can
be run alone (metadata.py).

`load_backend` asks the format records (deploy/formats.py) which runtime opens the file or folder and calls that
runtime module's `Backend`; a new format adds its record (and runtime module) and needs nothing else from `val` or
`detect`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from mnv3det.core.imgsz import ImgSize
from mnv3det.core.cpu_share import adaptive_governor
from mnv3det.core.threads import TORCH_ONE_IMAGE_THREADS, apply_threads, ort_session_options
from mnv3det.deploy.runtime.metadata import TORCHSCRIPT_META_FILE, check_metadata, meta_imgsz, meta_nms, meta_objectness
from mnv3det.errors import UserError



@runtime_checkable
class Backend(Protocol):
    """What `val` and `detect` need from a model, whatever file it came from."""

    names: list[str]
    stride: int  # largest stride, e.g. 32: inputs must be multiples of it
    fixed_shape: tuple[int, int, int, int] | None  # (B, 3, H, W) of a static export; None when any shape works
    device: torch.device  # where inputs should be placed; outputs come back on it
    imgsz: ImgSize | None  # the size the model was trained at (val/detect's default), None when unknown
    nms: dict[str, Any] | None  # an end-to-end file's NMS ({"conf", "iou", "max_det"}): it returns detections

    def __call__(self, images: Tensor) -> Tensor: ...


def check_outputs(backend: "Backend", path: Path) -> None:
    """One forward at the smallest input the model takes: each output row must hold 5 + len(names) values (YOLOv5
    head) or 4 + len(names) (anchor-free head), or the class names (from the metadata) would be matched to the wrong
    columns, silently."""
    shape = backend.fixed_shape or (1, 3, 2 * backend.stride, 2 * backend.stride)
    out = backend(torch.zeros(shape))
    width = int(out.shape[-1]) if out.ndim == 3 else -1
    if getattr(backend, "nms", None):
        if width != 6 or out.shape[1] != backend.nms["max_det"]:
            raise UserError(f"{path}: its metadata says it ends in NMS (max_det {backend.nms['max_det']}) but its "
                            f"output has shape {tuple(out.shape)}, not (B, max_det, 6); export it again")
        return
    box_columns = 5 if has_objectness_column(backend) else 4  # cx, cy, w, h (+ obj)
    if width != box_columns + len(backend.names):
        source = path / "metadata.json" if path.is_dir() else path
        raise UserError(
            f"{source}: export metadata key 'names' lists {len(backend.names)} classes but the model outputs "
            f"{width - box_columns if width >= box_columns else 'no'} class scores per box; it was edited or belongs "
            "to another model: export the checkpoint again with `mnv3det export`"
        )


def has_objectness_column(backend: "Backend") -> bool:
    """True for YOLOv5-head rows (5 + nc), False for the anchor-free head's (4 + nc): from an export's metadata, or
    from the model of a .pt backend."""
    meta = getattr(backend, "meta", None)
    if meta is not None:
        return meta_objectness(meta)
    return not getattr(getattr(backend, "model", None), "anchor_free", False)


class TorchBackend:
    """A `DetectionModel` (from a checkpoint or in memory) in eval mode; BN fused for speed."""

    def __init__(self, model: torch.nn.Module, names: list[str] | None = None, device: torch.device | None = None):
        self.model = model.eval()
        self.device = device or next(model.parameters()).device
        self.names = list(names if names is not None else getattr(model, "names", None) or [])
        self.stride = int(max(int(s) for s in model.stride))
        self.fixed_shape = None
        self.dtype = next(model.parameters()).dtype
        self.imgsz: ImgSize | None = None  # set from the checkpoint's config when known
        self.nms = None  # raw outputs: predict runs NMS

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: torch.device, threads: int | None = None) -> "TorchBackend":
        from mnv3det.models.checkpoint import load_model

        model, ckpt = load_model(path, device=device, fuse=True)
        backend = cls(model, names=model.names, device=device)
        trained = ckpt.train_imgsz  # val's and detect's default size
        backend.imgsz = ImgSize(trained, trained) if trained else None
        return backend

    def __call__(self, images: Tensor) -> Tensor:
        with torch.inference_mode():
            return self.model(images.to(self.device, self.dtype)).float()


class OnnxBackend:
    """An exported .onnx model run with an onnxruntime InferenceSession (CPU, or CUDA when that provider exists)."""

    def __init__(self, path: str | Path, device: torch.device, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError(
                f"running {path} needs onnxruntime; install it with `pip install mnv3det[export]`"
            ) from None
        path = Path(path)
        providers: list = ["CPUExecutionProvider"]
        self.device = torch.device("cpu")
        if device.type == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
                self.device = device
            else:  # said out loud, never silent: the ONNX model then runs on CPU
                warnings.warn(
                    f"onnxruntime here has no CUDA provider; running {path.name} on CPU "
                    "(install onnxruntime-gpu to use the GPU)",
                    stacklevel=2,
                )
        options = ort_session_options(threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as err:  # protobuf parse errors, unsupported opsets, ...
            reason = str(err).splitlines()[0] if str(err) else ""
            raise UserError(f"could not load ONNX model {path}: {type(err).__name__}: {reason}") from None
        # ORT's pool size is fixed per session: with the thread count left to mnv3det, a second session with fewer,
        # non-spinning threads takes over while other processes hold cores (core/cpu_share.py; built when first needed).
        self._path, self._providers = str(path), providers
        self._fewer: dict[int, Any] = {}
        self._free = options.intra_op_num_threads
        self.governor = adaptive_governor(threads, self._free, device=self.device, set_threads=lambda n: None)
        # The export metadata lives in the model's metadata_props, which onnxruntime exposes directly.
        try:
            meta = json.loads(self.session.get_modelmeta().custom_metadata_map.get("mnv3det", "{}"))
        except json.JSONDecodeError:
            meta = {}
        self.meta = check_metadata(meta, path)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = "float16" if "float16" in inp.type else "float32"
        dims = tuple(inp.shape)
        self.fixed_shape = tuple(int(d) for d in dims) if all(isinstance(d, int) for d in dims) else None
        self.names = list(self.meta["names"])
        self.stride = int(self.meta["stride"])
        self.imgsz = meta_imgsz(self.meta)
        self.nms = meta_nms(self.meta)

    def active_session(self) -> Any:
        """The session for this call: the full one, or while competitors hold cores one sized to the free cores."""
        threads = self.governor.poll() if self.governor is not None else self._free
        if threads >= self._free:
            return self.session
        if threads not in self._fewer:
            import onnxruntime as ort

            options = ort_session_options(threads, spinning=False)  # spinning beside a competitor halves speed
            self._fewer[threads] = ort.InferenceSession(self._path, sess_options=options, providers=self._providers)
        return self._fewer[threads]

    def __call__(self, images: Tensor) -> Tensor:
        array = images.detach().to("cpu", torch.float32).numpy().astype(self.input_dtype, copy=False)
        session = self.active_session()
        return _run_fixed_batch(
            lambda x: torch.from_numpy(session.run(None, {self.input_name: x})[0]).float(),
            array,
            self.fixed_shape,
        ).to(self.device)


class TorchScriptBackend:
    """An exported .torchscript file run with torch.jit.load."""

    def __init__(self, path: str | Path, device: torch.device, threads: int | None = None):
        path = Path(path)
        extra = {TORCHSCRIPT_META_FILE: ""}
        import torchvision  # noqa: F401 (registers torchvision::nms, which an --nms file calls)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 marks torch.jit deprecated; it still works
                self.module = torch.jit.load(str(path), map_location=device, _extra_files=extra).eval()
        except Exception as err:
            raise UserError(f"could not read TorchScript model {path}: {type(err).__name__}: {err}") from None
        try:
            meta = json.loads(extra[TORCHSCRIPT_META_FILE] or "{}")
        except json.JSONDecodeError:
            meta = {}
        self.meta = check_metadata(meta, path)
        self.device = device
        self.names = list(self.meta["names"])
        self.stride = int(self.meta["stride"])
        self.imgsz = meta_imgsz(self.meta)
        self.nms = meta_nms(self.meta)
        self.dtype = torch.float16 if self.meta.get("half") else torch.float32
        # A traced module keeps the shapes it was traced with unless it was exported --dynamic.
        h, w = self.meta["imgsz"]
        self.fixed_shape = None if self.meta.get("dynamic") else (int(self.meta["batch"]), 3, int(h), int(w))

    def __call__(self, images: Tensor) -> Tensor:
        with torch.inference_mode():
            return _run_fixed_batch(
                lambda x: _first(self.module(x)).float(), images.to(self.device, self.dtype), self.fixed_shape
            )


def _first(out: Any) -> Tensor:
    """A model's first output: an --nms file returns (detections, count)."""
    return out[0] if isinstance(out, (tuple, list)) else out


class ArrayBackend:
    """Shared by runtimes that take and return numpy arrays (OpenVINO, ncnn): subclasses set `run(array) -> array`
    (one forward of the runtime alone) and `fixed_shape`; this adds the Backend call and the timing runner."""

    fixed_shape: tuple[int, int, int, int] | None = None
    meta: dict[str, Any] = {}

    @property
    def nms(self) -> dict[str, Any] | None:
        return meta_nms(self.meta)

    def run(self, array: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, images: Tensor) -> Tensor:
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        return _run_fixed_batch(lambda x: torch.from_numpy(self.run(x)), array, self.fixed_shape)

    @classmethod
    def runner(cls, path: Path, threads: int) -> tuple[Callable[[np.ndarray], Any], tuple[int, ...] | None]:
        """(run, input shape) for timing the raw runtime call (no torch conversion) in a fresh process."""
        backend = cls(path, "cpu", threads)
        return backend.run, backend.fixed_shape


def _run_fixed_batch(run, images, fixed_shape: tuple[int, int, int, int] | None) -> Tensor:
    """Call `run` on `images` (B, 3, H, W); a static model of batch b gets chunks of b, the last one zero-padded.

    A size that differs from a static model's own is a clear error rather than a runtime crash deep in ORT.
    """
    if fixed_shape is None:
        return run(images)
    b, _, h, w = fixed_shape
    if tuple(images.shape[2:]) != (h, w):
        raise UserError(
            f"this model was exported for {h}x{w} inputs but got {images.shape[2]}x{images.shape[3]}; "
            f"use --imgsz {h} {w} or re-export with --dynamic"
        )
    n = images.shape[0]
    if n == b:
        return run(images)
    outs = []
    for start in range(0, n, b):
        chunk = images[start : start + b]
        k = chunk.shape[0]
        if k < b:  # pad the batch with zeros; their predictions are dropped below
            pad_shape = (b - k, *chunk.shape[1:])
            if isinstance(chunk, Tensor):
                chunk = torch.cat((chunk, chunk.new_zeros(pad_shape)))
            else:

                chunk = np.concatenate((chunk, np.zeros(pad_shape, dtype=chunk.dtype)))
        outs.append(run(chunk)[:k])
    return torch.cat(outs)


def load_backend(
    weights: str | Path, device: torch.device | str = "cpu", threads: int | None = None, *, one_image: bool = False
) -> Backend:
    """Open `weights` (a .pt checkpoint, or any exported file or folder: deploy/formats.py) as a Backend on `device`.

    `threads`: CPU threads for the runtime (torch intra-op, or ONNX Runtime's pool); None = the cores this
    process may use (`mnv3det.core.threads`), except that PyTorch on CPU with `one_image` (detect, the Python
    API: one image per forward) gets 1 thread, measured faster idle and busy (`TORCH_ONE_IMAGE_THREADS`).
    """
    path = Path(weights)
    device = torch.device(device)
    if device.type == "cpu":
        if threads is None and one_image and path.suffix.lower() in (".pt", ".torchscript"):
            threads = TORCH_ONE_IMAGE_THREADS
        apply_threads(threads)
    from mnv3det.deploy.formats import format_for_path

    if not path.exists():
        from mnv3det.core.near_files import missing_model

        raise missing_model(path)
    fmt = format_for_path(path)  # a folder has no suffix of its own, and users may rename it: its contents say
    if fmt is None:
        raise UserError(f"--weights {path}: unknown model file type {path.suffix.lower()!r}; use one of {_suffixes()}")
    backend = fmt.runtime_module().Backend(path, device, threads)
    check_outputs(backend, path)
    return backend


def ort_cpu_session(path: str | Path, threads: int | None = 2) -> Any:
    """An onnxruntime CPU InferenceSession with the settings `detect`/`val` use (`ort_session_options`)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=ort_session_options(threads), providers=["CPUExecutionProvider"])


def onnx_runner(path: Path, threads: int) -> tuple[Callable[[np.ndarray], Any], tuple[int, ...]]:
    """(run, input shape; -1 for a dynamic axis) for timing an .onnx file with the ORT settings `profile` uses."""
    session = ort_cpu_session(path, threads)
    inp = session.get_inputs()[0]
    return (lambda x: session.run(None, {inp.name: x})), tuple(d if isinstance(d, int) else -1 for d in inp.shape)


def _suffixes() -> str:
    """The suffixes load_backend opens."""
    from mnv3det.deploy.formats import FORMATS

    return ", ".join(dict.fromkeys(s for f in FORMATS.values() for s in f.opens))
