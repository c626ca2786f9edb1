"""Synthetic detection scenes with exact boxes, made on the fly: `SceneGenerator(config)(index) -> Scene`.

    gen = SceneGenerator(SceneConfig(size=416), seed=0)
    scene = gen(123)                 # the same (seed, index) always gives the same scene
    scene.image                      # uint8 (416, 416, 3) BGR
    scene.boxes, scene.classes       # float32 (n, 4) xyxy pixels of the *visible* part, int64 (n,)

A scene: a procedural background (textures.py), then 1..max_objects objects painted one over another. Each
object is a shape family's mask (shapes.py; the family is the class) stretched, rotated, filled with a random
texture, sometimes outlined or shadowed, and alpha-blended with an anti-aliased edge. A label map records
which object owns each pixel, so a box is the tight box of what is still visible; an object may not hide more
than half of an earlier one, so every labelled object is visible enough to be found. Objects may run off the
image edge (truncated, as in real photos). Last, camera-like changes: contrast, gamma, blur, noise, JPEG.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from mnv3det.data.synth.shapes import FAMILIES, ShapeDrawer
from mnv3det.data.synth.textures import background, fill, random_colour

Rng = np.random.Generator
GENERATOR_VERSION = 1  # bump when a change makes the same (seed, index) give another scene
MIN_CONTRAST = 40.0  # L1 distance (BGR, 0..255) between an object's mean colour and the mean of what it covers


@dataclass(frozen=True)
class SceneConfig:
    """What the generator draws. Stored in every pretraining checkpoint, so a run can be made again."""

    size: int = 416  # square image side in pixels
    min_objects: int = 1
    max_objects: int = 16
    min_scale: float = 0.03  # object size (side of its unrotated square) as a fraction of the image side,
    max_scale: float = 0.6  # drawn log-uniformly between the two
    families: tuple[str, ...] = FAMILIES  # shape families; each one is a class
    single_class: bool = False  # True: every object is class 0 ("object"), a class-agnostic pretext task
    max_hidden: float = 0.5  # an object may cover at most this fraction of an earlier object's area
    truncate: float = 0.3  # at most this fraction of an object's side may run off the image

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", tuple(self.families))  # lists from yaml/json

    @property
    def names(self) -> list[str]:
        return ["object"] if self.single_class else list(self.families)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["families"] = list(self.families)
        out["version"] = GENERATOR_VERSION
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SceneConfig":
        return cls(**{k: v for k, v in values.items() if k != "version"})

    def problems(self) -> list[str]:
        """What is impossible in this config (empty when it can be drawn)."""
        out = []
        if self.size < 64:
            out.append(f"size {self.size} is below 64")
        if not 1 <= self.min_objects <= self.max_objects <= 200:
            out.append(f"objects per image {self.min_objects}..{self.max_objects} must satisfy 1 <= min <= max <= 200")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            out.append(f"object scale {self.min_scale}..{self.max_scale} must satisfy 0 < min <= max <= 1")
        if 0 < self.min_scale and self.min_scale * self.size < 4:
            smallest = math.ceil(4 / self.min_scale / 32) * 32  # the first multiple of 32 (sizes are) that fits
            out.append(f"min_scale {self.min_scale} gives objects under 4 px at size {self.size}; use a size of "
                       f"{smallest} or more")
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            out.append(f"unknown shape families {unknown}; known: {', '.join(FAMILIES)}" if unknown
                       else "no shape family chosen")
        if not 0 < self.max_hidden <= 1 or not 0 <= self.truncate < 1:
            out.append("max_hidden must be in (0, 1] and truncate in [0, 1)")
        return out


@dataclass
class Scene:
    image: np.ndarray  # uint8 (size, size, 3) BGR
    boxes: np.ndarray  # float32 (n, 4) xyxy pixels
    classes: np.ndarray  # int64 (n,)
    family_ids: list[int] = field(default_factory=list)  # index into FAMILIES per object (before single_class)


class SceneGenerator:
    """Scenes as a pure function of (seed, index): any worker, any order, any resume gives the same images."""

    def __init__(self, config: SceneConfig, seed: int = 0) -> None:
        problems = config.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.config = config
        self.seed = int(seed)
        self.drawer = ShapeDrawer(self.seed)
        self.family_ids = [FAMILIES.index(f) for f in config.families]

    def __call__(self, index: int) -> Scene:
        rng = np.random.default_rng([self.seed, GENERATOR_VERSION, int(index)])
        cfg = self.config
        s = cfg.size
        img = background(rng, s)
        owner = np.zeros((s, s), np.int16)  # 0 = background, k + 1 = object k
        areas: list[int] = []  # painted area of each object (pixels inside the image)
        visible: list[int] = []  # of which still visible
        painted: list[int] = []  # family index per painted object
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        for _ in range(n):
            for _attempt in range(4):  # a placement that hides too much of an earlier object is retried
                family = self._paint(rng, img, owner, areas, visible)
                if family is not None:
                    painted.append(family)
                    break
        boxes, families = _visible_boxes(owner, painted)
        classes = np.array([self.family_ids.index(f) for f in families], np.int64)
        image = _camera(rng, img)
        if cfg.single_class:
            classes = np.zeros_like(classes)
        return Scene(image, boxes, classes, families)

    # -- one object -------------------------------------------------------------------------------
    def _paint(self, rng: Rng, img: np.ndarray, owner: np.ndarray, areas: list[int], visible: list[int]) -> int | None:
        """Paint one random object; its family index, or None when the draw was refused (too small, or it would
        hide too much of an earlier object)."""
        cfg, s = self.config, self.config.size
        family = self.family_ids[int(rng.integers(len(self.family_ids)))]
        side = s * math.exp(rng.uniform(math.log(cfg.min_scale), math.log(cfg.max_scale)))
        m = max(8, int(round(side)))
        mask = self.drawer(family, rng, m)
        stretch = math.exp(rng.uniform(-0.5, 0.5))  # aspect ratio 0.6..1.6
        mh, mw = max(4, round(m * stretch ** 0.5)), max(4, round(m / stretch ** 0.5))
        mask = _rotate(cv2.resize(mask, (mw, mh), interpolation=cv2.INTER_LINEAR), rng.uniform(0, 360))
        h, w = mask.shape
        out = cfg.truncate
        x0 = int(rng.integers(-int(w * out), max(-int(w * out) + 1, s - w + int(w * out) + 1)))
        y0 = int(rng.integers(-int(h * out), max(-int(h * out) + 1, s - h + int(h * out) + 1)))
        # Clip the object's square to the image: (ys, xs) on the image, (my, mx) on the mask.
        ys, xs = slice(max(0, y0), min(s, y0 + h)), slice(max(0, x0), min(s, x0 + w))
        my, mx = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
        alpha = mask[my, mx].astype(np.float32) / 255.0
        solid = alpha > 0.5
        area = int(solid.sum())
        if area < 16:
            return None
        region = owner[ys, xs]  # a view: writing into it writes into `owner`
        covered = np.bincount(region[solid], minlength=len(areas) + 1)[1:]
        left = np.asarray(visible, np.int64) - covered
        if len(areas) and np.any(left < (1 - cfg.max_hidden) * np.asarray(areas)):
            return None
        self._composite(rng, img, ys, xs, alpha)
        region[solid] = len(areas) + 1
        visible[:] = left.tolist()
        areas.append(area)
        visible.append(area)
        return family

    @staticmethod
    def _composite(rng: Rng, img: np.ndarray, ys: slice, xs: slice, alpha: np.ndarray) -> None:
        """Blend a textured, sometimes outlined or shadowed object into img[ys, xs] (in place)."""
        h, w = alpha.shape
        patch = img[ys, xs]
        if rng.random() < 0.2:  # a soft drop shadow under the object
            shadow = cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.05 * max(h, w)))
            dx, dy = (int(v) for v in rng.integers(-max(2, w // 12), max(3, w // 12 + 1), 2))
            shadow = np.roll(shadow, (dy, dx), (0, 1)) * rng.uniform(0.3, 0.6)
            patch *= (1 - shadow)[..., None]
        surface = fill(rng, h, w)
        weight = alpha[..., None] / max(float(alpha.sum()), 1.0)
        if np.abs((surface * weight).sum((0, 1)) - (patch * weight).sum((0, 1))).sum() < MIN_CONTRAST:
            surface = 255.0 - surface  # nearly the colour of what lies under it: no one could label that
        if rng.random() < 0.25:  # an outline in another colour
            k = max(1, round(max(h, w) * rng.uniform(0.02, 0.06)))
            inner = cv2.erode(alpha, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
            surface = surface * inner[..., None] + random_colour(rng) * (1 - inner)[..., None]
        if rng.random() < 0.3:  # out of focus
            alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.5, 1.5))
        a = alpha[..., None]
        patch[:] = patch * (1 - a) + surface * a


def _visible_boxes(owner: np.ndarray, painted: list[int]) -> tuple[np.ndarray, list[int]]:
    """Tight xyxy box of each object's visible pixels (owner == k + 1) and its family; objects left with under
    16 visible pixels are dropped. One sort of the label map instead of a full scan per object."""
    labels = owner.ravel()
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=len(painted) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    width = owner.shape[1]
    boxes, kept = [], []
    for k in range(1, len(painted) + 1):
        if counts[k] < 16:
            continue
        flat = order[starts[k]: starts[k + 1]]
        yy, xx = flat // width, flat % width
        boxes.append((xx.min(), yy.min(), xx.max() + 1, yy.max() + 1))
        kept.append(painted[k - 1])
    return np.array(boxes, np.float32).reshape(-1, 4), kept


def _rotate(mask: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre onto a canvas just large enough, then crop to the mask's own extent."""
    h, w = mask.shape
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    cos, sin = abs(rot[0, 0]), abs(rot[0, 1])
    nw, nh = int(h * sin + w * cos) + 2, int(h * cos + w * sin) + 2
    rot[0, 2] += nw / 2 - w / 2
    rot[1, 2] += nh / 2 - h / 2
    out = cv2.warpAffine(mask, rot, (nw, nh), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(out > 127)
    if len(xs) == 0:
        return out
    return out[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]


def _camera(rng: Rng, img: np.ndarray) -> np.ndarray:
    """Contrast, brightness, gamma, sometimes grey, blur, sensor noise and JPEG: float32 -> uint8."""
    img = img * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.1:
        img[:] = img.mean(2, keepdims=True)
    if rng.random() < 0.25:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.2))
    if rng.random() < 0.5:
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(1, 8)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 95))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out
