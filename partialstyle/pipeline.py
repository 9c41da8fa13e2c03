"""The partial-style pipeline: segment regions → stylize them in one pass → compose.

`Pipeline` is the one object the CLI and the OBS filter drive. It holds the settings and
composes four stages: the region segmenter (partialstyle.segment.regions), the style stage
(partialstyle.style.stage), the temporal stage (partialstyle.temporal) and compositing
(partialstyle.compose). `process` takes a numpy frame and returns one of the same shape.
Settings can be swapped between frames from another thread (`configure`).

Live video splits `process` (`analyse`, `style_layer`, `coverage`) so that partialstyle.live
can carry a stylization across frames instead of running the networks on each.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from partialstyle import compose
from partialstyle.config import PipelineConfig
from partialstyle.device import keep_freed_memory, resolve_device, set_threads
from partialstyle.frames import (
    check_frame,
    processing_size,
    resize_image,
    shrink_uint8,
    to_image,
)
from partialstyle.plan import RegionStyle, StylePlan
from partialstyle.segment.regions import RegionMasks, RegionSegmenter
from partialstyle.style import stage
from partialstyle.style.stage import Blend, StyleStage, look_weight
from partialstyle.temporal import TemporalStage
from partialstyle.weights.model_cache import ModelCache, default_cache

__all__ = ["FrameAnalysis", "Pipeline", "look_weight"]


@dataclass(frozen=True, eq=False)
class FrameAnalysis:
    """One frame after the cheap stage: what the costly stage and compositing work from.

    rgb: the frame's colour channels, uint8 [H,W,3] on the device; small: the frame at
    processing size, float [3,h,w]; region_masks: each region's mask [h,w] (None when the
    plan needs none); person: all people's mask. time: the frame's timestamp (morphs);
    config and plan: the settings it was analysed with.
    """

    frame: np.ndarray
    rgb: torch.Tensor
    small: torch.Tensor
    region_masks: dict[str, torch.Tensor] | None
    person: torch.Tensor | None
    time: float
    config: PipelineConfig
    plan: StylePlan

    @cached_property
    def original(self) -> torch.Tensor:
        """The frame as float [3,H,W] in [0,1]: made only for the float compositing (guided
        upsampling, the mask view, other devices), never in the uint8 path."""
        return to_image(self.rgb)


class Pipeline:
    """Restyles frames according to a `StylePlan`, with settings from a `PipelineConfig`.

    models: the model cache the stages load networks through (default: the process's
    `default_cache`, shared by every pipeline that is not given one).
    """

    def __init__(
        self,
        config: PipelineConfig | None = None,
        plan: StylePlan | None = None,
        models: ModelCache | None = None,
    ):
        self._config = config or PipelineConfig()
        self._plan = plan or StylePlan()
        models = models if models is not None else default_cache
        self._segmenter = RegionSegmenter(models)
        self._styles = StyleStage(models)
        self._temporal = TemporalStage()
        self._lock = threading.Lock()
        self._device = resolve_device(self._config.device)
        set_threads(self._config.threads)
        if self._device.type == "cpu":
            keep_freed_memory()

    @property
    def config(self) -> PipelineConfig:
        return self._config

    @property
    def plan(self) -> StylePlan:
        return self._plan

    @property
    def device(self) -> torch.device:
        return self._device

    def configure(self, config: PipelineConfig | None = None, plan: StylePlan | None = None):
        """Swap settings; the next frame uses them. Loaded models stay loaded."""
        with self._lock:
            if config is not None:
                if config.device != self._config.device:
                    self._device = resolve_device(config.device)
                self._segmenter.reconfigured(self._config, config)
                if config.threads != self._config.threads:
                    set_threads(config.threads)
                self._config = config
            if plan is not None:
                self._plan = plan

    def reset(self) -> None:
        """Forget temporal state (call between unrelated clips)."""
        self._segmenter.reset()
        self._temporal.reset()

    def load(self, height: int = 720, width: int = 1280) -> None:
        """Load the models the current settings need now, instead of on the first frame."""
        config, plan = self._config, self._plan
        if plan.needs_mask or config.show_mask:
            self._segmenter.load(config, height, width, self._device)
        self._styles.load(plan, self._device)

    # -- per frame -------------------------------------------------------------------------

    @torch.inference_mode()
    def process(self, frame: np.ndarray, timestamp: float | None = None) -> np.ndarray:
        """Restyle one frame: uint8 H×W×3 or H×W×4 in, the same shape out (alpha untouched).

        `timestamp` (seconds) times style morphs; the default is the current time.
        """
        analysis = self.analyse(frame, timestamp)
        return self.compose(analysis, self.style_layer(analysis))

    @torch.inference_mode()
    def analyse(self, frame: np.ndarray, timestamp: float | None = None) -> FrameAnalysis:
        """The cheap stage: the frame at processing size and its region masks."""
        frame = check_frame(frame)
        with self._lock:
            config, plan, device = self._config, self._plan, self._device
        rgb, small = _prepare(frame, device, config)
        if not (plan.needs_mask or config.show_mask):
            region_masks, person = None, None
        else:
            found = self._segmenter.regions(rgb, small, config, plan)
            region_masks, person = found.regions, found.person
        now = time.monotonic() if timestamp is None else timestamp
        return FrameAnalysis(frame, rgb, small, region_masks, person, now, config, plan)

    @torch.inference_mode()
    def style_layer(self, analysis: FrameAnalysis) -> torch.Tensor:
        """The costly stage: every region stylized and blended at processing size into one
        premultiplied layer plus its coverage (mask × strength), [4,h,w], stabilized."""
        config, small = analysis.config, analysis.small
        regions, region_masks = _shown_regions(analysis)
        half = config.half_precision and small.device.type == "cuda"
        layer = self._styles.layer(small, regions, region_masks, self._blends(analysis), half)
        return self._temporal.stabilize(
            small, layer, analysis.plan, analysis.time, config.morph_seconds, config.stabilize
        )

    def morphing(self, analysis: FrameAnalysis) -> bool:
        """Whether a style change is still fading in at the analysed frame's time."""
        return self._temporal.morphing(analysis.time, analysis.config.morph_seconds)

    @torch.inference_mode()
    def coverage(self, analysis: FrameAnalysis) -> torch.Tensor:
        """How much styled content each pixel of the analysed frame shows, [h,w] in [0,1]:
        its regions' masks times their strengths (and morph shares). What `style_layer`
        puts in its last channel, without running a network."""
        regions, region_masks = _shown_regions(analysis)
        return stage.coverage(analysis.small, regions, region_masks, self._blends(analysis))

    @torch.inference_mode()
    def compose(self, analysis: FrameAnalysis, layer: torch.Tensor) -> np.ndarray:
        """The full-resolution pass: the layer scaled to the frame and blended onto it (in
        uint8 on the CPU with bilinear upsampling, else in float)."""
        config = analysis.config
        small = analysis.small
        if small.device.type == "cpu" and config.composes_in_uint8:
            return compose.blend_layer(analysis.frame, layer, small)
        return compose.compose_frame(
            analysis.frame,
            analysis.original,
            analysis.small,
            layer,
            config.upsample,
            analysis.person if config.show_mask else None,
        )

    @torch.inference_mode()
    def person_mask(self, frame: np.ndarray) -> np.ndarray:
        """The refined person mask at the frame's size, float32 H×W in [0,1]."""
        person = self.region_masks(frame).person
        full = resize_image(person[None], tuple(frame.shape[:2]))[0].clamp_(0.0, 1.0)
        return full.float().cpu().numpy()

    @torch.inference_mode()
    def region_masks(self, frame: np.ndarray) -> RegionMasks:
        """The frame's region masks at processing size with the current settings, as
        `analyse` finds them (the segmenter's temporal state moves on)."""
        config = self._config
        rgb, small = _prepare(check_frame(frame), self._device, config)
        return self._segmenter.regions(rgb, small, config, self._plan)

    def _blends(self, analysis: FrameAnalysis) -> dict[str, Blend]:
        """Each shown region's styles and their shares at the analysed frame's time."""
        regions, _ = _shown_regions(analysis)
        seconds = analysis.config.morph_seconds
        return {
            name: self._temporal.blend(name, region.style, analysis.time, seconds)
            for name, region in regions.items()
        }


def _prepare(
    frame: np.ndarray, device: torch.device, config: PipelineConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame's colour channels as uint8 H×W×3 on `device` (on the CPU a view, no copy),
    and the frame at processing size, float [3,h,w]."""
    rgb = torch.from_numpy(np.ascontiguousarray(frame))[..., :3].to(device)
    size = processing_size(*rgb.shape[:2], config.process_height)
    if device.type == "cpu" and size != tuple(rgb.shape[:2]):
        return rgb, shrink_uint8(rgb, size)
    return rgb, resize_image(to_image(rgb), size)


def _shown_regions(
    analysis: FrameAnalysis,
) -> tuple[dict[str, RegionStyle], dict[str, torch.Tensor] | None]:
    """The regions to style and their masks (None: one look over the whole frame)."""
    plan, region_masks = analysis.plan, analysis.region_masks
    if not plan.needs_mask:
        return {"person": plan.person}, None
    regions = {name: style for name, style in plan.regions().items() if name in region_masks}
    return regions, region_masks
