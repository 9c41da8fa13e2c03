"""The six official YOLACT / YOLACT++ configurations, reduced to what inference needs.

Each field mirrors a setting of the official config that changes the network's shape or its
eval output; training-only settings are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from partialstyle.segment.classes import COCO_CLASSES

NUM_CLASSES = len(COCO_CLASSES) + 1  # + background
MASK_DIM = 32
FPN_CHANNELS = 256

# ImageNet statistics the ResNet backbones were trained with, in RGB order (the official
# code lists them in BGR and swaps channels after normalising, which is the same thing).
RGB_MEAN = (123.68, 116.78, 103.94)
RGB_STD = (58.40, 57.12, 57.38)

# Eval-time constants of the official Detect layer.
BOX_VARIANCES = (0.1, 0.2)
CANDIDATE_SCORE_THRESHOLD = 0.05
NMS_IOU_THRESHOLD = 0.5
NMS_TOP_K = 200
MAX_DETECTIONS = 100

_BASE_SCALES = (24, 48, 96, 192, 384)
ASPECT_RATIOS = (1.0, 0.5, 2.0)


@dataclass(frozen=True)
class YolactConfig:
    """Shape-defining and eval-defining settings of one official configuration."""

    name: str
    backbone: str  # "resnet" or "darknet"
    blocks_per_stage: tuple[int, ...]
    max_size: int
    # Anchor side lengths in pixels (at max_size), one tuple per FPN level P3..P7.
    scales: tuple[tuple[float, ...], ...]
    # v1 configs shipped with a bug kept for compatibility: every anchor is a square.
    square_anchors: bool
    # Per ResNet stage: how many trailing blocks may use a deformable 3x3 conv, and the
    # stride between them (block i of n is deformable if i + count >= n and i % interval == 0).
    deformable_blocks: tuple[int, ...] = (0, 0, 0, 0)
    deformable_interval: int = 1
    use_maskiou: bool = False

    @property
    def anchors_per_location(self) -> int:
        return len(self.scales[0]) * len(ASPECT_RATIOS)

    @property
    def selected_stages(self) -> tuple[int, ...]:
        """Backbone stages feeding the FPN (C3, C4, C5)."""
        return (2, 3, 4) if self.backbone == "darknet" else (1, 2, 3)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        if self.backbone == "darknet":
            return (64, 128, 256, 512, 1024)
        return (256, 512, 1024, 2048)

    def is_deformable(self, stage: int, block: int) -> bool:
        count = self.deformable_blocks[stage]
        num_blocks = self.blocks_per_stage[stage]
        return block + count >= num_blocks and block % self.deformable_interval == 0


def _v1_scales(max_size: int) -> tuple[tuple[float, ...], ...]:
    # The official im700 config rescales the pixel scales with int(s / 550 * 700).
    return tuple((float(int(s / 550 * max_size)),) for s in _BASE_SCALES)


def _plus_scales() -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(s * 2 ** (i / 3.0) for i in range(3)) for s in _BASE_SCALES)


CONFIGS: dict[str, YolactConfig] = {
    c.name: c
    for c in (
        YolactConfig("yolact_base", "resnet", (3, 4, 23, 3), 550, _v1_scales(550), True),
        YolactConfig("yolact_im700", "resnet", (3, 4, 23, 3), 700, _v1_scales(700), True),
        YolactConfig("yolact_resnet50", "resnet", (3, 4, 6, 3), 550, _v1_scales(550), True),
        YolactConfig("yolact_darknet53", "darknet", (1, 2, 8, 8, 4), 550, _v1_scales(550), True),
        YolactConfig(
            "yolact_plus_base",
            "resnet",
            (3, 4, 23, 3),
            550,
            _plus_scales(),
            False,
            deformable_blocks=(0, 4, 23, 3),
            deformable_interval=3,
            use_maskiou=True,
        ),
        YolactConfig(
            "yolact_plus_resnet50",
            "resnet",
            (3, 4, 6, 3),
            550,
            _plus_scales(),
            False,
            deformable_blocks=(0, 4, 6, 3),
            deformable_interval=1,
            use_maskiou=True,
        ),
    )
}
