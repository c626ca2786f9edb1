"""`export --nms`: the model followed by NMS, so the file's outputs are final detections.

    images (B, 3, H, W) -> model -> decoded (B, N, 5 + nc) or (B, N, 4 + nc)
      -> boxes xyxy, best class and its score (core.postprocess.split_scores: the rule `predict` uses, either head)
      -> per-class NMS (ONNX NonMaxSuppression; torchvision's nms in PyTorch) at the recorded conf and iou
      -> detections (B, max_det, 6) = x1, y1, x2, y2, score, class in network-input (letterbox) pixels, sorted by
         score, zero rows after each image's count; count (B,) int64

What `predict` does after the forward, except scaling back to the original image (the app knows its letterbox)
and with its defaults fixed at export: a box is kept when its best-class score exceeds `conf` (predict's
single-label rule), boxes of one class overlapping more than `iou` are suppressed, the `max_det` best are kept.

ONNX's NonMaxSuppression takes scores per class (B, C, N); each box gets its best class's score there and 0
elsewhere, so one op does per-class NMS with no coordinate offset (an offset of class x size would cost float32
precision). Its output, (K, 3) = (image, class, box) rows, is ranked by score within each image and scattered
into the fixed (B, max_det, 6) output; all of it is plain tensor arithmetic that traces to ONNX (and that OpenVINO
reads) for any batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mnv3det.core.postprocess import split_scores

OUTPUT_NAMES = ["detections", "count"]


def nms_rows(boxes: Tensor, scores: Tensor, iou: float, conf: float) -> Tensor:
    """Per-class NMS with ONNX NonMaxSuppression's interface: boxes (B, N, 4) xyxy, scores (B, C, N) -> selected
    (K, 3) int64 rows (image, class, box), by torchvision's batched_nms with one group per (image, class): no loop
    over images, so a traced TorchScript file takes any batch. (ONNX also caps each (image, class) at max_det; the
    caller caps each image, which is what matters.)"""
    from torchvision.ops import batched_nms

    b, c, i = (scores > conf).nonzero(as_tuple=True)  # (k,) image, class and box of each candidate
    keep = batched_nms(boxes[b, i], scores[b, c, i], b * scores.shape[1] + c, iou)
    return torch.stack((b[keep], c[keep], i[keep]), 1)


class _NonMaxSuppression(torch.autograd.Function):
    """`nms_rows`, exported to ONNX as its NonMaxSuppression op."""

    @staticmethod
    def forward(ctx: Any, boxes: Tensor, scores: Tensor, max_det: int, iou: float, conf: float) -> Tensor:
        return nms_rows(boxes, scores, iou, conf)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, max_det: int, iou: float, conf: float) -> Any:
        return g.op(
            "NonMaxSuppression", boxes, scores,
            g.op("Constant", value_t=torch.tensor([max_det], dtype=torch.long)),
            g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float)),
            g.op("Constant", value_t=torch.tensor([conf], dtype=torch.float)),
            center_point_box_i=0,
        )


class Nms(nn.Module):
    """Decoded predictions (B, N, 5 + nc) or (B, N, 4 + nc) -> (detections (B, max_det, 6), count (B,)); see the
    module doc. Its own module so ONNX INT8 can quantize the detector alone and append this graph in float."""

    def __init__(self, nc: int, conf: float, iou: float, max_det: int):
        super().__init__()
        self.nc, self.conf, self.iou, self.max_det = int(nc), float(conf), float(iou), int(max_det)

    def forward(self, pred: Tensor) -> tuple[Tensor, Tensor]:
        pred = pred.float()  # float32 after a --half body
        cxcywh, scores = split_scores(pred, self.nc)  # (B, N, 4), (B, N, nc)
        xy, half_wh = cxcywh[..., :2], cxcywh[..., 2:] / 2
        boxes = torch.cat((xy - half_wh, xy + half_wh), -1)  # (B, N, 4) xyxy
        best, cls = scores.max(-1)  # (B, N): one label per box, as predict
        per_class = torch.zeros_like(scores).scatter(-1, cls.unsqueeze(-1), best.unsqueeze(-1))  # (B, N, nc)
        if torch.onnx.is_in_onnx_export():
            selected = _NonMaxSuppression.apply(boxes, per_class.transpose(1, 2), self.max_det, self.iou, self.conf)
        else:  # PyTorch, and TorchScript's trace (which cannot hold an autograd.Function)
            selected = nms_rows(boxes, per_class.transpose(1, 2), self.iou, self.conf)
        b, i = selected[:, 0], selected[:, 2]  # (K,) image and box of each kept detection
        score = best[b, i]
        # rank of each detection in its image: those of the same image with a higher score (ties: earlier row)
        k = torch.arange(score.shape[0], device=pred.device)
        ahead = (score[None, :] > score[:, None]) | ((score[None, :] == score[:, None]) & (k[None, :] < k[:, None]))
        rank = ((b[None, :] == b[:, None]) & ahead).sum(1)
        rows = torch.cat((boxes[b, i], score[:, None], cls[b, i].float()[:, None]), 1)  # (K, 6)
        batch = pred.shape[0]
        # rows ranked past max_det go to one extra slot, dropped after (no boolean mask: the trace on an input with
        # no detections would fix its shapes)
        slot = torch.where(rank < self.max_det, b * self.max_det + rank, torch.full_like(rank, batch * self.max_det))
        out = torch.zeros(batch * self.max_det + 1, 6, dtype=rows.dtype, device=pred.device)
        out = out.index_put((slot,), rows)
        count = (b[None, :] == torch.arange(batch, device=pred.device)[:, None]).sum(1).clamp(max=self.max_det)
        return out[:-1].view(batch, self.max_det, 6), count


class EndToEnd(nn.Module):
    """`model` (a fused DetectionModel, eval) followed by `Nms`; see the module doc. `model` keeps its own attribute
    name in the graph (node names "/model/layers.26/...")."""

    def __init__(self, model: nn.Module, conf: float, iou: float, max_det: int):
        super().__init__()
        self.model = model
        self.nms = Nms(model.nc, conf, iou, max_det)
        self.nc = int(model.nc)
        self.stride = model.stride  # what the export pipeline reads from a model
        self.names = getattr(model, "names", None)

    @property
    def detect(self) -> nn.Module:
        return self.model.detect

    def fuse(self) -> "EndToEnd":
        self.model.fuse()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.nms(self.model(x))
