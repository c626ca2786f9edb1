"""Match the app's boxes to the reference's, one image at a time, and add up how far apart they are.

    match(app, ref, min_iou)  greedy per class: the pair with the highest IoU first, each box used once
    Tally                     the sums over images: matched, missed, extra, IoU and score differences

Boxes are numpy (n, 6) x1, y1, x2, y2 (image pixels), score, class: the reference's detection layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

DEGENERATE_PX = 1.0  # zero-area boxes (clipped at the border) match when their corners lie this close
MIN_IOU = 0.5  # a pair closer than this is two different boxes (a miss and an extra), as COCO's AP50 counts them


@dataclass
class Match:
    """How one image's app boxes pair with the reference's."""

    pairs: list[tuple[int, int]]  # (app index, reference index)
    ious: np.ndarray  # (len(pairs),)
    score_diffs: np.ndarray  # (len(pairs),) app score - reference score
    app: int  # boxes the app found
    ref: int  # boxes the reference found

    @property
    def matched(self) -> int:
        return len(self.pairs)

    @property
    def missed(self) -> int:  # reference boxes the app did not find
        return self.ref - self.matched

    @property
    def extra(self) -> int:  # app boxes the reference did not find
        return self.app - self.matched


def match(app: np.ndarray, ref: np.ndarray, min_iou: float = MIN_IOU) -> Match:
    """Greedy matching of same-class boxes by IoU, highest first (a box pairs at most once)."""
    ious = np.zeros((len(app), len(ref)))  # (n_app, n_ref)
    if len(app) and len(ref):
        ious = box_iou(torch.from_numpy(np.ascontiguousarray(app[:, :4])),
                       torch.from_numpy(np.ascontiguousarray(ref[:, :4]))).numpy()
        # Boxes clipped to nothing at the image border have no area, so no IoU (nan): equal corners count as 1.
        near = np.abs(app[:, None, :4] - ref[None, :, :4]).max(2) <= DEGENERATE_PX
        ious = np.where(np.isnan(ious), near.astype(np.float64), ious)
    ious = np.where(app[:, None, 5] == ref[None, :, 5], ious, 0.0) if ious.size else ious
    candidates = np.argwhere(ious >= min_iou)
    order = np.argsort(-ious[candidates[:, 0], candidates[:, 1]], kind="stable") if len(candidates) else []
    used_app, used_ref, pairs = set(), set(), []
    for i, j in candidates[order]:
        if i not in used_app and j not in used_ref:
            used_app.add(i)
            used_ref.add(j)
            pairs.append((int(i), int(j)))
    iou = np.array([ious[i, j] for i, j in pairs], dtype=np.float64)
    diff = np.array([app[i, 4] - ref[j, 4] for i, j in pairs], dtype=np.float64)
    return Match(pairs, iou, diff, len(app), len(ref))


@dataclass
class Tally:
    """Sums of `Match`es over images: how well one pipeline's boxes explain the app's."""

    app: int = 0
    ref: int = 0
    matched: int = 0
    iou_sum: float = 0.0
    score_diff_sum: float = 0.0  # sum of |app score - reference score| over matched pairs
    max_score_diff: float = 0.0

    def add(self, m: Match) -> None:
        self.app += m.app
        self.ref += m.ref
        self.matched += m.matched
        self.iou_sum += float(m.ious.sum())
        self.score_diff_sum += float(np.abs(m.score_diffs).sum())
        if m.matched:
            self.max_score_diff = max(self.max_score_diff, float(np.abs(m.score_diffs).max()))

    @property
    def missed(self) -> int:
        return self.ref - self.matched

    @property
    def extra(self) -> int:
        return self.app - self.matched

    @property
    def of_app(self) -> float:
        """The share of the app's boxes the reference also found (1.0 when the app found none)."""
        return self.matched / self.app if self.app else 1.0

    @property
    def of_ref(self) -> float:
        """The share of the reference's boxes the app also found (1.0 when the reference found none)."""
        return self.matched / self.ref if self.ref else 1.0

    @property
    def mean_iou(self) -> float:
        return self.iou_sum / self.matched if self.matched else float("nan")

    @property
    def mean_score_diff(self) -> float:
        return self.score_diff_sum / self.matched if self.matched else float("nan")

    @property
    def disagreement(self) -> float:
        """In boxes: each miss and extra counts 1, each matched pair 1 - IoU plus its |score difference|.
        0 when the two agree exactly; the explanation with the least wins."""
        return self.missed + self.extra + (self.matched - self.iou_sum) + self.score_diff_sum

    def as_dict(self) -> dict:
        return {"app_boxes": self.app, "reference_boxes": self.ref, "matched": self.matched, "missed": self.missed,
                "extra": self.extra, "mean_iou": self.mean_iou, "mean_score_diff": self.mean_score_diff,
                "max_score_diff": self.max_score_diff, "disagreement": self.disagreement}
