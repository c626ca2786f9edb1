"""Synthetic scenes as training batches (made on the fly) and as a fixed validation set (written once).

    stream = SceneStream(SceneConfig(size=416), seed=0, per_epoch=1024)
    loader = stream.loader(batch_size=16, workers=2)   # batches like create_dataloader's
    loader.sampler.set_epoch(3)                          # epoch 3 = scenes 3072..4095 of this seed
    data_yaml = validation_set(SceneConfig(size=416), seed=0, count=200)   # YOLO files under the cache

Training scenes never touch the disk: scene k of a run is a pure function of (seed, k), so workers need no
shared state and a resumed run draws exactly the scenes an unbroken one would have. The validation scenes
come from a separate stream of the same generator and are written as a normal YOLO dataset (the trainer's
validation, `mnv3det val` and `data check` read them like any other), with the run's first 16 training scenes as its
`train` split to look at; they live under the cache folder, keyed by the generator settings, and are re-made when
absent.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from mnv3det.data.cache import cache_dir
from mnv3det.data.loader import Shapes, collate
from mnv3det.data.synth.scene import Scene, SceneConfig, SceneGenerator

TRAIN_STREAM, VAL_STREAM = 0, 1  # scene index = stream * 2**40 + k: the two never meet
SAMPLE_TRAIN_SCENES = 16  # the first training scenes, written beside the validation set to look at (and for `train:`)
LAYOUT = 2  # of the folder validation_set writes (part of its cache key)


def scene_labels(scene: Scene, size: int) -> torch.Tensor:
    """float32 (n, 6) [0, cls, cx, cy, w, h] normalised, as DetectionDataset gives them."""
    labels = torch.zeros((len(scene.boxes), 6), dtype=torch.float32)
    if len(scene.boxes):
        b = torch.from_numpy(scene.boxes)
        labels[:, 1] = torch.from_numpy(scene.classes.astype(np.float32))
        labels[:, 2:4] = (b[:, :2] + b[:, 2:]) / 2 / size
        labels[:, 4:6] = (b[:, 2:] - b[:, :2]) / size
    return labels


class SceneDataset(Dataset):
    """Item k (any non-negative int): (uint8 RGB (3, S, S), labels (n, 6), name, shapes), like DetectionDataset's."""

    def __init__(self, config: SceneConfig, seed: int, per_epoch: int) -> None:
        self.config, self.seed, self.per_epoch = config, seed, per_epoch
        self._generator: SceneGenerator | None = None  # built lazily: in each worker, not pickled to it

    @property
    def generator(self) -> SceneGenerator:
        if self._generator is None:
            self._generator = SceneGenerator(self.config, self.seed)
        return self._generator

    def __len__(self) -> int:
        return self.per_epoch

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, str, Shapes]:
        scene = self.generator(TRAIN_STREAM * 2**40 + k)
        s = self.config.size
        chw = np.ascontiguousarray(scene.image[:, :, ::-1].transpose(2, 0, 1))  # BGR HWC -> RGB CHW
        shapes: Shapes = ((s, s), ((1.0, 1.0), (0.0, 0.0)))
        return torch.from_numpy(chw), scene_labels(scene, s), f"scene-{self.seed}-{k}", shapes


class EpochSampler(Sampler[int]):
    """Scene indices epoch * n .. epoch * n + n - 1 in order; the trainer calls `set_epoch` before each epoch."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.epoch * self.n, (self.epoch + 1) * self.n))

    def __len__(self) -> int:
        return self.n


def _worker_init(_worker_id: int) -> None:
    cv2.setNumThreads(0)  # workers are the parallelism
    get_worker_info().dataset._generator = None  # type: ignore[union-attr]


class SceneStream:
    """The generated training set of a pretraining run: `per_epoch` new scenes per epoch."""

    def __init__(self, config: SceneConfig, seed: int, per_epoch: int) -> None:
        self.dataset = SceneDataset(config, seed, per_epoch)

    @property
    def config(self) -> SceneConfig:
        return self.dataset.config

    def loader(self, batch_size: int, workers: int) -> DataLoader:
        workers = max(0, int(workers))
        return DataLoader(self.dataset, batch_size=batch_size, sampler=EpochSampler(self.dataset.per_epoch),
                          num_workers=workers, collate_fn=collate, worker_init_fn=_worker_init,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
                          prefetch_factor=4 if workers > 0 else None)


def write_scenes(config: SceneConfig, seed: int, count: int, root: Path, split: str = "val") -> None:
    """`count` scenes of the split's stream as images/<split>/*.png + labels/<split>/*.txt (YOLO) under root:
    "val" the validation stream, "train" the first scenes a run trains on."""
    generator = SceneGenerator(config, seed)
    stream = VAL_STREAM if split == "val" else TRAIN_STREAM
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    s = config.size
    for k in range(count):
        scene = generator(stream * 2**40 + k)
        cv2.imwrite(str(root / "images" / split / f"{k:05d}.png"), scene.image)  # lossless: the scene as trained
        rows = [f"{int(c)} {(b[0] + b[2]) / 2 / s:.6f} {(b[1] + b[3]) / 2 / s:.6f} {(b[2] - b[0]) / s:.6f} "
                f"{(b[3] - b[1]) / s:.6f}" for b, c in zip(scene.boxes, scene.classes)]
        (root / "labels" / split / f"{k:05d}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))


def validation_set(config: SceneConfig, seed: int, count: int) -> Path:
    """The data yaml of the validation scenes for (config, seed, count), written on first use.

    Kept under `cache_dir()/synthetic/<key>`; made in a temporary folder and renamed into place under a lock, so
    two runs started together never see half a set.
    """
    key = hashlib.sha256(json.dumps([config.to_dict(), seed, count, LAYOUT], sort_keys=True).encode()).hexdigest()[:16]
    root = cache_dir() / "synthetic" / key
    data_yaml = root / "data.yaml"
    if data_yaml.is_file():
        return data_yaml
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if data_yaml.is_file():  # made by another process while this one waited
            return data_yaml
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root.parent))
        try:
            write_scenes(config, seed, count, tmp)
            write_scenes(config, seed, SAMPLE_TRAIN_SCENES, tmp, split="train")
            data = {"path": str(root), "train": "images/train", "val": "images/val", "names": config.names}
            (tmp / "data.yaml").write_text("# mnv3det synthetic validation scenes (generated; see the pretraining "
                                           "checkpoint for the generator settings)\n"
                                           + yaml.safe_dump(data, sort_keys=False))
            (tmp / "generator.json").write_text(json.dumps({"scene": config.to_dict(), "seed": seed, "count": count}))
            if root.exists():  # a partial folder from an older layout
                shutil.rmtree(root)
            os.rename(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return data_yaml
