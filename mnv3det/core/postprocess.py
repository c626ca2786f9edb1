"""Post-processing shared by `val`, `detect` and the exported-model runners.

Boxes follow torchvision's naming: `xyxy` = (x1, y1, x2, y2) pixels, `cxcywh` = centre and size.
NMS is `torchvision.ops.batched_nms`; there is deliberately no time limit, since a time limit that
silently drops detections makes evaluation numbers wrong on slow CPUs.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_convert


def has_objectness(width: int, nc: int | None) -> bool:
    """Which of the two decoded layouts a row of `width` values is, for a model of `nc` classes.

    5 + nc: YOLOv5's Detect (cx, cy, w, h, obj, class probs; score = obj * prob).
    4 + nc: the anchor-free head (cx, cy, w, h, class scores that already carry the box quality).
    nc None (unknown) means the YOLOv5 layout, the only one older callers produce.
    """
    return nc is None or width == 5 + nc


def split_scores(pred: Tensor, nc: int | None = None) -> tuple[Tensor, Tensor]:
    """Decoded predictions (..., 4 [+ 1] + nc) -> (boxes cxcywh (..., 4), class scores (..., nc)), either layout."""
    if has_objectness(pred.shape[-1], nc):
        return pred[..., :4], pred[..., 5:] * pred[..., 4:5]
    return pred[..., :4], pred[..., 4:]


def non_max_suppression(
    pred: Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    max_det: int = 300,
    classes: list[int] | None = None,
    multi_label: bool = False,
    agnostic: bool = False,
    max_candidates: int = 30000,
    nc: int | None = None,
) -> list[Tensor]:
    """Filter decoded predictions into detections per image.

    pred: Tensor[B, N, 5 + nc] with (cx, cy, w, h, obj, class probs...) in input pixels, or Tensor[B, N, 4 + nc]
    (anchor-free: class scores, no obj) when `nc` says so (`has_objectness`).
    Returns a list of B tensors Tensor[n, 6] = (x1, y1, x2, y2, score, class), sorted by score;
    an image with nothing left gets an empty Tensor[0, 6] (never None).
    score = obj * class prob (YOLOv5 layout) or the class score (anchor-free). With multi_label, every class above conf_thres makes its own row.
    """
    if pred.ndim != 3 or pred.shape[-1] < 5:
        raise ValueError(f"expected predictions of shape (B, N, 5 + nc) or (B, N, 4 + nc), got {tuple(pred.shape)}")
    objectness = has_objectness(pred.shape[-1], nc)
    out: list[Tensor] = []
    for p in pred:  # p: (N, 5 + nc) or (N, 4 + nc)
        if objectness:
            p = p[p[:, 4] > conf_thres]  # cheap first cut: score = obj * prob <= obj
        cxcywh, scores = split_scores(p, nc)  # (n, 4), (n, nc)
        boxes = box_convert(cxcywh, "cxcywh", "xyxy")
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=True)
            det = torch.cat((boxes[i], scores[i, j, None], j[:, None].to(p.dtype)), 1)
        else:
            conf, j = scores.max(1, keepdim=True)
            det = torch.cat((boxes, conf, j.to(p.dtype)), 1)[conf.view(-1) > conf_thres]
        if classes is not None:
            det = det[(det[:, 5:6] == torch.tensor(classes, device=det.device)).any(1)]
        if det.shape[0] > max_candidates:  # keep NMS cost bounded without dropping good boxes
            det = det[det[:, 4].topk(max_candidates).indices]
        if det.shape[0]:
            groups = torch.zeros_like(det[:, 5]) if agnostic else det[:, 5]
            keep = batched_nms(det[:, :4], det[:, 4], groups.long(), iou_thres)[:max_det]
            det = det[keep]
        out.append(det)
    return out


def scale_boxes(
    boxes: Tensor,
    from_shape: tuple[int, int],
    to_shape: tuple[int, int],
    ratio_pad: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> Tensor:
    """Map xyxy boxes from a letterboxed image back to the original one (returns a new tensor).

    from_shape: (h, w) of the letterboxed network input; to_shape: (h, w) of the original image.
    ratio_pad: ((ratio_h, ratio_w), (pad_w, pad_h)) as the letterbox reported it; computed when None.
    Boxes are clipped to the original image.
    """
    if ratio_pad is None:
        gain = min(from_shape[0] / to_shape[0], from_shape[1] / to_shape[1])
        pad = ((from_shape[1] - to_shape[1] * gain) / 2, (from_shape[0] - to_shape[0] * gain) / 2)
        gain_w = gain_h = gain
    else:
        (gain_h, gain_w), pad = ratio_pad
    out = boxes.clone()
    out[..., [0, 2]] = (out[..., [0, 2]] - pad[0]) / gain_w
    out[..., [1, 3]] = (out[..., [1, 3]] - pad[1]) / gain_h
    out[..., [0, 2]] = out[..., [0, 2]].clamp(0, to_shape[1])
    out[..., [1, 3]] = out[..., [1, 3]].clamp(0, to_shape[0])
    return out
