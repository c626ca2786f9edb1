"""Shared fixtures: where the real datasets live, and a skip when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("MNV3DET_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))

# Two cores on CI: one intra-op thread per test process keeps timings predictable.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def coco128_dir() -> Path:
    path = SHARED_DATASETS / "coco128"
    if not path.is_dir():
        pytest.skip(f"COCO128 not found at {path} (set MNV3DET_SHARED_DATASETS to the folder holding coco128/)")
    return path


@pytest.fixture(scope="session")
def bccd_dir() -> Path:
    path = SHARED_DATASETS / "bccd"
    if not path.is_dir():
        pytest.skip(f"BCCD not found at {path} (set MNV3DET_SHARED_DATASETS to the folder holding bccd/)")
    return path
