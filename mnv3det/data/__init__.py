"""Datasets (YOLO txt, COCO json, Pascal VOC xml, the built-in demo set), checks and the training loader.

    spec = load_data("data.yaml")           # or a dataset folder, or None for the demo set
    records = spec.records("train")         # checked ImageRecords; bad samples reported and skipped
    loader = create_dataloader(records, imgsz=640, batch_size=16, augment=True, shuffle=True)

The names below are imported on first use (PEP 562): the loader brings albumentations and OpenCV, which a usage
error (a missing data path) should not wait for. `letterbox` is imported from `mnv3det.data.letterbox` (a package
attribute of that name would be the submodule once it is imported).
"""

from __future__ import annotations

from mnv3det.core.lazy import lazy_exports

_EXPORTS = {
    "demo_data_yaml": "mnv3det.data.demo",
    "DetectionDataset": "mnv3det.data.loader",
    "collate": "mnv3det.data.loader",
    "create_dataloader": "mnv3det.data.loader",
    "dataset_box_sizes": "mnv3det.data.loader",
    "ImageRecord": "mnv3det.data.records",
    "Problem": "mnv3det.data.records",
    "DataSpec": "mnv3det.data.spec",
    "load_data": "mnv3det.data.spec",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports("mnv3det.data", _EXPORTS)
