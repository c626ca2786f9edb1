"""Training throughput (images/s) of the real train step, with the data / forward / backward split.

    python benchmarks/bench_train.py                       # mnv3-small and yolov5n, 416, batch 16, workers 2
    python benchmarks/bench_train.py --threads 1 --threads 2 --json out.json
    python benchmarks/bench_train.py --pretrain --recipe mnv3-small-min --threads 1   # `mnv3det pretrain`'s loop

Runs `train_one_epoch` (loader with augmentation, forward, YOLOv5 loss, backward, optimizer step,
EMA) on COCO128 (../shared/datasets/coco128) or, when absent, the built-in demo set; the first pass
warms up (worker start, allocator), the next `--passes` are timed. `--pretrain` times the pretraining loop
instead: scenes generated on the fly by the loader's workers (hyp.pretrain settings, one class per shape family),
and reports the generator's own scenes/s in one process beside it. Numbers depend on the machine
and on what else runs on it: say so when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from mnv3det.train.config import TrainConfig
from mnv3det.data import create_dataloader, load_data
from mnv3det.train.distributed import DistInfo
from mnv3det.train.loop import train_one_epoch
from mnv3det.train.setup import build_training_model
from mnv3det.train.state import build_state, seed_everything

REPO = Path(__file__).resolve().parents[1]
COCO128 = Path(os.environ.get("MNV3DET_SHARED_DATASETS", REPO.parent / "shared" / "datasets")) / "coco128" / "coco128.yaml"


def bench(recipe: str, data: str | None, imgsz: int, batch: int, workers: int, threads: int, max_images: int,
          passes: int, console: Console, channels_last: bool = True) -> dict:
    cfg = TrainConfig(recipe=recipe, data=data, imgsz=imgsz, batch=batch, workers=workers, threads=threads,
                      device="cpu", epochs=passes + 1, warmup_epochs=0, max_images=max_images,
                      channels_last=channels_last)
    torch.set_num_threads(threads)
    seed_everything(0)
    spec = load_data(data)
    records = spec.records("train")[:max_images]
    model = build_training_model(cfg, list(spec.names), Console(quiet=True))
    loader = create_dataloader(records, imgsz=imgsz, batch_size=batch, augment=True, hyp=cfg.augment_hyp(),
                               workers=workers, shuffle=True, seed=0)
    state = build_state(cfg, model, torch.device("cpu"), len(loader), DistInfo())
    train_one_epoch(state, loader, 0, cfg, console=console, show_progress=False)  # warm-up pass
    runs = [train_one_epoch(state, loader, e + 1, cfg, console=console, show_progress=False) for e in range(passes)]
    images = sum(r.images for r in runs)
    seconds = sum(r.seconds for r in runs)
    split = [sum(getattr(r, k) for r in runs) for k in ("data_s", "forward_s", "backward_s")]
    return {
        "recipe": recipe, "imgsz": imgsz, "batch": batch, "workers": workers, "threads": threads,
        "channels_last": channels_last,
        "images": images, "seconds": round(seconds, 2), "images_per_s": round(images / seconds, 2),
        "data_s": round(split[0], 2), "forward_s": round(split[1], 2), "backward_s": round(split[2], 2),
    }


def bench_pretrain(recipe: str, imgsz: int, batch: int, workers: int, threads: int, max_images: int, passes: int,
                   console: Console) -> dict:
    """`mnv3det pretrain`'s training loop on generated scenes (the stream's loader, hyp.pretrain's optimizer)."""
    from mnv3det.data.synth import SceneConfig, SceneGenerator
    from mnv3det.data.synth.dataset import SceneStream
    from mnv3det.models import build_model
    from mnv3det.train.config import apply_overrides, load_hyp

    scene = SceneConfig(size=imgsz)
    cfg = apply_overrides(TrainConfig(), load_hyp("hyp.pretrain"), "hyp.pretrain")
    cfg = apply_overrides(cfg, dict(recipe=recipe, imgsz=imgsz, batch=batch, workers=workers, threads=threads,
                                    device="cpu", epochs=passes + 1, warmup_epochs=0), "bench")
    torch.set_num_threads(threads)
    seed_everything(0)
    generator = SceneGenerator(scene, seed=0)
    t0 = time.perf_counter()
    for k in range(32):
        generator(k)
    scenes_per_s = 32 / (time.perf_counter() - t0)
    model = build_model(recipe, nc=len(scene.names))
    loader = SceneStream(scene, seed=0, per_epoch=max_images).loader(batch, workers)
    state = build_state(cfg, model, torch.device("cpu"), len(loader), DistInfo())
    runs = []
    for epoch in range(passes + 1):  # the first pass warms up
        loader.sampler.set_epoch(epoch)
        runs.append(train_one_epoch(state, loader, epoch, cfg, console=console, show_progress=False))
    runs = runs[1:]
    images, seconds = sum(r.images for r in runs), sum(r.seconds for r in runs)
    split = [sum(getattr(r, k) for r in runs) for k in ("data_s", "forward_s", "backward_s")]
    return {"recipe": recipe, "imgsz": imgsz, "batch": batch, "workers": workers, "threads": threads,
            "channels_last": True, "pretrain": True, "generator_scenes_per_s": round(scenes_per_s, 1),
            "images": images, "seconds": round(seconds, 2), "images_per_s": round(images / seconds, 2),
            "data_s": round(split[0], 2), "forward_s": round(split[1], 2), "backward_s": round(split[2], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", action="append", help="repeatable; default mnv3-small and yolov5n")
    parser.add_argument("--data", default=None, help="data yaml (default: COCO128 if present, else the demo set)")
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, action="append", help="repeatable; default: cores")
    parser.add_argument("--max-images", type=int, default=64, help="images per pass (64 = 4 batches of 16)")
    parser.add_argument("--passes", type=int, default=1, help="timed passes after one warm-up pass")
    parser.add_argument("--contiguous", action="store_true", help="NCHW tensors instead of channels_last")
    parser.add_argument("--pretrain", action="store_true", help="time the pretraining loop on generated scenes")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data = args.data or (str(COCO128) if COCO128.is_file() else None)
    console = Console(stderr=True)
    rows = []
    for recipe in args.recipe or ["mnv3-small", "yolov5n"]:
        for threads in args.threads or [os.cpu_count() or 1]:
            if args.pretrain:
                rows.append(bench_pretrain(recipe, args.imgsz, args.batch, args.workers, threads, args.max_images,
                                           args.passes, console))
            else:
                rows.append(bench(recipe, data, args.imgsz, args.batch, args.workers, threads, args.max_images,
                                  args.passes, console, channels_last=not args.contiguous))
            console.print(rows[-1])
    table = Table(title=f"training throughput, {args.imgsz}px, batch {args.batch}, workers {args.workers} "
                        f"({'generated scenes' if args.pretrain else data or 'demo set'}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    for col in ("recipe", "threads", "layout", "images/s", "data s", "forward s", "backward s"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["recipe"], str(r["threads"]), "NHWC" if r["channels_last"] else "NCHW", f"{r['images_per_s']:.2f}", f"{r['data_s']:.1f}",
                      f"{r['forward_s']:.1f}", f"{r['backward_s']:.1f}")
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"data": data, "torch": torch.__version__, "time": time.ctime(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
