"""Turning raw YOLACT outputs into detections, as the official eval does.

Box decoding, FastNMS, mask assembly from prototypes, box crop, YOLACT++ mask-IoU rescoring,
and the final selection of eval.py's display path (score threshold and top-k).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import (
    BOX_VARIANCES,
    CANDIDATE_SCORE_THRESHOLD,
    MAX_DETECTIONS,
    NMS_IOU_THRESHOLD,
    NMS_TOP_K,
)


@dataclass
class Detections:
    """Instances found in one image, best first.

    class_ids index COCO_CLASSES (0 = person). boxes are integer pixels (x1, y1, x2, y2),
    truncated and clamped as the official eval does: x1, y1 >= 0 and x2 <= width, y2 <= height,
    so a box predicted wholly outside the image comes out with x2 < x1 (its mask is empty).
    masks are boolean at the image size.
    """

    class_ids: Tensor  # [K] int64
    scores: Tensor  # [K] float32
    boxes: Tensor  # [K, 4] int64
    masks: Tensor  # [K, H, W] bool

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])

    @staticmethod
    def empty(height: int, width: int, device: torch.device | str = "cpu") -> Detections:
        return Detections(
            class_ids=torch.zeros(0, dtype=torch.int64, device=device),
            scores=torch.zeros(0, dtype=torch.float32, device=device),
            boxes=torch.zeros(0, 4, dtype=torch.int64, device=device),
            masks=torch.zeros(0, height, width, dtype=torch.bool, device=device),
        )


def decode_boxes(
    loc: Tensor, priors: Tensor, variances: tuple[float, float] = BOX_VARIANCES
) -> Tensor:
    """SSD-style decoding: [N, 4] offsets + [N, 4] priors (cx, cy, w, h) -> (x1, y1, x2, y2)."""
    centres = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    top_left = centres - sizes / 2
    # x2 = x1 + w (not cx + w/2) to round exactly as the official code does.
    return torch.cat((top_left, top_left + sizes), dim=1)


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of every pair: [..., n, 4] x [..., m, 4] -> [..., n, m] (batched over leading dims)."""
    top_left = torch.maximum(boxes_a[..., :, None, :2], boxes_b[..., None, :, :2])
    bottom_right = torch.minimum(boxes_a[..., :, None, 2:], boxes_b[..., None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0)
    intersection = overlap[..., 0] * overlap[..., 1]
    area_a = (boxes_a[..., 2] - boxes_a[..., 0]) * (boxes_a[..., 3] - boxes_a[..., 1])
    area_b = (boxes_b[..., 2] - boxes_b[..., 0]) * (boxes_b[..., 3] - boxes_b[..., 1])
    union = area_a[..., :, None] + area_b[..., None, :] - intersection
    return intersection / union


def fast_nms(
    boxes: Tensor,
    coefficients: Tensor,
    class_scores: Tensor,
    iou_threshold: float = NMS_IOU_THRESHOLD,
    top_k: int = NMS_TOP_K,
    max_detections: int = MAX_DETECTIONS,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Class-wise FastNMS from the YOLACT paper.

    boxes [n, 4], coefficients [n, D], class_scores [C, n] (foreground classes only).
    Each class keeps its top_k candidates; a candidate is dropped when any higher-scoring
    candidate of the same class overlaps it by more than iou_threshold, even one that is itself
    dropped (that is what makes it "fast": one matrix op instead of a sequential loop).
    Returns (boxes, coefficients, class_ids, scores) of at most max_detections survivors,
    sorted by score.
    """
    scores, order = class_scores.sort(dim=1, descending=True)
    order = order[:, :top_k]
    scores = scores[:, :top_k]
    num_classes, num_candidates = order.shape
    class_boxes = boxes[order.reshape(-1)].reshape(num_classes, num_candidates, 4)
    class_coefficients = coefficients[order.reshape(-1)].reshape(num_classes, num_candidates, -1)

    iou = box_iou(class_boxes, class_boxes).triu_(diagonal=1)
    max_overlap_with_better, _ = iou.max(dim=1)
    keep = max_overlap_with_better <= iou_threshold

    class_ids = torch.arange(num_classes, device=boxes.device)[:, None].expand_as(keep)[keep]
    scores, order = scores[keep].sort(dim=0, descending=True)
    order = order[:max_detections]
    return (
        class_boxes[keep][order],
        class_coefficients[keep][order],
        class_ids[order],
        scores[:max_detections],
    )


def box_edges_in_pixels(
    start: Tensor, end: Tensor, size: int, padding: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Relative coordinates of one axis -> ordered pixel edges, padded and clamped to [0, size]."""
    start = start * size
    end = end * size
    low = (torch.minimum(start, end) - padding).clamp(min=0)
    high = (torch.maximum(start, end) + padding).clamp(max=size)
    return low, high


def crop_masks(masks: Tensor, boxes: Tensor, padding: float = 1.0) -> Tensor:
    """Zero each mask [N, H, W] outside its relative box [N, 4], widened by padding pixels."""
    _, height, width = masks.shape
    x1, x2 = box_edges_in_pixels(boxes[:, 0], boxes[:, 2], width, padding)
    y1, y2 = box_edges_in_pixels(boxes[:, 1], boxes[:, 3], height, padding)
    columns = torch.arange(width, device=masks.device, dtype=masks.dtype)[None, None, :]
    rows = torch.arange(height, device=masks.device, dtype=masks.dtype)[None, :, None]
    inside_x = (columns >= x1[:, None, None]) & (columns < x2[:, None, None])
    inside_y = (rows >= y1[:, None, None]) & (rows < y2[:, None, None])
    return masks * (inside_x & inside_y).to(masks.dtype)


def assemble_masks(prototypes: Tensor, coefficients: Tensor, boxes: Tensor) -> Tensor:
    """Linear combination of prototypes [h, w, 32] by coefficients [N, 32], sigmoid, box crop.

    Returns soft masks [N, h, w] at prototype resolution.
    """
    masks = torch.sigmoid(prototypes @ coefficients.t())  # [h, w, N]
    return crop_masks(masks.permute(2, 0, 1), boxes)


def postprocess(
    loc: Tensor,
    class_probabilities: Tensor,
    coefficients: Tensor,
    prototypes: Tensor,
    priors: Tensor,
    image_size: tuple[int, int],
    score_threshold: float,
    top_k: int,
    maskiou_net: Callable[[Tensor], Tensor] | None = None,
) -> Detections:
    """Raw outputs of one image -> Detections, with eval.py's display semantics.

    loc [N, 4], class_probabilities [N, 81] (softmax, channel 0 = background),
    coefficients [N, 32], prototypes [h, w, 32], priors [N, 4]; image_size is (height, width).
    score_threshold applies to class scores before YOLACT++ rescoring and to the final
    scores after it; top_k keeps the best detections after rescoring.
    """
    height, width = image_size
    device = loc.device
    foreground = class_probabilities[:, 1:]
    candidates = foreground.max(dim=1).values > CANDIDATE_SCORE_THRESHOLD
    if not bool(candidates.any()):
        return Detections.empty(height, width, device)

    boxes, coefficients, class_ids, scores = fast_nms(
        decode_boxes(loc[candidates], priors[candidates]),
        coefficients[candidates],
        foreground[candidates].t(),
    )
    if score_threshold > 0:
        keep = scores > score_threshold
        boxes, coefficients, class_ids, scores = (
            boxes[keep],
            coefficients[keep],
            class_ids[keep],
            scores[keep],
        )
    if scores.numel() == 0:
        return Detections.empty(height, width, device)

    masks = assemble_masks(prototypes, coefficients, boxes)
    if maskiou_net is not None:
        predicted_iou = maskiou_net(masks[:, None])
        scores = scores * predicted_iou.gather(1, class_ids[:, None]).squeeze(1)

    order = scores.argsort(descending=True)[:top_k]
    order = order[scores[order] >= score_threshold]
    if order.numel() == 0:
        return Detections.empty(height, width, device)
    boxes, class_ids, scores, masks = boxes[order], class_ids[order], scores[order], masks[order]

    masks = F.interpolate(masks[None], size=(height, width), mode="bilinear", align_corners=False)
    masks = masks[0] > 0.5
    x1, x2 = box_edges_in_pixels(boxes[:, 0], boxes[:, 2], width)
    y1, y2 = box_edges_in_pixels(boxes[:, 1], boxes[:, 3], height)
    pixel_boxes = torch.stack((x1, y1, x2, y2), dim=1).long()
    return Detections(class_ids=class_ids, scores=scores, boxes=pixel_boxes, masks=masks)
