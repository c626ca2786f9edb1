"""Fast in-process detection metrics: P, R, mAP50, mAP50-95 and a confusion matrix (YOLOv5-style).

Used between training epochs, where running pycocotools over the whole validation set each epoch
would cost more than the validation forward pass. Everything here works on numpy arrays in the
original image's pixels:

    det boxes   float64 (n, 4) xyxy     det scores float64 (n,)   det classes int64 (n,)
    gt boxes    float64 (m, 4) xyxy     gt classes int64 (m,)     gt ignore bool (m,) (crowd/difficult)

How it differs from pycocotools (COCOeval, bbox, area "all", maxDets 100)
-------------------------------------------------------------------------
The matching follows COCOeval's rules: per image and class, detections in descending score take
the unmatched ground-truth box with the highest IoU >= the threshold; a detection that finds none
but overlaps an ignored box (crowd/difficult; overlap = intersection / detection area, as COCO
does for crowd) is ignored rather than counted false; an ignored box can absorb any number of
detections. AP is COCO's 101-point interpolation (precision envelope, sampled at the first rank
whose recall reaches each threshold), averaged over IoU 0.50:0.95 and over the classes that have
ground truth. Detections are capped at `max_det_per_class` (100, like COCO) per image and class.
What remains different:

- Only AP50, AP75, AP50-95 (overall and per class) and P/R; no AR and no small/medium/large split
  (those need pycocotools' area bookkeeping; `evaluate(coco=True)` gives them).
- Equal scores: COCO sorts all detections of a class by score with a stable sort in image-id order;
  here the order is the order images were evaluated in. Only exact score ties are affected.
- IoUs come from torchvision's box_iou in float64 on xyxy boxes; pycocotools works on xywh. The
  values agree to ~1e-12, so a pair sitting exactly on a threshold could in principle flip.
- P and R are single numbers at the confidence that maximises the mean F1 over classes (IoU 0.5),
  as YOLOv5 reports them; pycocotools has no such number.

Measured: on COCO128 train (COCO json, 10 crowd boxes) with perturbed ground-truth boxes as
detections plus random false positives, AP50, AP75 and AP50-95 equal pycocotools' to < 1e-6
(tests/test_metrics_vs_coco.py; the observed differences were 0 and ~1e-17); the same on COCO128 val
(YOLO labels). On 5,000 synthetic images x 100 detections (benchmarks/bench_eval.py) the difference
was 0.0 for both AP50 and AP50-95, at ~1.5-7 ms per image against ~33-52 ms for pycocotools
(2-core machine shared with other jobs, so the spread is load).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import box_iou

# COCOeval's thresholds, built the same way so the floats are identical.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)  # (10,)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1)  # (101,)
CURVE_POINTS = np.linspace(0.0, 1.0, 1000)  # confidence axis of the P/R/F1 curves


def _intersection_over_det_area(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(n, m) intersection / area(det): COCO's overlap with crowd boxes.

    Written by hand because torchvision.ops has no intersection-over-one-box variant.
    """
    lt = np.maximum(det[:, None, :2], gt[None, :, :2])
    rb = np.minimum(det[:, None, 2:], gt[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        out = inter / area[:, None]
    return np.nan_to_num(out, nan=0.0)


def match_detections(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_classes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    gt_ignore: np.ndarray | None = None,
    iou_thresholds: np.ndarray = IOU_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Match one image's detections to its ground truth, COCO-style, at every IoU threshold.

    Returns (correct, ignored), both bool (n, T): correct = matched a real box at threshold t;
    ignored = unmatched but lying on a crowd/difficult box (neither TP nor FP).
    """
    n, t_count = len(det_boxes), len(iou_thresholds)
    correct = np.zeros((n, t_count), bool)
    ignored = np.zeros((n, t_count), bool)
    if n == 0 or len(gt_boxes) == 0:
        return correct, ignored
    gt_ignore = np.zeros(len(gt_boxes), bool) if gt_ignore is None else gt_ignore.astype(bool)
    same_class = det_classes[:, None] == gt_classes[None, :]  # (n, m)
    iou = box_iou(torch.from_numpy(det_boxes).double(), torch.from_numpy(gt_boxes).double()).numpy()
    iou = np.where(same_class & ~gt_ignore[None], iou, -1.0)  # (n, m): real boxes of the same class only
    crowd = np.where(same_class & gt_ignore[None], _intersection_over_det_area(det_boxes, gt_boxes), -1.0)
    best_crowd = crowd.max(1) if crowd.size else np.full(n, -1.0)

    thr = iou_thresholds[:, None]  # (T, 1)
    taken = np.zeros((t_count, len(gt_boxes)), bool)  # (T, m) boxes already matched at threshold t
    rows = np.arange(t_count)
    # Greedy in descending score; a detection with no candidate box cannot change `taken`, so the
    # Python loop only visits detections that overlap a real box of their class by >= the lowest threshold.
    order = np.argsort(-det_scores, kind="mergesort")
    candidates = order[(iou[order] >= iou_thresholds.min()).any(1)]
    for d in candidates:
        free = np.where(taken | (iou[d][None] < thr), -1.0, iou[d][None])  # (T, m)
        # On equal IoUs COCOeval keeps the last box in order; argmax on the reversed row does the same.
        best = free.shape[1] - 1 - free[:, ::-1].argmax(1)  # (T,)
        hit = free[rows, best] >= 0
        taken[rows[hit], best[hit]] = True
        correct[d] = hit
    ignored = ~correct & (best_crowd[:, None] >= np.minimum(iou_thresholds, 1 - 1e-10)[None])
    return correct, ignored


def cap_per_class(scores: np.ndarray, classes: np.ndarray, max_per_class: int | None) -> np.ndarray:
    """Bool mask keeping the top `max_per_class` scores of each class (COCO's maxDets is per image and class)."""
    keep = np.ones(len(scores), bool)
    if max_per_class is None or len(scores) <= max_per_class:
        return keep
    order = np.lexsort((-scores, classes))  # by class, then descending score (stable)
    sorted_cls = classes[order]
    first = np.searchsorted(sorted_cls, sorted_cls, side="left")  # index of each class's first row
    rank = np.arange(len(order)) - first
    keep[order[rank >= max_per_class]] = False
    return keep


@dataclass
class FastMetrics:
    """Results of `DetectionStats.compute()`; arrays are per class (nc,) unless noted.

    ap: (nc, T) AP per class and IoU threshold, NaN for classes without ground truth.
    n_gt: real (not ignored) ground-truth boxes per class. precision/recall/f1: at the best-F1 confidence.
    curves: recall axis `px` (1000,) with precision `py` (nc, 1000) at IoU 0.5 for the PR plot;
    confidence axis CURVE_POINTS with p/r/f1 curves (nc, 1000).
    """

    ap: np.ndarray
    n_gt: np.ndarray
    n_images: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    best_conf: float
    pr_curve: np.ndarray
    p_curve: np.ndarray
    r_curve: np.ndarray
    f1_curve: np.ndarray
    present: np.ndarray = field(repr=False)

    @property
    def ap50(self) -> np.ndarray:
        return self.ap[:, 0]

    @property
    def ap_50_95(self) -> np.ndarray:
        return self.ap.mean(1)

    @property
    def map50(self) -> float:
        return _nanmean(self.ap[self.present, 0])

    @property
    def map75(self) -> float:
        return _nanmean(self.ap[self.present, 5])

    @property
    def map(self) -> float:
        return _nanmean(self.ap[self.present].mean(1))

    @property
    def mp(self) -> float:
        return _nanmean(self.precision[self.present])

    @property
    def mr(self) -> float:
        return _nanmean(self.recall[self.present])


def _as_arrays(det_boxes, det_scores, det_classes, gt_boxes, gt_classes, gt_ignore):
    """One image's inputs as arrays: boxes (n, 4) / (m, 4) float64, scores (n,), classes int64, ignore bool (m,)."""
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    return (
        np.asarray(det_boxes, np.float64).reshape(-1, 4),
        np.asarray(det_scores, np.float64).reshape(-1),
        np.asarray(det_classes).astype(np.int64).reshape(-1),
        gt_boxes,
        np.asarray(gt_classes).astype(np.int64).reshape(-1),
        np.zeros(len(gt_boxes), bool) if gt_ignore is None else np.asarray(gt_ignore, bool).reshape(-1),
    )


def _nanmean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else 0.0


class DetectionStats:
    """Accumulates per-image matches; `compute()` turns them into AP/P/R per class.

    Feed it every image, including those without detections or without ground truth.
    """

    def __init__(self, nc: int, max_det_per_class: int | None = 100, iou_thresholds: np.ndarray = IOU_THRESHOLDS):
        self.nc = nc
        self.max_det_per_class = max_det_per_class
        self.iou_thresholds = iou_thresholds
        self._correct: list[np.ndarray] = []
        self._ignored: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._classes: list[np.ndarray] = []
        self.n_gt = np.zeros(nc, np.int64)
        self.n_images = np.zeros(nc, np.int64)  # images holding at least one box of the class

    def update(
        self,
        det_boxes: np.ndarray,
        det_scores: np.ndarray,
        det_classes: np.ndarray,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        gt_ignore: np.ndarray | None = None,
    ) -> None:
        """Add one image (shapes in the module docstring)."""
        det_boxes, det_scores, det_classes, gt_boxes, gt_classes, gt_ignore = _as_arrays(
            det_boxes, det_scores, det_classes, gt_boxes, gt_classes, gt_ignore
        )
        keep = cap_per_class(det_scores, det_classes, self.max_det_per_class)
        det_boxes, det_scores, det_classes = det_boxes[keep], det_scores[keep], det_classes[keep]
        correct, ignored = match_detections(
            det_boxes, det_scores, det_classes, gt_boxes, gt_classes, gt_ignore, self.iou_thresholds
        )
        self._correct.append(correct)
        self._ignored.append(ignored)
        self._scores.append(det_scores)
        self._classes.append(det_classes)
        real = gt_classes[~gt_ignore]
        self.n_gt += np.bincount(real, minlength=self.nc)[: self.nc]
        self.n_images += np.bincount(np.unique(gt_classes), minlength=self.nc)[: self.nc]

    def compute(self) -> FastMetrics:
        """AP per class and threshold (COCO interpolation) plus YOLOv5-style P/R at the best-F1 confidence."""
        t_count = len(self.iou_thresholds)
        correct = np.concatenate(self._correct) if self._correct else np.zeros((0, t_count), bool)
        ignored = np.concatenate(self._ignored) if self._ignored else np.zeros((0, t_count), bool)
        scores = np.concatenate(self._scores) if self._scores else np.zeros(0)
        classes = np.concatenate(self._classes) if self._classes else np.zeros(0, np.int64)

        nc = self.nc
        ap = np.full((nc, t_count), np.nan)
        pr_curve = np.zeros((nc, len(CURVE_POINTS)))
        p_curve = np.zeros((nc, len(CURVE_POINTS)))
        r_curve = np.zeros((nc, len(CURVE_POINTS)))
        present = self.n_gt > 0
        for c in np.flatnonzero(present):
            idx = np.flatnonzero(classes == c)
            idx = idx[np.argsort(-scores[idx], kind="mergesort")]
            tp = np.cumsum(correct[idx] & ~ignored[idx], 0).astype(np.float64)  # (nd, T)
            fp = np.cumsum(~correct[idx] & ~ignored[idx], 0).astype(np.float64)
            recall = tp / self.n_gt[c]
            precision = tp / (tp + fp + np.spacing(1))  # COCO's guard against 0/0
            ap[c] = [_coco_ap(recall[:, t], precision[:, t]) for t in range(t_count)]
            if len(idx):
                # Curves at IoU 0.5 against confidence (x decreasing in score, so interpolate on -score).
                conf = scores[idx]
                p_curve[c] = np.interp(-CURVE_POINTS, -conf, precision[:, 0], left=1.0)
                r_curve[c] = np.interp(-CURVE_POINTS, -conf, recall[:, 0], left=0.0)
                pr_curve[c] = np.interp(CURVE_POINTS, recall[:, 0], _envelope(precision[:, 0]), right=0.0)
        f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + 1e-16)
        mean_f1 = f1_curve[present].mean(0) if present.any() else np.zeros(len(CURVE_POINTS))
        best = int(mean_f1.argmax())
        return FastMetrics(
            ap=ap,
            n_gt=self.n_gt.copy(),
            n_images=self.n_images.copy(),
            precision=p_curve[:, best],
            recall=r_curve[:, best],
            f1=f1_curve[:, best],
            best_conf=float(CURVE_POINTS[best]),
            pr_curve=pr_curve,
            p_curve=p_curve,
            r_curve=r_curve,
            f1_curve=f1_curve,
            present=present,
        )


def _envelope(precision: np.ndarray) -> np.ndarray:
    """Precision made non-increasing from the right (the interpolated precision)."""
    return np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision


def _coco_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO's 101-point AP: mean of the enveloped precision at the first rank reaching each recall threshold."""
    if len(recall) == 0:
        return 0.0
    env = _envelope(precision)
    idx = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
    q = np.where(idx < len(env), env[np.minimum(idx, len(env) - 1)], 0.0)
    return float(q.mean())


class ConfusionMatrix:
    """(nc + 1) x (nc + 1) counts, matrix[predicted, true]; index nc is background.

    Like YOLOv5: detections above `conf` are paired with ground truth at IoU >= `iou`, pairs taken
    in descending IoU, each box and detection used once; unpaired detections are background
    false positives (last column), unpaired boxes are missed (last row). Ignored boxes are skipped.
    """

    def __init__(self, nc: int, conf: float = 0.25, iou: float = 0.45):
        self.nc, self.conf, self.iou = nc, conf, iou
        self.matrix = np.zeros((nc + 1, nc + 1), np.int64)

    def update(
        self,
        det_boxes: np.ndarray,
        det_scores: np.ndarray,
        det_classes: np.ndarray,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        gt_ignore: np.ndarray | None = None,
    ) -> None:
        det_boxes, det_scores, det_classes, gt_boxes, gt_classes, gt_ignore = _as_arrays(
            det_boxes, det_scores, det_classes, gt_boxes, gt_classes, gt_ignore
        )
        gt_boxes, gt_classes = gt_boxes[~gt_ignore], gt_classes[~gt_ignore]
        keep = det_scores > self.conf
        det_boxes, det_classes = det_boxes[keep], det_classes[keep]
        bg = self.nc
        det_used = np.zeros(len(det_boxes), bool)
        gt_used = np.zeros(len(gt_boxes), bool)
        if len(det_boxes) and len(gt_boxes):
            iou = box_iou(torch.from_numpy(gt_boxes), torch.from_numpy(det_boxes)).numpy()  # (m, n)
            g, d = np.nonzero(iou >= self.iou)
            order = np.argsort(-iou[g, d], kind="mergesort")
            for gi, di in zip(g[order], d[order]):
                if gt_used[gi] or det_used[di]:
                    continue
                gt_used[gi] = det_used[di] = True
                self.matrix[det_classes[di], gt_classes[gi]] += 1
        np.add.at(self.matrix, (det_classes[~det_used], bg), 1)
        np.add.at(self.matrix, (bg, gt_classes[~gt_used]), 1)

    def normalized(self) -> np.ndarray:
        """Each column (true class) divided by its total; empty columns stay 0."""
        total = self.matrix.sum(0, keepdims=True)
        return np.divide(self.matrix, total, out=np.zeros(self.matrix.shape), where=total > 0)
