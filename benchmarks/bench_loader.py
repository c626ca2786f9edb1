"""Loader throughput: training batches (mosaic + affine + HSV + flips + albumentations) per second.

    python benchmarks/bench_loader.py                       # COCO128 at 640, batch 16, 2 workers
    python benchmarks/bench_loader.py --compare-model mnv3-small

Prints images/s of the loader alone and, with --compare-model, of one CPU training step of that
model (forward + backward of a sum over its raw outputs: the loss itself is cheap next to the
network) so the two can be compared: the loader should deliver at least 2x the model's images/s.
On a shared machine the numbers move with the load; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from mnv3det.data import create_dataloader, load_data

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MNV3DET_SHARED_DATASETS", REPO.parent / "shared" / "datasets")) / "coco128" / "coco128.yaml"


def loader_images_per_s(args: argparse.Namespace) -> float:
    records = load_data(args.data).records("train")
    loader = create_dataloader(
        records, imgsz=args.imgsz, batch_size=args.batch, augment=True, workers=args.workers, shuffle=True, cache=args.cache
    )
    it = iter(loader)
    for _ in range(args.warmup):  # worker start-up and first reads are not throughput
        next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(args.batches):
        try:
            images = next(it)[0]
        except StopIteration:
            it = iter(loader)
            images = next(it)[0]
        n += images.shape[0]
    return n / (time.perf_counter() - t0)


def model_images_per_s(recipe: str, imgsz: int, batch: int, steps: int = 3) -> float:
    from mnv3det.models import build_model

    model = build_model(recipe, nc=80).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, imgsz, imgsz)
    def step() -> None:
        opt.zero_grad()
        sum(p.float().mean() for p in model(x)).backward()
        opt.step()
    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=16, help="timed batches")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cache", default=None, help="'ram' to decode once")
    parser.add_argument("--compare-model", default=None, help="e.g. mnv3-small: also time its CPU training step")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the model step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    ips = loader_images_per_s(args)
    print(f"loader: {ips:.1f} images/s  (imgsz {args.imgsz}, batch {args.batch}, workers {args.workers}, "
          f"cache {args.cache}, {os.cpu_count()} cpus, load avg {load:.1f} at start)")
    if args.compare_model:
        mps = model_images_per_s(args.compare_model, args.imgsz, args.batch)
        print(f"model {args.compare_model} train step: {mps:.1f} images/s ({args.threads} torch thread(s)); "
              f"loader / model = {ips / mps:.1f}x")


if __name__ == "__main__":
    main()
