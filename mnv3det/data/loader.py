"""`DetectionDataset` and `create_dataloader`: records -> batches of (images, targets, paths, shapes).

images: uint8 (B, 3, H, W) RGB; targets: float32 (M, 6) [img_idx, cls, cx, cy, w, h] normalised by
the batch's W/H (crowd boxes left out: evaluators read crowd/difficult from `dataset.records`);
paths: list[str]; shapes: ((h0, w0), ((ratio_h, ratio_w), (pad_w, pad_h))) per image for
`scale_boxes` (a mosaic sample gets its canvas size with ratio 1 and pad 0).
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mnv3det.data.augment import (
    apply_albumentations,
    augment_hsv,
    build_albumentations,
    flip_lr,
    flip_ud,
    mixup,
    random_affine,
    resolve_hyp,
)
from mnv3det.data.imageio import UnreadableImage, read_image
from mnv3det.data.letterbox import letterbox
from mnv3det.data.mosaic import mosaic4
from mnv3det.data.records import ImageRecord
from mnv3det.data.report import console, safe
from mnv3det.errors import UserError

log = logging.getLogger("mnv3det.data")
Shapes = tuple[tuple[int, int], tuple[tuple[float, float], tuple[float, float]]]


def _available_memory() -> int:
    """Bytes the kernel reports as available (MemAvailable), or 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class DetectionDataset(Dataset):
    """Records as training or validation samples; see the module docstring for what one item is.

    augment: training pipeline (mosaic, affine, albumentations, HSV, flips, mixup per `hyp`);
    rect: each batch letterboxed to its own stride-aligned rectangle; `records` is then re-ordered
    by aspect ratio (`self.records` is that order, so batch k holds records k*B .. k*B+B-1).
    `set_mosaic(False)` switches mosaic off, also inside running workers (a shared flag).
    """

    def __init__(
        self,
        records: list[ImageRecord],
        *,
        imgsz: int,
        augment: bool,
        hyp: str | dict[str, Any] | None = None,
        rect: bool = False,
        batch_size: int = 16,
        stride: int = 32,
        cache: str | None = None,
        seed: int = 0,
        pad: float = 0.5,
    ) -> None:
        if not records:
            raise UserError("no images to load: the record list is empty")
        self.imgsz = int(imgsz)
        self.augment = augment
        self.hyp = resolve_hyp(hyp if augment else "none")
        self.rect = rect
        self.stride = stride
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)  # replaced per sample by `_seed_sample` when augmenting
        self.album = build_albumentations(self.hyp["albumentations"]) if augment else None
        # Tensors in shared memory: workers (fork or spawn) see a change without a restart.
        self._mosaic_on = torch.ones(1, dtype=torch.bool).share_memory_()
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._reported: set[str] = set()
        self.records = list(records)
        self.batch_shapes: np.ndarray | None = None
        if rect:
            self._init_rect(batch_size, pad)
        self.ram: list[tuple[np.ndarray, tuple[int, int], tuple[int, int]] | None] | None = None
        if cache not in (None, "", "none", "ram"):
            raise UserError(f"--cache {cache!r} is not supported; use 'ram' or leave it out")
        if cache == "ram":
            self._cache_ram()

    # -- setup ---------------------------------------------------------------------------------
    def _init_rect(self, batch_size: int, pad: float) -> None:
        """Sort by aspect ratio (h/w) and give each batch the smallest stride-aligned shape that fits."""
        ar = np.array([r.height / r.width for r in self.records])
        order = ar.argsort(kind="stable")
        self.records = [self.records[i] for i in order]
        ar = ar[order]
        n_batches = math.ceil(len(ar) / batch_size)
        self.batch_index = np.arange(len(ar)) // batch_size
        shapes = np.ones((n_batches, 2))  # (h, w) relative to imgsz
        for b in range(n_batches):
            a = ar[self.batch_index == b]
            lo, hi = a.min(), a.max()
            if hi < 1:  # all wider than tall
                shapes[b] = [hi, 1]
            elif lo > 1:  # all taller than wide
                shapes[b] = [1, 1 / lo]
        self.batch_shapes = (np.ceil(shapes * self.imgsz / self.stride + pad) * self.stride).astype(int)

    def _cache_ram(self) -> None:
        need = sum(self._resized_hw(r)[0] * self._resized_hw(r)[1] * 3 for r in self.records)
        avail = _available_memory()
        if avail and need > 0.5 * avail:
            console.print(f"[yellow]data:[/] --cache ram needs {need / 1e9:.1f} GB, only {avail / 1e9:.1f} GB available; not caching")
            return
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            self.ram = list(pool.map(self._try_read, range(len(self.records))))
        log.info("cached %d images in RAM (%.2f GB)", len(self.records), need / 1e9)

    def _try_read(self, i: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]] | None:
        try:
            return self._read_resized(i)
        except UnreadableImage:
            return None  # reported when the sample is used

    # -- loading -------------------------------------------------------------------------------
    def _resized_hw(self, record: ImageRecord) -> tuple[int, int]:
        r = self.imgsz / max(record.height, record.width)
        return max(1, round(record.height * r)), max(1, round(record.width * r))

    def _read_resized(self, i: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        record = self.records[i]
        img = read_image(record.path)  # BGR, orientation applied: the decoder the checks used
        h0, w0 = img.shape[:2]
        r = self.imgsz / max(h0, w0)
        h, w = max(1, round(h0 * r)), max(1, round(w0 * r))
        if (h, w) != (h0, w0):
            interp = cv2.INTER_LINEAR if (self.augment or h > h0) else cv2.INTER_AREA
            img = cv2.resize(img, (w, h), interpolation=interp)
        return img, (h0, w0), (h, w)

    def load_image(self, i: int) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """(img BGR resized so its longest side is imgsz, (h0, w0) original, (h, w) resized)."""
        if self.ram is not None and self.ram[i] is not None:
            return self.ram[i]  # type: ignore[return-value]
        return self._read_resized(i)

    def _train_boxes(self, i: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Non-crowd boxes of record i in pixels of its resized (h, w) image, and their classes."""
        r = self.records[i]
        keep = ~r.crowd
        boxes = r.boxes[keep] * np.array([w / r.width, h / r.height, w / r.width, h / r.height], np.float32)
        return boxes.astype(np.float32), r.classes[keep]

    def _report_once(self, err: UnreadableImage) -> None:
        """One line per bad image and process (a worker reports what it meets)."""
        if err.path not in self._reported:
            self._reported.add(err.path)
            instead = "another sample is used" if self.augment else "a blank image is used"
            console.print(f"[yellow]data:[/] {safe(err, 400)}; {instead} instead", highlight=False)

    # -- items ---------------------------------------------------------------------------------
    def set_mosaic(self, enabled: bool) -> None:
        """Switch mosaic on or off (e.g. off for the last N epochs); takes effect in running workers."""
        self._mosaic_on.fill_(bool(enabled))

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose random draws `__getitem__` makes (see `_seed_sample`); running workers see it too."""
        self._epoch.fill_(int(epoch))

    def _seed_sample(self, index: int) -> None:
        """Every random draw of sample `index` (mosaic partners, affine, HSV, flips, albumentations) comes from a
        generator seeded by (seed, epoch, index): a pure function of them, whatever the worker, the order or the
        draws before, so a run resumed at an epoch's start augments as the unbroken run did."""
        sequence = np.random.SeedSequence([self.seed % 2**32, int(self._epoch.item()), int(index)])
        self.rng = np.random.default_rng(sequence)
        if self.album is not None:
            self.album.set_random_seed(int(sequence.generate_state(1)[0]))

    @property
    def mosaic_enabled(self) -> bool:
        return bool(self._mosaic_on.item()) and self.hyp["mosaic"] > 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str, Shapes]:
        if self.augment:
            self._seed_sample(index)
        for attempt in range(10):
            i = (index + attempt * 7919) % len(self.records)  # a far-away substitute, deterministic
            try:
                return self._get(index, i)
            except UnreadableImage as err:
                self._report_once(err)
                if not self.augment:
                    return self._blank(index)
        raise UserError(f"10 images in a row around {self.records[index].path} cannot be decoded; run `mnv3det data check`")

    def _blank(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str, Shapes]:
        """A gray image standing in for an undecodable one at validation (keeps record order intact)."""
        r = self.records[index]
        h, w = self._resized_hw(r)
        img = np.full((h, w, 3), 114, np.uint8)
        no_boxes = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
        return self._letterboxed(index, index, img, (r.height, r.width), (h, w), no_boxes)

    def _get(self, index: int, i: int) -> tuple[torch.Tensor, torch.Tensor, str, Shapes]:
        hyp, rng = self.hyp, self.rng
        if self.augment and self.mosaic_enabled and rng.random() < hyp["mosaic"]:
            img, boxes, classes = self._mosaic(i)
            if hyp["mixup"] > 0 and rng.random() < hyp["mixup"]:
                other = self._mosaic(int(rng.integers(0, len(self.records))))
                img, boxes, classes = mixup((img, boxes, classes), other, rng)
            shapes: Shapes = ((img.shape[0], img.shape[1]), ((1.0, 1.0), (0.0, 0.0)))
        else:
            img, hw0, hw = self.load_image(i)
            return self._letterboxed(index, i, img, hw0, hw, self._train_boxes(i, *hw))
        img, boxes, classes = self._photometric(img, boxes, classes)
        return self._to_tensors(index, i, img, boxes, classes, shapes)

    def _mosaic(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        img, _, (h, w) = self.load_image(i)  # the sample itself: its failure goes to __getitem__
        samples = [(img, *self._train_boxes(i, h, w))]
        for _draw in range(20):  # three random partners; an undecodable one is replaced by another draw
            if len(samples) == 4:
                break
            j = int(self.rng.integers(0, len(self.records)))
            try:
                img, _, (h, w) = self.load_image(j)
            except UnreadableImage as err:
                self._report_once(err)
                continue
            samples.append((img, *self._train_boxes(j, h, w)))
        samples += [samples[0]] * (4 - len(samples))  # only when nearly every image is unreadable
        canvas, boxes, classes = mosaic4(samples, self.imgsz, self.rng)
        return random_affine(canvas, boxes, classes, self.rng, self.hyp, (self.imgsz, self.imgsz))

    def _letterboxed(
        self,
        index: int,
        i: int,
        img: np.ndarray,
        hw0: tuple[int, int],
        hw: tuple[int, int],
        boxes_classes: tuple[np.ndarray, np.ndarray],
    ) -> tuple[torch.Tensor, torch.Tensor, str, Shapes]:
        """Letterbox one resized image (and its boxes) to imgsz or its rect batch shape; augment if training."""
        shape = tuple(self.batch_shapes[self.batch_index[index]]) if self.rect else (self.imgsz, self.imgsz)
        boxes, classes = boxes_classes
        img, (rh, rw), (pw, ph) = letterbox(img, shape, auto=False, scaleup=self.augment)
        boxes = boxes * np.array([rw, rh, rw, rh], np.float32) + np.array([pw, ph, pw, ph], np.float32)
        # Ratio from the original image to the network input: resize then letterbox scale.
        shapes: Shapes = (hw0, ((hw[0] / hw0[0] * rh, hw[1] / hw0[1] * rw), (pw, ph)))
        if self.augment:
            img, boxes, classes = random_affine(img, boxes, classes, self.rng, self.hyp, img.shape[:2])
            img, boxes, classes = self._photometric(img, boxes, classes)
        return self._to_tensors(index, i, img, boxes, classes, shapes)

    def _photometric(
        self, img: np.ndarray, boxes: np.ndarray, classes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Albumentations steps, HSV gains and flips (boxes follow the flips)."""
        hyp, rng = self.hyp, self.rng
        img, boxes, classes = apply_albumentations(self.album, img, boxes, classes)
        img = augment_hsv(img, rng, hyp["hsv_h"], hyp["hsv_s"], hyp["hsv_v"])
        if rng.random() < hyp["flipud"]:
            img, boxes = flip_ud(img, boxes)
        if rng.random() < hyp["fliplr"]:
            img, boxes = flip_lr(img, boxes)
        return img, boxes, classes

    def _to_tensors(
        self, index: int, i: int, img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, shapes: Shapes
    ) -> tuple[torch.Tensor, torch.Tensor, str, Shapes]:
        """BGR HWC uint8 + xyxy pixel boxes -> RGB CHW uint8 tensor + (n, 6) normalised labels."""
        h, w = img.shape[:2]
        labels = torch.zeros((len(boxes), 6), dtype=torch.float32)
        if len(boxes):
            b = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32))
            labels[:, 1] = torch.from_numpy(classes.astype(np.float32))
            labels[:, 2] = (b[:, 0] + b[:, 2]) / 2 / w
            labels[:, 3] = (b[:, 1] + b[:, 3]) / 2 / h
            labels[:, 4] = (b[:, 2] - b[:, 0]) / w
            labels[:, 5] = (b[:, 3] - b[:, 1]) / h
        chw = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))  # BGR HWC -> RGB CHW
        return torch.from_numpy(chw), labels, str(self.records[i].path), shapes


def collate(batch: list[tuple[torch.Tensor, torch.Tensor, str, Shapes]]):
    """Stack images (all one size per batch) and concatenate targets with their image index in column 0."""
    images, labels, paths, shapes = zip(*batch)
    counts = torch.tensor([len(lb) for lb in labels])
    targets = torch.cat(labels, 0)
    targets[:, 0] = torch.repeat_interleave(torch.arange(len(labels), dtype=torch.float32), counts)
    return torch.stack(images, 0), targets, list(paths), list(shapes)


def _seed_worker(worker_id: int) -> None:
    """A worker's set-up. Its random draws need no seed here: each sample seeds its own (`_seed_sample`)."""
    cv2.setNumThreads(0)  # workers are the parallelism; OpenCV threads would oversubscribe the cores


def create_dataloader(
    records: list[ImageRecord],
    *,
    imgsz: int,
    batch_size: int,
    augment: bool,
    hyp: str | dict[str, Any] | None = None,
    rect: bool = False,
    stride: int = 32,
    workers: int = 2,
    shuffle: bool = False,
    cache: str | None = None,
    seed: int = 0,
    distributed: bool = False,
) -> DataLoader:
    """A DataLoader over `records` (see the module docstring for a batch); `loader.dataset` is the DetectionDataset.

    Persistent workers when workers > 0, pinned memory only with CUDA, seeded workers. rect=True
    turns shuffling off (batches must keep their shapes). With distributed=True the sampler is a
    DistributedSampler: call `loader.sampler.set_epoch(epoch)` every epoch.
    """
    dataset = DetectionDataset(
        records, imgsz=imgsz, augment=augment, hyp=hyp, rect=rect, batch_size=batch_size, stride=stride, cache=cache, seed=seed
    )
    if rect and shuffle:
        log.warning("rect batches cannot be shuffled; shuffle turned off")
        shuffle = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed) if distributed else None
    workers = max(0, int(workers))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        collate_fn=collate,
        worker_init_fn=_seed_worker,
        persistent_workers=workers > 0,
        generator=generator,
        drop_last=False,
    )


def dataset_box_sizes(records: list[ImageRecord], imgsz: int) -> np.ndarray:
    """float32 (M, 2): width and height of every non-crowd box, in pixels once the image's longest side is imgsz."""
    sizes = []
    for r in records:
        scale = imgsz / max(r.width, r.height)
        b = r.boxes[~r.crowd]
        sizes.append(np.stack((b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]), 1) * scale)
    return np.concatenate(sizes).astype(np.float32) if sizes else np.zeros((0, 2), np.float32)
