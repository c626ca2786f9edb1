"""Letterbox, mosaic/affine box consistency, the loader's batch contract, determinism and failure handling."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_convert

from mnv3det.data import ImageRecord, create_dataloader, dataset_box_sizes, load_data
from mnv3det.data.letterbox import letterbox
from mnv3det.data.demo import DEMO_NAMES, make_demo_image
from mnv3det.core.postprocess import scale_boxes

RED = (0, 0, 255)  # BGR


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNV3DET_CACHE", str(tmp_path / "cache"))


def _patch_records(root: Path, sizes: list[tuple[int, int]]) -> list[ImageRecord]:
    """Gray images (h, w) with one red rectangle each; the record's box is exactly the rectangle."""
    root.mkdir(parents=True, exist_ok=True)
    records = []
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate(sizes):
        img = np.full((h, w, 3), 90, np.uint8)
        bw, bh = int(rng.integers(w // 6, w // 2)), int(rng.integers(h // 6, h // 2))
        x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        img[y1 : y1 + bh, x1 : x1 + bw] = RED
        path = root / f"{k}.png"
        cv2.imwrite(str(path), img)
        records.append(
            ImageRecord(path, w, h, np.array([[x1, y1, x1 + bw, y1 + bh]], np.float32), np.array([0]), np.zeros(1, bool), np.zeros(1, bool), k)
        )
    return records


def test_letterbox_hand_computed() -> None:
    img = np.zeros((100, 200, 3), np.uint8)  # h=100, w=200
    out, ratio, pad = letterbox(img, 64)
    # scale 64/200 = 0.32 -> 64 x 32, then 16 px of padding above and below
    assert out.shape == (64, 64, 3)
    assert ratio == (0.32, 0.32) and pad == (0.0, 16.0)
    assert (out[:16] == 114).all() and (out[48:] == 114).all() and (out[16:48] == 0).all()
    out, ratio, pad = letterbox(img, 64, auto=True, stride=32)
    assert out.shape == (32, 64, 3) and pad == (0.0, 0.0)
    out, ratio, _ = letterbox(np.zeros((10, 20, 3), np.uint8), 64, scaleup=False)
    assert ratio == (1.0, 1.0) and out.shape == (64, 64, 3)


def _red_mask(img_chw: torch.Tensor) -> np.ndarray:
    rgb = img_chw.permute(1, 2, 0).numpy().astype(int)
    return (rgb[..., 0] > 150) & (rgb[..., 1] < 70) & (rgb[..., 2] < 70)


@pytest.mark.parametrize("degrees", [0.0, 15.0])
def test_mosaic_and_affine_keep_boxes_on_their_pixels(tmp_path: Path, degrees: float) -> None:
    records = _patch_records(tmp_path, [(120, 160), (200, 100), (90, 90), (150, 240)])
    hyp = {"hsv_h": 0, "hsv_s": 0, "hsv_v": 0, "albumentations": 0, "degrees": degrees, "mosaic": 1.0, "scale": 0.5, "translate": 0.1}
    loader = create_dataloader(records, imgsz=128, batch_size=4, augment=True, hyp=hyp, workers=0, shuffle=True, seed=3)
    n_boxes = 0
    for _ in range(3):
        for images, targets, _, _ in loader:
            for i in range(images.shape[0]):
                red = _red_mask(images[i])
                t = targets[targets[:, 0] == i]
                boxes = box_convert(t[:, 2:] * 128, "cxcywh", "xyxy").numpy()
                covered = np.zeros_like(red)
                for x1, y1, x2, y2 in boxes:
                    ya, yb, xa, xb = max(0, int(y1) - 2), int(np.ceil(y2)) + 2, max(0, int(x1) - 2), int(np.ceil(x2)) + 2
                    covered[ya:yb, xa:xb] = True
                    ys, xs = np.nonzero(red[ya:yb, xa:xb])
                    assert len(xs), "a box over no patch pixels"
                    # The patch reaches every side of its box (the box is not larger than the patch).
                    assert xs.min() + xa <= x1 + 3 and xs.max() + xa >= x2 - 4
                    assert ys.min() + ya <= y1 + 3 and ys.max() + ya >= y2 - 4
                    if degrees == 0:  # an axis-aligned patch fills its box
                        assert red[int(np.ceil(y1)) : int(y2), int(np.ceil(x1)) : int(x2)].mean() > 0.9
                    n_boxes += 1
                # Red pixels outside every box would be an object without a label; only patches mostly cut away
                # by the border may be dropped (the candidate filter), so what remains must touch the border.
                n, _, stats, _ = cv2.connectedComponentsWithStats((red & ~covered).astype(np.uint8))
                for x, y, w, h, area in stats[1:]:
                    assert area <= 20 or x == 0 or y == 0 or x + w == 128 or y + h == 128
    assert n_boxes > 10


def test_batch_contract_and_scale_back(tmp_path: Path) -> None:
    records = _patch_records(tmp_path, [(120, 160), (200, 100), (90, 90)])
    loader = create_dataloader(records, imgsz=96, batch_size=3, augment=False, workers=0)
    images, targets, paths, shapes = next(iter(loader))
    assert images.dtype == torch.uint8 and images.shape == (3, 3, 96, 96)
    assert targets.dtype == torch.float32 and targets.shape == (3, 6)
    assert targets[:, 0].tolist() == [0, 1, 2] and (targets[:, 2:] >= 0).all() and (targets[:, 2:] <= 1).all()
    assert paths == [str(r.path) for r in loader.dataset.records]
    for i, (rec, ((h0, w0), ratio_pad)) in enumerate(zip(records, shapes)):
        assert (h0, w0) == (rec.height, rec.width)
        xyxy = box_convert(targets[i : i + 1, 2:] * 96, "cxcywh", "xyxy")
        back = scale_boxes(xyxy, (96, 96), (h0, w0), ratio_pad)
        np.testing.assert_allclose(back.numpy(), rec.boxes, atol=1.0)
        assert _red_mask(images[i]).sum() > 0


def test_rect_batches_sort_by_aspect_ratio(tmp_path: Path) -> None:
    sizes = [(100, 200), (200, 100), (100, 210), (210, 100)]
    records = _patch_records(tmp_path, sizes)
    loader = create_dataloader(records, imgsz=64, batch_size=2, augment=False, rect=True, workers=0)
    ds = loader.dataset
    assert [r.height / r.width for r in ds.records] == sorted(r.height / r.width for r in records)
    shapes = [tuple(b[0].shape[2:]) for b in loader]
    assert shapes == [tuple(ds.batch_shapes[0]), tuple(ds.batch_shapes[1])]
    assert shapes[0][0] < shapes[0][1] and shapes[1][0] > shapes[1][1]  # wide batch, then tall batch
    assert all(s % 32 == 0 for shape in shapes for s in shape)


def test_same_seed_same_batches_with_workers(tmp_path: Path) -> None:
    records = _patch_records(tmp_path, [(60, 80)] * 6)

    def first_batches(seed: int) -> list[torch.Tensor]:
        loader = create_dataloader(records, imgsz=64, batch_size=3, augment=True, workers=2, shuffle=True, seed=seed)
        return [b[0] for b in loader]

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_set_mosaic_reaches_persistent_workers(tmp_path: Path) -> None:
    records = _patch_records(tmp_path, [(60, 80)] * 4)
    loader = create_dataloader(records, imgsz=64, batch_size=4, augment=True, workers=1, seed=0)
    canvas = ((64, 64), ((1.0, 1.0), (0.0, 0.0)))
    assert all(s == canvas for s in next(iter(loader))[3])  # mosaic samples
    loader.dataset.set_mosaic(False)
    assert all(s[0] == (60, 80) for s in next(iter(loader))[3])  # plain letterboxed samples


def test_corrupt_image_mid_epoch_is_reported_once_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    records = _patch_records(tmp_path, [(60, 80)] * 4)
    records[1].path.write_bytes(b"broken after the checks")
    train = create_dataloader(records, imgsz=64, batch_size=4, augment=True, workers=0)
    for _ in range(2):
        images, _, paths, _ = next(iter(train))
        assert images.shape[0] == 4 and str(records[1].path) not in paths
    assert capsys.readouterr().err.count("cannot decode") == 1
    val = create_dataloader(records, imgsz=64, batch_size=4, augment=False, workers=0)
    images, targets, paths, _ = next(iter(val))
    assert paths[1] == str(records[1].path)  # the record order is kept for evaluation
    assert (images[1] == 114).all() and 1 not in targets[:, 0].tolist()


def test_ram_cache_gives_the_same_samples(tmp_path: Path) -> None:
    records = _patch_records(tmp_path, [(60, 80), (70, 50)])
    plain = next(iter(create_dataloader(records, imgsz=64, batch_size=2, augment=False, workers=0)))
    loader = create_dataloader(records, imgsz=64, batch_size=2, augment=False, workers=0, cache="ram")
    assert loader.dataset.ram is not None and all(x is not None for x in loader.dataset.ram)
    cached = next(iter(loader))
    assert torch.equal(plain[0], cached[0]) and torch.equal(plain[1], cached[1])


def test_dataset_box_sizes_hand_computed() -> None:
    rec = ImageRecord(Path("x.jpg"), 200, 100, np.array([[0, 0, 50, 20], [10, 10, 30, 30]], np.float32), np.array([0, 1]),
                      np.array([False, True]), np.zeros(2, bool), 0)
    np.testing.assert_allclose(dataset_box_sizes([rec], 64), [[16.0, 6.4]])  # crowd box left out; scale 64/200


@pytest.mark.slow  # generates the demo set: ~3 s of CPU, more on a loaded machine
def test_demo_set_is_deterministic_and_loads() -> None:
    a_img, a_obj = make_demo_image(np.random.default_rng(5))
    b_img, b_obj = make_demo_image(np.random.default_rng(5))
    assert np.array_equal(a_img, b_img) and a_obj == b_obj
    spec = load_data(None)
    assert spec.names == DEMO_NAMES and spec.format == "yolo"
    train, val = spec.records("train"), spec.records("val")
    assert (len(train), len(val)) == (320, 80)
    assert all(r.num_boxes >= 1 for r in train)
    assert set(np.concatenate([r.classes for r in train]).tolist()) == set(range(len(DEMO_NAMES)))
    assert load_data("demo").records("val")[0].path == val[0].path  # second use: no regeneration
