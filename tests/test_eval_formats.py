"""The same boxes give the same metrics whether the dataset is VOC xml or YOLO txt."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from mnv3det.data import load_data
from mnv3det.evaluate.coco_eval import detections_to_coco, records_to_coco, run_cocoeval
from mnv3det.evaluate.metrics import DetectionStats

NAMES = ["apple", "pear"]
W, H = 320, 240


def write_datasets(root: Path, rng: np.random.Generator) -> tuple[Path, Path]:
    """Six images with random integer boxes, written once as VOC (1-based pixels) and once as YOLO."""
    voc, yolo = root / "voc", root / "yolo"
    for d in (voc / "JPEGImages", voc / "Annotations", voc / "ImageSets" / "Main", yolo / "images" / "val",
              yolo / "labels" / "val"):
        d.mkdir(parents=True)
    ids = [f"im{i}" for i in range(6)]
    for image_id in ids:
        image = np.full((H, W, 3), rng.integers(0, 255, 3), np.uint8)
        cv2.imwrite(str(voc / "JPEGImages" / f"{image_id}.jpg"), image)
        cv2.imwrite(str(yolo / "images" / "val" / f"{image_id}.jpg"), image)
        objects, lines = [], []
        for _ in range(rng.integers(1, 5)):
            x1, y1 = int(rng.integers(0, W - 60)), int(rng.integers(0, H - 60))
            x2, y2 = x1 + int(rng.integers(20, 60)), y1 + int(rng.integers(20, 60))
            c = int(rng.integers(0, 2))
            objects.append(
                f"<object><name>{NAMES[c]}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin>"
                f"<ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            )
            lines.append(f"{c} {(x1 + x2) / 2 / W:.10f} {(y1 + y2) / 2 / H:.10f} {(x2 - x1) / W:.10f} {(y2 - y1) / H:.10f}")
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{W}</width><height>{H}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>"
        )
        (yolo / "labels" / "val" / f"{image_id}.txt").write_text("\n".join(lines) + "\n")
    for split in ("train", "val"):
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    voc_yaml, yolo_yaml = root / "voc.yaml", root / "yolo.yaml"
    voc_yaml.write_text(yaml.safe_dump({"path": str(voc), "train": "train", "val": "val", "names": NAMES, "format": "voc"}))
    yolo_yaml.write_text(yaml.safe_dump({"path": str(yolo), "train": "images/val", "val": "images/val", "names": NAMES}))
    return voc_yaml, yolo_yaml


def metrics_for(spec, dets_by_name: dict[str, np.ndarray]) -> dict[str, float]:
    records = spec.records("val")
    stats, results = DetectionStats(len(spec.names)), []
    for rec in records:
        det = dets_by_name[rec.path.stem]
        stats.update(det[:, :4], det[:, 4], det[:, 5], rec.boxes, rec.classes, rec.crowd | rec.difficult)
        results += detections_to_coco(rec.image_id, det, spec.category_ids)
    fast = stats.compute()
    coco = run_cocoeval(records_to_coco(records, spec.category_ids, spec.names), results).stats
    return {**coco, "fast_map": fast.map, "fast_map50": fast.map50}


def test_voc_and_yolo_give_the_same_metrics(tmp_path: Path):
    rng = np.random.default_rng(3)
    voc_yaml, yolo_yaml = write_datasets(tmp_path, rng)
    voc, yolo = load_data(voc_yaml), load_data(yolo_yaml)
    assert voc.format == "voc" and yolo.format == "yolo" and voc.names == yolo.names == NAMES
    voc_recs = {r.path.stem: r for r in voc.records("val")}
    yolo_recs = {r.path.stem: r for r in yolo.records("val")}
    assert voc_recs.keys() == yolo_recs.keys() and len(voc_recs) == 6
    dets = {}
    for name, rec in voc_recs.items():  # the same detections for both: jittered copies plus a false positive
        assert np.allclose(rec.boxes, yolo_recs[name].boxes, atol=1e-3)
        jitter = rng.normal(0, 4, rec.boxes.shape)
        det = np.c_[rec.boxes + jitter, rng.random(len(rec.boxes)), rec.classes]
        dets[name] = np.round(np.r_[det, [[5, 5, 60, 50, 0.3, 1]]], 3)
    a, b = metrics_for(voc, dets), metrics_for(yolo, dets)
    assert 0.05 < a["map"] < 0.95
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-6, nan_ok=True), key  # ap_large: no large boxes, NaN
