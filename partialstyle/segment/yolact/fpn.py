"""Feature pyramid over C3..C5 with two extra strided levels, as YOLACT builds it (P3..P7)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .config import FPN_CHANNELS


class FPN(nn.Module):
    """Top-down FPN; lateral and output convs are stored deepest level first, as in the files."""

    def __init__(self, in_channels: tuple[int, ...], num_extra_levels: int = 2) -> None:
        super().__init__()
        self.lat_layers = nn.ModuleList(
            nn.Conv2d(c, FPN_CHANNELS, 1) for c in reversed(in_channels)
        )
        self.pred_layers = nn.ModuleList(
            nn.Conv2d(FPN_CHANNELS, FPN_CHANNELS, 3, padding=1) for _ in in_channels
        )
        self.downsample_layers = nn.ModuleList(
            nn.Conv2d(FPN_CHANNELS, FPN_CHANNELS, 3, stride=2, padding=1)
            for _ in range(num_extra_levels)
        )

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """features: [C3, C4, C5] -> [P3, P4, P5, P6, P7]."""
        merged: list[Tensor] = []
        x: Tensor | None = None
        for lateral, feature in zip(self.lat_layers, reversed(features), strict=True):
            if x is None:
                x = lateral(feature)
            else:
                x = F.interpolate(x, size=feature.shape[-2:], mode="bilinear", align_corners=False)
                x = x + lateral(feature)
            merged.append(x)
        outputs = [F.relu(conv(m)) for conv, m in zip(self.pred_layers, merged, strict=True)]
        outputs.reverse()  # shallowest first
        for downsample in self.downsample_layers:
            outputs.append(downsample(outputs[-1]))
        return outputs
