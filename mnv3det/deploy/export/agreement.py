"""Do two detectors find the same boxes? The check every export passes against PyTorch, after NMS.

Per image, detections (n, 6) = (x1, y1, x2, y2, score, class) of the reference and of the export are paired
greedily, best IoU first, within one class. A pair agrees when IoU >= `min_iou` and |score difference| <=
`max_score_diff`. A box left without a partner is a disagreement, unless it is borderline: its score lies within `max_score_diff` of the
confidence threshold (the other model may have scored it just under), or the other model found it too before NMS
(within the same tolerance) and NMS kept a near-equal twin of it instead.

Tolerances used by `mnv3det export`: float formats (OpenVINO, ncnn, fp32 ONNX) IoU >= 0.9 and score within 0.05;
INT8 formats IoU >= 0.5 and score within 0.15, reported but not failed on (INT8 is judged by its mAP drop).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor
from torchvision.ops import box_iou

FLOAT_TOLERANCE = (0.9, 0.05)  # (min IoU, max score difference)
INT8_TOLERANCE = (0.5, 0.15)


@dataclass
class Agreement:
    """Counts over all images; `worst_iou`/`max_score_diff` over the agreeing pairs (1.0 / 0.0 when none)."""

    reference: int  # boxes the reference found
    exported: int  # boxes the export found
    matched: int  # pairs that agree
    unmatched: int  # boxes (either side) with no agreeing partner and a score clear of the threshold
    borderline: int  # unpaired boxes within max_score_diff of the threshold (allowed)
    worst_iou: float
    max_score_diff: float
    min_iou: float  # the tolerance used
    score_tol: float

    @property
    def passed(self) -> bool:
        return self.unmatched == 0

    def summary(self) -> str:
        return (
            f"{self.matched}/{self.reference} PyTorch boxes matched ({self.exported} exported, "
            f"{self.unmatched} unmatched, {self.borderline} borderline); worst IoU {self.worst_iou:.3f}, "
            f"max score diff {self.max_score_diff:.3f} (tolerance IoU >= {self.min_iou:g}, score +-{self.score_tol:g})"
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def _pairs(ref: Tensor, out: Tensor, min_iou: float, max_score_diff: float) -> list[tuple[int, int, float, float]]:
    """Greedy agreeing pairs (ref index, out index, IoU, score diff): same class, IoU >= min_iou and score within
    max_score_diff, taken in order of IoU minus score difference (an untrained model stacks boxes of equal IoU,
    so IoU alone would pair a box with the wrong one of its twins)."""
    if len(ref) == 0 or len(out) == 0:
        return []
    iou = box_iou(ref[:, :4], out[:, :4])
    score_diff = (ref[:, 4].view(-1, 1) - out[:, 4].view(1, -1)).abs()
    ok = (iou >= min_iou) & (score_diff <= max_score_diff) & (ref[:, 5].view(-1, 1) == out[:, 5].view(1, -1))
    priority = torch.where(ok, iou - score_diff, torch.full_like(iou, -2.0))
    pairs, used_r, used_o = [], set(), set()
    for flat in torch.argsort(priority.flatten(), descending=True).tolist():
        i, j = divmod(flat, iou.shape[1])
        if not ok[i, j]:
            break
        if i in used_r or j in used_o:
            continue
        used_r.add(i)
        used_o.add(j)
        pairs.append((i, j, float(iou[i, j]), float(score_diff[i, j])))
    return pairs


def _found_before_nms(box: Tensor, candidates: Tensor | None, min_iou: float, max_score_diff: float) -> bool:
    """Is `box` among the other model's candidates (detections before NMS suppression), within tolerance?

    Then that model found the same box and NMS kept a near-equal twin instead, decided by a 1e-7 difference
    (common with untrained models, which stack boxes of equal score): not a disagreement.
    """
    if candidates is None or len(candidates) == 0:
        return False
    same = candidates[:, 5] == box[5]
    close = (candidates[:, 4] - box[4]).abs() <= max_score_diff
    iou = box_iou(box[None, :4], candidates[:, :4])[0]
    return bool((same & close & (iou >= min_iou)).any())


def compare_detections(
    reference: list[Tensor],
    exported: list[Tensor],
    conf: float,
    min_iou: float = 0.9,
    max_score_diff: float = 0.05,
    candidates: tuple[list[Tensor], list[Tensor]] | None = None,
) -> Agreement:
    """Agreement of per-image detections (n, 6), both taken at confidence threshold `conf`.

    candidates: optionally each side's detections before NMS suppression (same threshold), per image, so that a
    box NMS dropped in favour of a near-equal twin on one side only counts as borderline.
    """
    if len(reference) != len(exported):
        raise ValueError(f"{len(reference)} reference images but {len(exported)} exported")
    counts = dict(matched=0, unmatched=0, borderline=0)
    worst_iou, worst_score = 1.0, 0.0
    ref_all, out_all = candidates if candidates is not None else ([None] * len(reference), [None] * len(exported))
    for ref, out, ref_cand, out_cand in zip(reference, exported, ref_all, out_all):
        ref, out = ref.float().cpu(), out.float().cpu()
        paired_r, paired_o = set(), set()
        for i, j, iou, score_diff in _pairs(ref, out, min_iou, max_score_diff):
            paired_r.add(i)
            paired_o.add(j)
            counts["matched"] += 1
            worst_iou, worst_score = min(worst_iou, iou), max(worst_score, score_diff)
        for dets, other, paired in ((ref, out_cand, paired_r), (out, ref_cand, paired_o)):
            for k in range(len(dets)):
                if k in paired:
                    continue
                near = float(dets[k, 4]) < conf + max_score_diff
                near = near or _found_before_nms(dets[k], other, min_iou, max_score_diff)
                counts["borderline" if near else "unmatched"] += 1
    return Agreement(
        reference=sum(len(r) for r in reference),
        exported=sum(len(e) for e in exported),
        worst_iou=worst_iou,
        max_score_diff=worst_score,
        min_iou=min_iou,
        score_tol=max_score_diff,
        **counts,
    )
