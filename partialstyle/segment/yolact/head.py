"""The heads on top of the FPN: prototype masks, per-anchor predictions, mask-IoU scoring."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .config import FPN_CHANNELS, MASK_DIM, NUM_CLASSES


class ProtoNet(nn.Sequential):
    """P3 -> 32 prototype masks at twice P3's resolution (138x138 for a 550 input).

    Parameter-free layers keep their slots so the conv indices (0, 2, 4, 8, 10) match the
    checkpoints.
    """

    def __init__(self) -> None:
        c = FPN_CHANNELS
        super().__init__(
            nn.Conv2d(c, c, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, MASK_DIM, 1),
        )

    def forward(self, p3: Tensor) -> Tensor:
        """Returns the prototypes channels-last, [B, H, W, 32], after the final ReLU."""
        return F.relu(super().forward(p3)).permute(0, 2, 3, 1).contiguous()


class PredictionHead(nn.Module):
    """Per-anchor box offsets, class logits and mask coefficients; shared by all levels."""

    def __init__(self, anchors_per_location: int) -> None:
        super().__init__()
        c = FPN_CHANNELS
        a = anchors_per_location
        self.upfeature = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True))
        self.bbox_layer = nn.Conv2d(c, a * 4, 3, padding=1)
        self.conf_layer = nn.Conv2d(c, a * NUM_CLASSES, 3, padding=1)
        self.mask_layer = nn.Conv2d(c, a * MASK_DIM, 3, padding=1)

    def forward(self, level: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """[B, 256, H, W] -> loc [B, H*W*A, 4], class logits [B, H*W*A, 81], coeffs [B, H*W*A, 32].

        Anchors are ordered row by row, then by anchor within a location, matching make_priors.
        """
        x = self.upfeature(level)
        batch = x.shape[0]

        def flat(t: Tensor, width: int) -> Tensor:
            return t.permute(0, 2, 3, 1).reshape(batch, -1, width)

        loc = flat(self.bbox_layer(x), 4)
        logits = flat(self.conf_layer(x), NUM_CLASSES)
        coefficients = flat(self.mask_layer(x), MASK_DIM).tanh()
        return loc, logits, coefficients


class MaskIoUNet(nn.Module):
    """YOLACT++ mask re-scoring: predicts, per class, the IoU of a mask with its true object."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for out_channels in (8, 16, 32, 64, 128):
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2), nn.ReLU(inplace=True)]
            in_channels = out_channels
        layers += [nn.Conv2d(in_channels, NUM_CLASSES - 1, 1), nn.ReLU(inplace=True)]
        self.maskiou_net = nn.Sequential(*layers)

    def forward(self, masks: Tensor) -> Tensor:
        """[N, 1, H, W] cropped soft masks -> [N, 80] predicted mask IoU per class."""
        return self.maskiou_net(masks).amax(dim=(2, 3))
