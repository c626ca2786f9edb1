"""Datasets (YOLO txt, COCO json, Pascal VOC xml, the built-in demo set), checks and the training loader.

    spec = load_data("data.yaml")           # or a dataset folder, or None for the demo set
    records = spec.records("train")         # checked ImageRecords; bad samples reported and skipped
    loader = create_dataloader(records, imgsz=640, batch_size=16, augment=True, shuffle=True)
"""

from mnv3det.data.demo import demo_data_yaml
from mnv3det.data.letterbox import letterbox
from mnv3det.data.loader import DetectionDataset, collate, create_dataloader, dataset_box_sizes
from mnv3det.data.records import ImageRecord, Problem
from mnv3det.data.spec import DataSpec, load_data

__all__ = [
    "DataSpec",
    "DetectionDataset",
    "ImageRecord",
    "Problem",
    "collate",
    "create_dataloader",
    "dataset_box_sizes",
    "demo_data_yaml",
    "letterbox",
    "load_data",
]
