"""Autoanchor: check how well a model's anchors fit a dataset's boxes, and evolve better ones.

Fit is measured as YOLOv5 does: a box is "recallable" by an anchor when their width and height
ratios are both within `thr` (the loss's anchor_t, 4.0); best possible recall (BPR) is the share of
boxes with at least one such anchor. Below 0.98, new anchors are found by k-means on the box sizes
(whitened) followed by a genetic mutation search on a fitness that rewards close matches; they are
kept only when they raise BPR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

BPR_TARGET = 0.98


@dataclass
class AnchorReport:
    """What autoanchor saw and did (pixel anchors, Tensor[nl, na, 2])."""

    bpr_before: float
    anchors_per_target: float  # mean number of anchors above threshold per box
    bpr_after: float
    changed: bool
    anchors: Tensor
    message: str


def anchor_fit(anchors_px: Tensor, wh: Tensor, thr: float = 4.0) -> tuple[float, float]:
    """(best possible recall, anchors above threshold per box) for anchors (K, 2) and boxes (N, 2) in pixels."""
    anchors_px = anchors_px.reshape(-1, 2).float()
    wh = wh.float()
    ratio = wh[:, None] / anchors_px[None]  # (N, K, 2)
    closeness = torch.min(ratio, 1 / ratio).min(2).values  # (N, K): worst of w and h, 1 = identical
    best = closeness.max(1).values
    bpr = (best > 1 / thr).float().mean().item()
    aat = (closeness > 1 / thr).float().sum(1).mean().item()
    return bpr, aat


def _fitness(anchors: np.ndarray, wh: np.ndarray, thr: float) -> float:
    """Mean best closeness over boxes, counting only matches above 1/thr (YOLOv5's anchor fitness)."""
    ratio = wh[:, None] / anchors[None]
    closeness = np.minimum(ratio, 1 / ratio).min(2)
    best = closeness.max(1)
    return float((best * (best > 1 / thr)).mean())


def evolve_anchors(
    wh: np.ndarray, n: int, thr: float = 4.0, generations: int = 1000, seed: int = 0
) -> np.ndarray:
    """n anchors (n, 2) in pixels for box sizes wh (N, 2), sorted by area (small first).

    k-means (scipy) on the sizes divided by their std, then `generations` rounds of random
    multiplicative mutation, keeping a mutation when the fitness improves.
    """
    from scipy.cluster.vq import kmeans  # scipy ships with albumentations

    rng = np.random.default_rng(seed)
    wh = wh.astype(np.float64)
    wh = wh[(wh >= 2.0).all(1)]  # boxes under 2 pixels carry no useful shape
    if len(wh) < n:
        raise ValueError(f"need at least {n} boxes of 2+ pixels to evolve {n} anchors, got {len(wh)}")
    std = wh.std(0)
    std[std == 0] = 1.0
    centroids, _ = kmeans(wh / std, n, iter=30, rng=int(seed))
    anchors = centroids * std
    if len(anchors) != n:  # k-means may return fewer distinct centroids; fall back to random boxes
        anchors = np.sort(rng.choice(wh, n, replace=False), axis=0)
    best_fit = _fitness(anchors, wh, thr)
    mutation_prob, sigma = 0.9, 0.1
    for _ in range(generations):
        scale = np.ones_like(anchors)
        while (scale == 1).all():  # ensure something changes
            mask = rng.random(anchors.shape) < mutation_prob
            scale = (mask * rng.random() * rng.standard_normal(anchors.shape) * sigma + 1).clip(0.3, 3.0)
        candidate = (anchors * scale).clip(min=2.0)
        fit = _fitness(candidate, wh, thr)
        if fit > best_fit:
            best_fit, anchors = fit, candidate
    return anchors[np.argsort(anchors.prod(1))]


def check_anchors(
    model, box_wh: np.ndarray | Tensor, thr: float = 4.0, generations: int = 1000, seed: int = 0
) -> AnchorReport:
    """Check the anchors of `model` on box sizes (N, 2) in pixels at the training imgsz; evolve if BPR < 0.98.

    New anchors are set with `model.set_anchors(Tensor[nl, na, 2] pixels)` only if they raise BPR.
    """
    detect = model.detect
    if getattr(detect, "anchor_free", False):
        return AnchorReport(0.0, 0.0, 0.0, False, torch.zeros(0, 0, 2),
                            "autoanchor: the anchor-free head has no anchors; nothing to do")
    stride = detect.stride.detach().float().cpu().view(-1, 1, 1)
    current = detect.anchors.detach().float().cpu() * stride  # (nl, na, 2) pixels
    wh = torch.as_tensor(np.asarray(box_wh, dtype=np.float32)).reshape(-1, 2)
    if len(wh) == 0:
        return AnchorReport(0.0, 0.0, 0.0, False, current, "autoanchor: no boxes in the training set; anchors unchanged")
    # Boxes seen in training are rescaled by augmentation; sample scales 0.9..1.1 as YOLOv5 does.
    gen = torch.Generator().manual_seed(seed)
    wh_aug = wh * (0.9 + 0.2 * torch.rand((len(wh), 1), generator=gen))
    bpr, aat = anchor_fit(current, wh_aug, thr)
    head = f"autoanchor: {aat:.2f} anchors/target, best possible recall {bpr:.4f}"
    if bpr >= BPR_TARGET:
        return AnchorReport(bpr, aat, bpr, False, current, f"{head}; anchors fit the data, kept")
    nl, na = current.shape[:2]
    try:
        new = evolve_anchors(wh_aug.numpy(), nl * na, thr, generations, seed)
    except ValueError as err:
        return AnchorReport(bpr, aat, bpr, False, current, f"{head}; could not evolve anchors ({err}); kept")
    new_t = torch.as_tensor(new, dtype=torch.float32).view(nl, na, 2)
    new_bpr, _ = anchor_fit(new_t, wh_aug, thr)
    if new_bpr > bpr:
        model.set_anchors(new_t)
        shown = ", ".join(f"{w:.0f}x{h:.0f}" for w, h in new_t.view(-1, 2).tolist())
        return AnchorReport(bpr, aat, new_bpr, True, new_t, f"{head}; evolved new anchors (recall {new_bpr:.4f}): {shown}")
    return AnchorReport(bpr, aat, new_bpr, False, current, f"{head}; evolved anchors were no better ({new_bpr:.4f}); kept")
