"""Anchor boxes ("priors") for every FPN location, in the order the prediction head emits them."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def make_priors(
    feature_sizes: list[tuple[int, int]],
    scales: tuple[tuple[float, ...], ...],
    aspect_ratios: tuple[float, ...],
    max_size: int,
    square_anchors: bool,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Priors as [N, 4] (cx, cy, w, h), relative to the image.

    Order: level, then row, then column, then scale, then aspect ratio. Scales are in pixels
    of the max_size x max_size network input. With square_anchors (the v1 configs' kept bug)
    the height is set to the width, so every anchor is a square of side scale * sqrt(ratio).
    """
    levels = []
    for (height, width), level_scales in zip(feature_sizes, scales, strict=True):
        sizes = []
        for scale in level_scales:
            for ratio in aspect_ratios:
                root = math.sqrt(ratio)
                w = scale * root / max_size
                h = w if square_anchors else scale / root / max_size
                sizes.append((w, h))
        sizes_t = torch.tensor(sizes, dtype=torch.float32, device=device)  # [A, 2]
        cy = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
        cx = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")
        centres = torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 1, 2)  # [H*W, 1, 2]
        num_anchors = sizes_t.shape[0]
        level = torch.cat(
            (centres.expand(-1, num_anchors, 2), sizes_t.expand(height * width, -1, -1)), dim=-1
        )
        levels.append(level.reshape(-1, 4))
    return torch.cat(levels, dim=0)
