"""Procedural fills and backgrounds: float32 (h, w, 3) BGR images in 0..255, drawn from formulas.

Backgrounds follow "Learning to See by Looking at Noise" (Baradad et al., 2021): dead-leaves images
(occluding random discs and boxes) and multi-octave smooth noise are among the procedural images whose
statistics transfer best to natural ones. Object fills reuse the same generators at object size, so the
texture never tells the class (the outline does).
"""

from __future__ import annotations

import cv2
import numpy as np

Rng = np.random.Generator


def random_colour(rng: Rng) -> np.ndarray:
    """A BGR colour: saturated or washed-out, dark or bright (uniform in HSV, not in RGB)."""
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(0, 256), rng.integers(20, 256)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def smooth_noise(rng: Rng, h: int, w: int, octaves: int = 4) -> np.ndarray:
    """float32 (h, w) in about -1..1: octaves of bicubically upsampled white noise, 1/f-like amplitudes."""
    out = np.zeros((h, w), np.float32)
    cell = max(h, w) / rng.uniform(2, 6)
    amp = 1.0
    for _ in range(octaves):
        gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
        out += cv2.resize(rng.standard_normal((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC) * amp
        cell /= 2
        amp *= rng.uniform(0.4, 0.7)
        if cell < 2:
            break
    return out / (np.abs(out).max() + 1e-6)


def _two_colour(rng: Rng, t: np.ndarray) -> np.ndarray:
    """Blend two random colours by a field t in 0..1 -> (h, w, 3)."""
    a, b = random_colour(rng), random_colour(rng)
    return a + (b - a) * t[..., None]


def _ramp(rng: Rng, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate grids in 0..1 rotated by a random angle: (along, across)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) / max(h, w)
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) / max(h, w)
    return u, v


def fill(rng: Rng, h: int, w: int) -> np.ndarray:
    """An object's surface: solid, linear or radial gradient (shading), stripes, checks, dots or noise."""
    kind = rng.choice(7, p=[0.25, 0.15, 0.15, 0.12, 0.08, 0.08, 0.17])
    if kind == 0:
        return np.broadcast_to(random_colour(rng), (h, w, 3)).copy()
    if kind == 1:
        u, _ = _ramp(rng, h, w)
        return _two_colour(rng, (u - u.min()) / (np.ptp(u) + 1e-6))
    if kind == 2:  # radial: a lit sphere-like shading
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / max(h, w)
        return _two_colour(rng, np.clip(d / (d.max() + 1e-6), 0, 1))
    if kind == 3:
        u, _ = _ramp(rng, h, w)
        period = rng.uniform(0.08, 0.4)
        return _two_colour(rng, (np.sin(u / period * 2 * np.pi) > 0).astype(np.float32))
    if kind == 4:
        u, v = _ramp(rng, h, w)
        n = rng.uniform(0.1, 0.35)
        return _two_colour(rng, ((np.floor(u / n) + np.floor(v / n)) % 2).astype(np.float32))
    if kind == 5:  # dots
        img = np.broadcast_to(random_colour(rng), (h, w, 3)).copy()
        dot = random_colour(rng)
        r = max(1, int(min(h, w) * rng.uniform(0.03, 0.1)))
        for _ in range(int(rng.integers(3, 20))):
            cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), r, dot.tolist(), -1, cv2.LINE_AA)
        return img
    return _two_colour(rng, smooth_noise(rng, h, w, 3) * 0.5 + 0.5)


def dead_leaves(rng: Rng, size: int) -> np.ndarray:
    """(size, size, 3): 60-300 occluding discs and boxes with radii from a power law, drawn at a quarter of the
    size and upsampled (smooth, out-of-focus-looking edges, cheap)."""
    s = max(16, size // 4)
    img = np.empty((s, s, 3), np.float32)
    img[:] = random_colour(rng)
    for _ in range(int(rng.integers(60, 300))):
        r = int(s * 0.5 * rng.uniform(0.02, 1.0) ** 3) + 1  # power law: many small, a few large
        x, y = int(rng.integers(0, s)), int(rng.integers(0, s))
        colour = random_colour(rng).tolist()
        if rng.random() < 0.6:
            cv2.circle(img, (x, y), r, colour, -1)
        else:
            cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r // 2), colour, -1)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def background(rng: Rng, size: int) -> np.ndarray:
    """float32 (size, size, 3): dead leaves, coloured noise or a shaded gradient, often two blended, then blurred
    by a random amount (objects stay sharper than most of the background, as with a focused camera)."""
    kinds = (lambda: dead_leaves(rng, size),
             lambda: _two_colour(rng, smooth_noise(rng, size, size) * 0.5 + 0.5),
             lambda: fill(rng, size, size))
    img = kinds[rng.choice(3, p=[0.5, 0.3, 0.2])]()
    if rng.random() < 0.4:
        other = kinds[int(rng.integers(3))]()
        alpha = (smooth_noise(rng, size, size, 2) * 0.5 + 0.5)[..., None]
        img = img * alpha + other * (1 - alpha)
    sigma = rng.uniform(0, 6)
    if sigma > 0.5:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return img
