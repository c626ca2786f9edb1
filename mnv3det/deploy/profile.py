"""What a model costs: parameters, MACs/FLOPs per yaml row, and CPU latency (PyTorch eager, ONNX Runtime).

FLOPs follow YOLOv5's GFLOPs convention, FLOPs = 2 x MACs, and are counted by
`torch.utils.flop_counter.FlopCounterMode` (convolutions and matmuls; element-wise ops such as
activations, SE scaling and additions are not counted, as in YOLOv5's figures).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mnv3det.core.imgsz import ImgSizeLike, check_imgsz
from mnv3det.errors import UserError
from mnv3det.models import DetectionModel, build_model
from mnv3det.models.graph import gather_inputs

# Blocks whose cost is compared with a standard conv of the same input/output shape.
SEPARABLE_BLOCKS = ("MobileNet_Block", "DWSConv", "InvertedResidual")


@dataclass
class RowCost:
    """Cost of one yaml row at the profiled input size."""

    index: int
    source: int | list[int]
    module: str
    args: list[Any]
    out_shape: list[Any]  # (B, C, H, W); Detect: its decoded (B, N, 5 + nc)
    params: int
    macs: int
    # For depthwise-separable blocks: MACs of a standard k x k conv with the same in/out shape,
    # and the block's MACs as a fraction of it (the source's 1/N + 1/Dk^2 saving).
    std_conv_macs: int | None = None
    vs_std_conv: float | None = None
    separable_theory: float | None = None  # 1/N + 1/Dk^2 (N = out channels) for DWSConv

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass
class ModelProfile:
    """Costs of one model; latencies in milliseconds (median), None when not measured."""

    recipe: str
    imgsz: int
    batch: int
    nc: int
    params: int
    macs: int
    rows: list[RowCost] = field(default_factory=list)
    threads: int = 1
    runs: int = 0
    eager_ms: float | None = None
    ort_ms: float | None = None
    ort_note: str | None = None  # why ONNX Runtime was skipped

    @property
    def gflops(self) -> float:
        return 2 * self.macs / 1e9

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gflops"] = round(self.gflops, 4)
        for row, obj in zip(data["rows"], self.rows):
            row["flops"] = obj.flops
        return data


@torch.no_grad()
def row_costs(model: DetectionModel, imgsz: int, batch: int = 1) -> list[RowCost]:
    """Run the graph row by row under FlopCounterMode (eval mode, so nothing is changed)."""
    model = copy.deepcopy(model).eval()
    x = torch.zeros(batch, 3, imgsz, imgsz)
    outputs: list[Any] = []
    costs: list[RowCost] = []
    for layer in model.layers:
        inp = gather_inputs(layer.f, x, outputs)
        with FlopCounterMode(display=False) as counter:
            out = layer(inp)
        outputs.append(out)
        cost = RowCost(
            index=layer.i,
            source=layer.f,
            module=layer.type,
            args=_row_args(model, layer.i),
            out_shape=list(out.shape),
            params=sum(p.numel() for p in layer.parameters()),
            macs=counter.get_total_flops() // 2,
        )
        if layer.type in SEPARABLE_BLOCKS:
            _compare_with_standard_conv(cost, layer, inp, out)
        costs.append(cost)
    return costs


def _row_args(model: DetectionModel, index: int) -> list[Any]:
    """The row's args as the recipe writes them (before width scaling)."""
    rows = model.recipe["backbone"] + model.recipe["head"]
    return list(rows[index][3])


def _compare_with_standard_conv(cost: RowCost, layer: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> None:
    k = int(layer.kernel)
    b, c_in = inp.shape[:2]
    _, c_out, h, w = out.shape
    cost.std_conv_macs = int(b * h * w * c_out * c_in * k * k)
    cost.vs_std_conv = cost.macs / cost.std_conv_macs
    if cost.module == "DWSConv":
        cost.separable_theory = 1 / c_out + 1 / k**2


def eager_runner(model: DetectionModel, imgsz: int, batch: int = 1) -> Callable[[], Any]:
    """A no-argument callable that runs one PyTorch eager forward (BN fused, eval, inference mode)."""
    fused = copy.deepcopy(model).eval().fuse()
    x = torch.rand(batch, 3, imgsz, imgsz)

    def run() -> Any:
        with torch.inference_mode():
            return fused(x)

    return run


def ort_runner(
    model: DetectionModel, imgsz: int, batch: int = 1, threads: int = 2
) -> tuple[Callable[[], Any] | None, str | None]:
    """(callable running one ONNX Runtime inference, None), or (None, reason) when onnx/onnxruntime are missing.

    The fused model is exported to a temporary file (opset 17) that is deleted once the session holds it.
    """
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime  # noqa: F401
    except ImportError as err:
        return None, f"ONNX Runtime skipped: {err.name} is not installed (pip install 'mnv3det[export]')"
    from mnv3det.deploy.export.onnx import write_onnx
    from mnv3det.deploy.runtime.backends import ort_cpu_session  # the same graph and settings as `mnv3det export`

    fused = copy.deepcopy(model).eval().fuse()
    x = torch.rand(batch, 3, imgsz, imgsz)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        write_onnx(fused, x, path, meta={})
        session = ort_cpu_session(path, threads)
    feed = {"images": x.numpy()}
    return (lambda: session.run(None, feed)), None


def time_interleaved(
    runners: dict[Any, Callable[[], Any]], runs: int, warmup: int = 3, rounds: int = 5
) -> dict[Any, float]:
    """Median milliseconds per runner over `runs` timed runs each, after `warmup` runs each.

    The runs are taken in `rounds` blocks, the runners' blocks in turn (A's block, B's block, A's ...), each
    block after one untimed run: load from other jobs still falls on every runner alike, but two runners
    never alternate run by run. Alternating two ONNX Runtime sessions run by run keeps both sessions' spinning
    thread pools awake at once, which on a 2-core machine doubled every latency (measured: mnv3-small 33.9 ms
    alternating vs 14.6 ms alone at 640).
    """
    for run in runners.values():
        for _ in range(warmup):
            run()
    rounds = max(1, min(rounds, runs))
    block_sizes = [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]
    times: dict[Any, list[float]] = {key: [] for key in runners}
    for size in block_sizes:
        for key, run in runners.items():
            run()  # untimed: the first run after a switch pays for waking this runner's threads
            for _ in range(size):
                start = time.perf_counter()
                run()
                times[key].append((time.perf_counter() - start) * 1e3)
    return {key: statistics.median(values) for key, values in times.items()}


def _measure_latency(models: list[DetectionModel], profiles: list[ModelProfile], threads: int, runs: int) -> None:
    """Fill eager_ms / ort_ms (or ort_note) of each profile; PyTorch first, then ONNX Runtime, so that the
    two libraries' thread pools never compete."""
    imgsz, batch = profiles[0].imgsz, profiles[0].batch
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        eager = time_interleaved({i: eager_runner(m, imgsz, batch) for i, m in enumerate(models)}, runs)
    finally:
        torch.set_num_threads(previous)
    ort_runners = {}
    for i, model in enumerate(models):
        run, profiles[i].ort_note = ort_runner(model, imgsz, batch, threads)
        if run is not None:
            ort_runners[i] = run
    ort = time_interleaved(ort_runners, runs)
    for i, prof in enumerate(profiles):
        prof.eager_ms, prof.ort_ms = eager[i], ort.get(i)


def profile_models(
    recipes: list[str | Path | dict[str, Any]],
    imgsz: ImgSizeLike = 640,
    nc: int | None = None,
    batch: int = 1,
    threads: int = 2,
    runs: int = 20,
) -> list[ModelProfile]:
    """Build each recipe and measure its costs; latencies (when runs > 0) are timed interleaved across the models."""
    if batch < 1 or threads < 1 or runs < 0:
        raise UserError("--batch and --threads must be >= 1 and --runs >= 0")
    models, profiles = [], []
    for recipe in recipes:
        model = build_model(recipe, nc=nc)
        imgsz = check_imgsz(imgsz, int(model.stride.max())).side(why="profile measures square inputs")
        rows = row_costs(model, imgsz, batch)
        models.append(model)
        profiles.append(
            ModelProfile(
                recipe=recipe if isinstance(recipe, str) else str(recipe) if isinstance(recipe, Path) else "<recipe dict>",
                imgsz=imgsz,
                batch=batch,
                nc=model.nc,
                params=sum(p.numel() for p in model.parameters()),
                macs=sum(r.macs for r in rows),
                rows=rows,
                threads=threads,
                runs=runs,
            )
        )
    if runs > 0:
        _measure_latency(models, profiles, threads, runs)
    return profiles


def profile_model(
    recipe: str | Path | dict[str, Any],
    imgsz: ImgSizeLike = 640,
    nc: int | None = None,
    batch: int = 1,
    threads: int = 2,
    runs: int = 20,
) -> ModelProfile:
    """Costs of one recipe (see profile_models); runs=0 skips latency."""
    return profile_models([recipe], imgsz, nc, batch, threads, runs)[0]


def ratios(profile: ModelProfile, other: ModelProfile) -> dict[str, float | None]:
    """profile / other for params, GFLOPs and latencies (None where either side is missing)."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else round(a / b, 4)

    return {
        "params": ratio(profile.params, other.params),
        "gflops": ratio(profile.gflops, other.gflops),
        "eager_ms": ratio(profile.eager_ms, other.eager_ms),
        "ort_ms": ratio(profile.ort_ms, other.ort_ms),
    }
