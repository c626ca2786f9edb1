"""Object masks drawn from formulas: one function per shape family, each `(rng, m) -> float32 (m, m) mask in 0..1`.

Every family is a formula with random parameters (FractalDB / RCDB style: the label is the formula, the
parameters vary per object), drawn centred in an m x m square so the caller can rotate, stretch and place
it. Masks are anti-aliased (cv2.LINE_AA or a supersampled point cloud), so edges look like a camera's.

    mask = draw_family(FAMILIES.index("star"), rng, 96)   # float32 (96, 96)

Families are chosen to differ in outline, not in colour or texture (the texture is drawn by textures.py
and is independent of the class): ellipse, rectangle, triangle, regular polygon, star, convex polygon,
radial-Fourier blob, ring, cross, crescent, IFS fractal, glyph, heart, arrow, spiral, gear.
"""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

Rng = np.random.Generator
_AA = cv2.LINE_AA
_SHIFT = 4  # cv2 sub-pixel bits: coordinates are given x16 for smooth, anti-aliased outlines
_ONE = 1 << _SHIFT


def _canvas(m: int) -> np.ndarray:
    return np.zeros((m, m), np.uint8)


def _poly(m: int, pts: np.ndarray) -> np.ndarray:
    """Fill polygon(s) given in unit coordinates (-1..1 around the centre) into an m x m uint8 mask."""
    img = _canvas(m)
    scaled = [np.round(((p + 1) * 0.5 * (m - 1)) * _ONE).astype(np.int32) for p in (pts if isinstance(pts, list) else [pts])]
    cv2.fillPoly(img, scaled, 255, _AA, _SHIFT)
    return img


def _radial(n: int, radius: np.ndarray, phase: float = 0.0) -> np.ndarray:
    """(n, 2) points at angles 2*pi*k/n + phase with the given radii (unit coordinates)."""
    a = np.arange(n) * (2 * np.pi / n) + phase
    return np.stack([radius * np.cos(a), radius * np.sin(a)], 1)


def ellipse(rng: Rng, m: int) -> np.ndarray:
    img = _canvas(m)
    c = (m - 1) / 2 * _ONE
    axes = (round(0.48 * m * _ONE), round(0.48 * m * rng.uniform(0.35, 1.0) * _ONE))
    cv2.ellipse(img, (round(c), round(c)), axes, 0, 0, 360, 255, -1, _AA, _SHIFT)
    return img


def rectangle(rng: Rng, m: int) -> np.ndarray:
    h = rng.uniform(0.3, 0.95)
    r = rng.uniform(0.0, 0.5) * min(h, 0.95)  # corner radius: sharp to rounded
    if r < 0.05:
        return _poly(m, np.array([[-0.95, -h], [0.95, -h], [0.95, h], [-0.95, h]]))
    corners = [(0.95 - r, h - r, 0), (-(0.95 - r), h - r, 90), (-(0.95 - r), -(h - r), 180), (0.95 - r, -(h - r), 270)]
    arcs = [np.array([[cx + r * math.cos(math.radians(a0 + t)), cy + r * math.sin(math.radians(a0 + t))]
                      for t in np.linspace(0, 90, 8)]) for cx, cy, a0 in corners]
    return _poly(m, np.concatenate(arcs))


def triangle(rng: Rng, m: int) -> np.ndarray:
    apex = rng.uniform(-0.9, 0.9)  # isosceles to scalene
    return _poly(m, np.array([[apex, -0.95], [-0.95, 0.95], [0.95, 0.95]]))


def regular_polygon(rng: Rng, m: int) -> np.ndarray:
    n = int(rng.integers(5, 9))
    return _poly(m, _radial(n, np.full(n, 0.97), rng.uniform(0, np.pi)))


def star(rng: Rng, m: int) -> np.ndarray:
    n = int(rng.integers(4, 9))
    radius = np.tile([0.97, rng.uniform(0.3, 0.6)], n)
    return _poly(m, _radial(2 * n, radius, rng.uniform(0, np.pi)))


def convex_polygon(rng: Rng, m: int) -> np.ndarray:
    pts = rng.uniform(-1, 1, (int(rng.integers(5, 12)), 2)).astype(np.float32)
    hull = cv2.convexHull(pts)[:, 0, :]
    hull = hull / max(np.abs(hull).max(), 1e-3) * 0.97
    return _poly(m, hull)


def fourier_blob(rng: Rng, m: int) -> np.ndarray:
    """Radius r(theta) = 1 + sum_k a_k cos(k theta + phi_k), k = 2..6: smooth organic outlines."""
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 7):
        r += rng.uniform(0, 0.35 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = r / r.max() * 0.97
    return _poly(m, np.stack([r * np.cos(theta), r * np.sin(theta)], 1))


def ring(rng: Rng, m: int) -> np.ndarray:
    img = ellipse(rng, m)
    c = round((m - 1) / 2 * _ONE)
    inner = rng.uniform(0.35, 0.7) * 0.48 * m * _ONE
    cv2.ellipse(img, (c, c), (round(inner), round(inner * rng.uniform(0.6, 1.0))), 0, 0, 360, 0, -1, _AA, _SHIFT)
    return img


def cross(rng: Rng, m: int) -> np.ndarray:
    t = rng.uniform(0.15, 0.4)  # half thickness of the bars
    u = rng.uniform(-0.5, 0.3)  # offset of the horizontal bar: plus sign to Latin cross
    bars = [np.array([[-t, -0.97], [t, -0.97], [t, 0.97], [-t, 0.97]]),
            np.array([[-0.97, u - t], [0.97, u - t], [0.97, u + t], [-0.97, u + t]])]
    return _poly(m, bars)


def crescent(rng: Rng, m: int) -> np.ndarray:
    img = _canvas(m)
    c = round((m - 1) / 2 * _ONE)
    r = round(0.48 * m * _ONE)
    cv2.circle(img, (c, c), r, 255, -1, _AA, _SHIFT)
    shift = rng.uniform(0.25, 0.6) * r
    cv2.circle(img, (round(c + shift), c), round(r * rng.uniform(0.8, 1.0)), 0, -1, _AA, _SHIFT)
    return img


class FractalBank:
    """Iterated function systems (2-4 random contractive affine maps each), rendered by the chaos game.

    Systems are drawn once per generator seed and filtered like FractalDB: the attractor must fill between
    5% and 60% of its bounding square, so neither dust nor a solid blob counts as a fractal.
    """

    def __init__(self, rng: Rng, count: int = 64, points: int = 6000) -> None:
        self.points = points
        self.systems: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        tries = 0
        while len(self.systems) < count and tries < count * 50:
            tries += 1
            system = self._random_system(rng)
            cloud = self._cloud(system, rng, 2000)
            if cloud is not None and 0.05 < _fill_rate(cloud, 32) < 0.6:
                self.systems.append(system)

    @staticmethod
    def _random_system(rng: Rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = int(rng.integers(2, 5))
        a = rng.uniform(-1, 1, (k, 2, 2))
        for i in range(k):  # contractive: largest singular value below 0.9
            s = np.linalg.svd(a[i], compute_uv=False)[0]
            if s > 0.9:
                a[i] *= 0.9 / s
        b = rng.uniform(-1, 1, (k, 2))
        det = np.abs(np.linalg.det(a)) + 1e-3
        return a, b, det / det.sum()  # maps chosen in proportion to the area they cover

    def _cloud(self, system: tuple[np.ndarray, np.ndarray, np.ndarray], rng: Rng, n: int) -> np.ndarray | None:
        """(n, 2) attractor points in -1..1, or None when degenerate. 400 chains x (n / 400) steps after burn-in."""
        a, b, p = system
        chains = 400
        x = rng.uniform(-1, 1, (chains, 2))
        out = []
        for step in range(12 + n // chains):
            k = rng.choice(len(p), chains, p=p)
            x = np.einsum("nij,nj->ni", a[k], x) + b[k]
            if step >= 12:
                out.append(x)
        pts = np.concatenate(out)
        lo, hi = pts.min(0), pts.max(0)
        span = (hi - lo).max()
        if not np.isfinite(span) or span < 1e-6:
            return None
        return (pts - (lo + hi) / 2) / span * 1.9

    def draw(self, rng: Rng, m: int) -> np.ndarray:
        system = self.systems[int(rng.integers(len(self.systems)))]
        pts = self._cloud(system, rng, self.points)
        img = np.zeros((2 * m, 2 * m), np.float32)  # 2x supersampled, then area-downsampled: soft edges
        if pts is not None:
            ij = np.clip(((pts + 1) * 0.5 * (2 * m - 1)).round().astype(np.int64), 0, 2 * m - 1)
            img[ij[:, 1], ij[:, 0]] = 1.0
        radius = max(1, round(m / 40))
        img = cv2.dilate(img, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
        return (cv2.resize(img, (m, m), interpolation=cv2.INTER_AREA) * 255).astype(np.uint8)


def _fill_rate(pts: np.ndarray, n: int) -> float:
    ij = np.clip(((pts + 1) * 0.5 * (n - 1)).round().astype(np.int64), 0, n - 1)
    grid = np.zeros((n, n), bool)
    grid[ij[:, 1], ij[:, 0]] = True
    return float(grid.mean())


_GLYPHS = "ABCDEFGHJKLMNPRSTUVWXYZ2345679#&@%?"
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX)


def glyph(rng: Rng, m: int) -> np.ndarray:
    """A letter, digit or sign in a Hershey font, scaled to fill the square."""
    text = _GLYPHS[int(rng.integers(len(_GLYPHS)))]
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    thick = int(rng.integers(2, 6))
    (w, h), base = cv2.getTextSize(text, font, 2.0, thick)
    img = np.zeros((h + base + 8, w + 8), np.uint8)
    cv2.putText(img, text, (4, h + 4), font, 2.0, 255, thick, _AA)
    ys, xs = np.nonzero(img)
    if len(xs) == 0:
        return ellipse(rng, m)
    crop = img[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    return cv2.resize(crop, (m, m), interpolation=cv2.INTER_AREA)


def heart(rng: Rng, m: int) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y * rng.uniform(0.8, 1.2)], 1)
    pts = (pts - (pts.max(0) + pts.min(0)) / 2) / np.abs(pts).max() * 0.97
    return _poly(m, pts)


def arrow(rng: Rng, m: int) -> np.ndarray:
    t = rng.uniform(0.12, 0.3)  # half shaft thickness
    head = rng.uniform(0.45, 0.95)  # head half width
    neck = rng.uniform(-0.1, 0.4)  # where the head starts
    return _poly(m, np.array([[-0.97, -t], [neck, -t], [neck, -head], [0.97, 0], [neck, head], [neck, t], [-0.97, t]]))


def spiral(rng: Rng, m: int) -> np.ndarray:
    """A thick Archimedean spiral stroke."""
    turns = rng.uniform(1.5, 3.5)
    t = np.linspace(0, turns * 2 * np.pi, 200)
    r = 0.95 * t / t[-1]
    pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    img = _canvas(m)
    thick = max(1, round(m * rng.uniform(0.03, 0.08)))
    cv2.polylines(img, [np.round((pts + 1) * 0.5 * (m - 1) * _ONE).astype(np.int32)], False, 255, thick, _AA, _SHIFT)
    return img


def gear(rng: Rng, m: int) -> np.ndarray:
    n = int(rng.integers(6, 14))
    inner = rng.uniform(0.65, 0.85)
    radius = np.repeat(np.tile([0.97, inner], n), 2)  # square teeth: two points per tooth edge
    a = np.arange(4 * n) * (2 * np.pi / (4 * n))
    a = a + np.tile([-1, 1], 2 * n) * (np.pi / (8 * n))
    pts = np.stack([radius * np.cos(a), radius * np.sin(a)], 1)
    img = _poly(m, pts)
    if rng.random() < 0.6:  # an axle hole
        c = round((m - 1) / 2 * _ONE)
        cv2.circle(img, (c, c), round(rng.uniform(0.1, 0.3) * m * _ONE), 0, -1, _AA, _SHIFT)
    return img


MaskFn = Callable[[Rng, int], np.ndarray]
_SIMPLE: dict[str, MaskFn] = {
    "ellipse": ellipse, "rectangle": rectangle, "triangle": triangle, "polygon": regular_polygon, "star": star,
    "convex": convex_polygon, "blob": fourier_blob, "ring": ring, "cross": cross, "crescent": crescent,
    "fractal": lambda rng, m: _fractals_missing(),  # replaced by the generator's own FractalBank.draw
    "glyph": glyph, "heart": heart, "arrow": arrow, "spiral": spiral, "gear": gear,
}
FAMILIES: tuple[str, ...] = tuple(_SIMPLE)


def _fractals_missing() -> np.ndarray:
    raise RuntimeError("fractal masks need a FractalBank (ShapeDrawer builds one)")


class ShapeDrawer:
    """Draws a family's mask by index; owns the fractal bank (drawn once from its own seed)."""

    def __init__(self, seed: int, fractals: int = 64) -> None:
        self.bank = FractalBank(np.random.default_rng([seed, 7]), fractals)
        self.fns: list[MaskFn] = [self.bank.draw if name == "fractal" else fn for name, fn in _SIMPLE.items()]

    def __call__(self, family: int, rng: Rng, m: int) -> np.ndarray:
        """uint8 (m, m) mask, 0..255."""
        return self.fns[family](rng, m)
