"""Pipeline settings, validated once at the edge (CLI arguments, OBS settings)."""

from __future__ import annotations

from dataclasses import dataclass

from partialstyle.device import DEVICE_CHOICES

SEGMENTERS = ("auto", "selfie", "selfie-landscape", "yolact")
UPSAMPLERS = ("bilinear", "guided")


@dataclass(frozen=True)
class PipelineConfig:
    """How frames are processed; the `StylePlan` says what they look like.

    process_height: the height the style network and mask refinement work at (the result is
    scaled back to the frame); None processes at the frame's own resolution.
    mask_threshold: person probability at which a pixel counts as person.
    mask_feather: softness of the mask edge, in frame pixels.
    edge_refine: snap the mask edge to image edges with a guided filter.
    stabilize: 0 off; towards 1 the stylized image holds still where the frame does not move
    (less shimmer on static content).
    morph_seconds: a changed style fades in over this many seconds instead of switching.
    upsample: how the stylized image returns to frame size when process_height is lower:
    "bilinear", or "guided" (edge-aware: takes edges from the full-resolution frame).
    yolact_weights: a YOLACT checkpoint (.pth); None uses the first one in models/yolact/.
    instance_every: YOLACT runs on every n-th frame; masks are carried in between.
    score_threshold: YOLACT detections scoring below this are ignored.
    temporal_smoothing: 0 uses each frame's mask as is; towards 1 the mask follows slowly,
    which hides segmentation flicker on video.
    """

    segmenter: str = "auto"
    process_height: int | None = None
    mask_threshold: float = 0.5
    mask_feather: float = 2.0
    edge_refine: bool = True
    temporal_smoothing: float = 0.0
    stabilize: float = 0.0
    morph_seconds: float = 0.0
    upsample: str = "bilinear"
    yolact_weights: str | None = None
    instance_every: int = 1
    score_threshold: float = 0.3
    device: str = "auto"
    threads: int | None = None
    half_precision: bool = True
    show_mask: bool = False

    @property
    def composes_in_uint8(self) -> bool:
        """Whether the full-resolution pass can blend in uint8 (`compose.blend_styled`): with
        bilinear upsampling and without the mask view, which need the float frame."""
        return self.upsample == "bilinear" and not self.show_mask

    def __post_init__(self) -> None:
        if self.segmenter not in SEGMENTERS:
            raise ValueError(
                f"unknown segmenter {self.segmenter!r}; choose one of {', '.join(SEGMENTERS)}"
            )
        if self.process_height is not None and not 32 <= self.process_height <= 2160:
            raise ValueError(f"process height must be 32 to 2160 pixels, got {self.process_height}")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ValueError(f"mask threshold must be between 0 and 1, got {self.mask_threshold}")
        if not 0.0 <= self.mask_feather <= 100.0:
            raise ValueError(f"mask feather must be 0 to 100 pixels, got {self.mask_feather}")
        if not 0.0 <= self.temporal_smoothing < 1.0:
            raise ValueError(
                f"temporal smoothing must be at least 0 and below 1, got {self.temporal_smoothing}"
            )
        if not 0.0 <= self.stabilize < 1.0:
            raise ValueError(f"stabilize must be at least 0 and below 1, got {self.stabilize}")
        if not 0.0 <= self.morph_seconds <= 60.0:
            raise ValueError(f"morph time must be 0 to 60 seconds, got {self.morph_seconds}")
        if self.upsample not in UPSAMPLERS:
            raise ValueError(
                f"unknown upsampling {self.upsample!r}; choose one of {', '.join(UPSAMPLERS)}"
            )
        if self.instance_every < 1:
            raise ValueError(f"instance_every must be at least 1, got {self.instance_every}")
        if not 0.0 < self.score_threshold < 1.0:
            raise ValueError(f"score threshold must be between 0 and 1, got {self.score_threshold}")
        if self.device not in DEVICE_CHOICES:
            raise ValueError(
                f"unknown device {self.device!r}; choose one of {', '.join(DEVICE_CHOICES)}"
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")


# The `live` preset: a quarter of the arithmetic of 360-line processing (180 lines), with
# edge-aware upsampling that takes edges from the full-resolution frame, and a smoothed mask.
# `partialstyle bench` reports its speed and its difference from full-resolution processing.
LIVE = PipelineConfig(process_height=180, upsample="guided", temporal_smoothing=0.5)
