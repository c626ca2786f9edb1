"""Evaluation overhead beside inference: metric time for N images x D detections, both metric paths.

    python benchmarks/bench_eval.py                 # 5,000 images x 100 detections (COCO val size)
    python benchmarks/bench_eval.py --images 500    # a quicker look

Synthetic data shaped like COCO val: 80 classes, ~7 ground-truth boxes per image on 640x480
images, D detections per image (jittered copies of the ground truth plus random boxes, random
scores). Timed:
  fast     DetectionStats.update per image + compute()            (the per-epoch path)
  coco     records -> in-memory COCO, detections -> results dicts, COCOeval evaluate/accumulate/summarize
Inference: mnv3-small (80 classes, random weights, BN fused) at 640x640, batch 1, timed on a few
images and extrapolated to N images (said so in the output). Also prints how far the fast AP50 and
AP50-95 are from pycocotools' on this data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mnv3det.data.records import ImageRecord
from mnv3det.evaluate.coco_eval import detections_to_coco, records_to_coco, run_cocoeval
from mnv3det.evaluate.metrics import DetectionStats

NC, W, H = 80, 640, 480


def synthetic(n_images: int, n_dets: int, seed: int = 0) -> tuple[list[ImageRecord], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    records, dets = [], []
    for i in range(n_images):
        m = int(rng.integers(1, 15))  # ~7 boxes per image on average, like COCO val
        xy = rng.uniform(0, [W - 40, H - 40], (m, 2))
        wh = rng.uniform(8, 300, (m, 2))
        boxes = np.c_[xy, np.minimum(xy + wh, [W, H])].astype(np.float32)
        classes = rng.integers(0, NC, m)
        records.append(ImageRecord(Path(f"{i}.jpg"), W, H, boxes, classes, np.zeros(m, bool), np.zeros(m, bool), i + 1))
        k = min(n_dets, 3 * m)  # jittered copies of the ground truth, the rest random
        src = rng.integers(0, m, k)
        b = boxes[src].astype(np.float64)
        size = np.c_[b[:, 2] - b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]]
        b = b + rng.normal(0, 0.08, b.shape) * size
        cls = np.where(rng.random(k) < 0.9, classes[src], rng.integers(0, NC, k))
        r_xy = rng.uniform(0, [W - 20, H - 20], (n_dets - k, 2))
        r = np.c_[r_xy, r_xy + rng.uniform(5, 200, (n_dets - k, 2))]
        det = np.r_[np.c_[b, rng.uniform(0.2, 1.0, k), cls], np.c_[r, rng.uniform(0.001, 0.6, n_dets - k),
                                                                     rng.integers(0, NC, n_dets - k)]]
        det[:, :4] = np.round(det[:, :4], 3)
        dets.append(det)
    return records, dets


def time_fast(records, dets) -> tuple[float, dict[str, float]]:
    t = time.perf_counter()
    stats = DetectionStats(NC)
    for rec, det in zip(records, dets):
        stats.update(det[:, :4], det[:, 4], det[:, 5], rec.boxes, rec.classes)
    m = stats.compute()
    return time.perf_counter() - t, {"map50": m.map50, "map": m.map}


def time_coco(records, dets) -> tuple[float, float, dict[str, float]]:
    ids = list(range(NC))
    t = time.perf_counter()
    results = [r for rec, det in zip(records, dets) for r in detections_to_coco(rec.image_id, det, ids)]
    gt = records_to_coco(records, ids, [str(i) for i in ids])
    t_convert = time.perf_counter() - t
    stats = run_cocoeval(gt, results).stats
    return time.perf_counter() - t, t_convert, stats


def time_inference(runs: int) -> float:
    from mnv3det.models import build_model

    model = build_model("mnv3-small", nc=NC).eval().fuse()
    x = torch.rand(1, 3, 640, 640)
    with torch.inference_mode():
        model(x)  # warm-up
        t = time.perf_counter()
        for _ in range(runs):
            model(x)
    return (time.perf_counter() - t) / runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=100)
    ap.add_argument("--infer-runs", type=int, default=5, help="images timed for the inference estimate")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for inference")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    records, dets = synthetic(args.images, args.dets)
    print(f"{args.images} images x {args.dets} detections ({sum(len(d) for d in dets)} total), "
          f"{sum(r.num_boxes for r in records)} ground-truth boxes, {NC} classes")
    t_fast, fast = time_fast(records, dets)
    t_coco, t_convert, coco = time_coco(records, dets)
    per_image = time_inference(args.infer_runs)
    t_infer = per_image * args.images
    print(f"fast metrics:  {t_fast:7.2f} s  ({1000 * t_fast / args.images:.2f} ms/image)")
    print(f"pycocotools:   {t_coco:7.2f} s  ({1000 * t_coco / args.images:.2f} ms/image; "
          f"{t_convert:.2f} s of it building the COCO objects)")
    print(f"inference:     {t_infer:7.2f} s  (mnv3-small 640x640 batch 1, {args.threads} thread(s): "
          f"{1000 * per_image:.1f} ms/image measured on {args.infer_runs} images, extrapolated to {args.images})")
    print(f"overhead vs inference: fast {100 * t_fast / t_infer:.1f} %, pycocotools {100 * t_coco / t_infer:.1f} %")
    print(f"AP50     fast {fast['map50']:.6f}  pycocotools {coco['map50']:.6f}  diff {fast['map50'] - coco['map50']:+.2e}")
    print(f"AP50-95  fast {fast['map']:.6f}  pycocotools {coco['map']:.6f}  diff {fast['map'] - coco['map']:+.2e}")


if __name__ == "__main__":
    main()
