"""The partial-style pipeline: segment people → stylize regions in one pass → compose.

`Pipeline` is the one object the CLI and the OBS filter drive. It holds the settings, the
loaded models and the temporal mask state; `process` takes a numpy frame and returns one of
the same shape. Settings can be swapped between frames from another thread (`configure`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from partialstyle import compose
from partialstyle.config import PipelineConfig
from partialstyle.device import resolve_device, set_threads
from partialstyle.errors import ModelMissingError
from partialstyle.filters import guided_upsample
from partialstyle.frames import check_frame, processing_size, resize_image, to_image, to_uint8
from partialstyle.morph import StyleMorph
from partialstyle.plan import RegionStyle, StylePlan
from partialstyle.segment.instances import (
    Instance,
    PeopleTracker,
    detected_instances,
    people_shares,
    selfie_people,
    union_mask,
)
from partialstyle.segment.refine import PersonMask, refine_mask
from partialstyle.stabilize import OutputStabilizer
from partialstyle.style.spec import StyleSpec
from partialstyle.stylize import Look, StyleVectors, stylize
from partialstyle.weights.model_cache import load_johnson, load_model, load_yolact, yolact_path

# Edge-aware upsampling window (processing pixels) and regularisation, tuned on real photos
# by the quality numbers `partialstyle bench` reports.
_GUIDED_UPSAMPLE_RADIUS = 2
_GUIDED_UPSAMPLE_EPS = 1e-2

# Frames at least this much wider than tall go to MediaPipe's 16:9 landscape model.
_LANDSCAPE_ASPECT = 1.5


def look_weight(kind: str, region: RegionStyle, share: float) -> float:
    """How much of a look shows in its region: its morph share times the region's strength.
    An arbitrary style's strength already moved its style vector towards the frame's, so
    its pixels are taken whole."""
    if kind == "none" or region.strength <= 0.0:
        return 0.0
    return share * (1.0 if kind == "arbitrary" else region.strength)


@dataclass(frozen=True, eq=False)
class FrameAnalysis:
    """One frame after the cheap stage: what the costly stage and compositing work from.

    original: the frame as float [3,H,W]; small: at processing size [3,h,w]; region_masks:
    each region's mask [h,w] (None when the plan needs none); person: all people's mask.
    time: the frame's timestamp (morphs); config and plan: the settings it was analysed with.
    """

    frame: np.ndarray
    original: torch.Tensor
    small: torch.Tensor
    region_masks: dict[str, torch.Tensor] | None
    person: torch.Tensor | None
    time: float
    config: PipelineConfig
    plan: StylePlan


def choose_segmenter(segmenter: str, height: int, width: int, yolact_ready: bool = False) -> str:
    """Resolve 'auto': YOLACT when its weights are there and a GPU runs it, else the selfie
    model that suits the frame's shape."""
    if segmenter != "auto":
        return segmenter
    if yolact_ready:
        return "yolact"
    return "selfie-landscape" if width >= _LANDSCAPE_ASPECT * height else "selfie"


class Pipeline:
    """Restyles frames according to a `StylePlan`, with settings from a `PipelineConfig`."""

    def __init__(self, config: PipelineConfig | None = None, plan: StylePlan | None = None):
        self._config = config or PipelineConfig()
        self._plan = plan or StylePlan()
        self._mask_state = PersonMask()
        self._morph = StyleMorph()
        self._stabilizer = OutputStabilizer()
        self._stabilized_plan: StylePlan | None = None
        self._style_vectors = StyleVectors()
        self._tracker = PeopleTracker()
        self._detections: tuple[tuple[int, int], list[Instance]] | None = None
        self._frames_since_detection = 0
        self._yolact_lookup: tuple[str | None, object] | None = None
        self._lock = threading.Lock()
        self._device = resolve_device(self._config.device)
        set_threads(self._config.threads)

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
                    self._mask_state.reset()
                self._yolact_lookup = None  # weights may have been fetched meanwhile
                if config.threads != self._config.threads:
                    set_threads(config.threads)
                self._config = config
            if plan is not None:
                self._plan = plan

    def reset(self) -> None:
        """Forget temporal state (call between unrelated clips)."""
        self._mask_state.reset()
        self._morph.reset()
        self._stabilizer.reset()
        self._tracker.reset()
        self._detections = None

    def load(self, height: int = 720, width: int = 1280) -> None:
        """Load the models the current settings need now, instead of on the first frame."""
        config, plan = self._config, self._plan
        if plan.needs_mask or config.show_mask:
            weights = self._yolact_weights(config)
            ready = weights is not None and self._device.type == "cuda"
            segmenter = choose_segmenter(config.segmenter, height, width, ready)
            if segmenter == "yolact" and weights is not None:
                load_yolact(weights, self._device)
            elif segmenter != "yolact":
                load_model(segmenter, self._device)
        for region in plan.regions().values():
            if region.style.kind == "multistyle":
                load_model("multistyle26", self._device)
            elif region.style.kind == "arbitrary":
                self._style_vectors.of_picture(region.style.source, self._device)
            elif region.style.kind == "johnson":
                load_johnson(region.style.source, self._device)

    # -- per frame -------------------------------------------------------------------------

    @torch.inference_mode()
    def process(self, frame: np.ndarray, timestamp: float | None = None) -> np.ndarray:
        """Restyle one frame: uint8 H×W×3 or H×W×4 in, the same shape out (alpha untouched).

        `timestamp` (seconds) times style morphs; the default is the current time.
        """
        analysis = self.analyse(frame, timestamp)
        return self.compose(analysis, self.style_layer(analysis))

    @torch.inference_mode()
    def analyse(
        self,
        frame: np.ndarray,
        timestamp: float | None = None,
        moved_from: tuple[FrameAnalysis, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    ) -> FrameAnalysis:
        """The cheap per-frame stage: the frame at processing size and its region masks.

        moved_from: an earlier analysis with the same settings and a function that moves
        its masks onto this frame (live video: optical flow), used instead of segmenting.
        """
        frame = check_frame(frame)
        with self._lock:
            config, plan, device = self._config, self._plan, self._device
        # A view of the colour channels: `to_image` copies them once, into float.
        rgb = torch.from_numpy(np.ascontiguousarray(frame))[..., :3].to(device)
        original = to_image(rgb)
        size = processing_size(*original.shape[-2:], config.process_height)
        small = resize_image(original, size)
        if not (plan.needs_mask or config.show_mask):
            region_masks, person = None, None
        elif moved_from is not None:
            earlier, move = moved_from
            region_masks = {name: move(mask) for name, mask in earlier.region_masks.items()}
            person = move(earlier.person)
        else:
            region_masks, person = self._region_masks(rgb, small, config, plan)
        now = time.monotonic() if timestamp is None else timestamp
        return FrameAnalysis(frame, original, small, region_masks, person, now, config, plan)

    def _shown_regions(self, analysis: FrameAnalysis) -> tuple[dict[str, RegionStyle], dict]:
        """The regions to style and their masks (None: one look over the whole frame)."""
        plan, region_masks = analysis.plan, analysis.region_masks
        if not plan.needs_mask:
            return {"person": plan.person}, None
        regions = {name: style for name, style in plan.regions().items() if name in region_masks}
        return regions, region_masks

    @torch.inference_mode()
    def style_layer(self, analysis: FrameAnalysis) -> torch.Tensor:
        """The costly stage: every region stylized and blended at processing size into one
        premultiplied layer plus its coverage (mask × strength), [4,h,w], stabilized."""
        config, plan, small, now = analysis.config, analysis.plan, analysis.small, analysis.time
        regions, region_masks = self._shown_regions(analysis)
        # Each region's looks: one, or two while its style morphs into a new one.
        looks, weights = {}, {}
        for name, region in regions.items():
            for index, (look, share) in enumerate(self._looks(name, region, small, now, config)):
                weight = look_weight(look.kind, region, share)
                if weight > 0.0:
                    looks[name, index] = look
                    weights[name, index] = weight
        masks = {key: region_masks[key[0]] for key in looks} if region_masks else None
        half = config.half_precision and small.device.type == "cuda"
        stylized = stylize(small, looks, masks, half)

        # Blend at processing size into one premultiplied layer plus its coverage, then bring
        # both to the frame's size in one go: the cost at full resolution does not depend on
        # the number of regions, and pixels no region styles keep their exact original values.
        coverage = small.new_zeros(small.shape[-2:])
        premultiplied = small.new_zeros(small.shape)
        for key in looks:
            styled = stylized[key]
            if regions[key[0]].preserve_colors:
                styled = compose.preserve_colors(styled, small)
            weight = weights[key] if masks is None else masks[key] * weights[key]
            coverage += weight
            premultiplied += weight * styled
        layer = torch.cat([premultiplied, coverage[None]])
        # Stabilizing holds the previous look where nothing moves, so it must not hold on to
        # an old style: it starts afresh when the plan changes and waits for morphs to end.
        if plan != self._stabilized_plan or self._morph.in_progress(now, config.morph_seconds):
            self._stabilizer.reset()
            self._stabilized_plan = plan
        return self._stabilizer(small, layer, config.stabilize)

    def morphing(self, analysis: FrameAnalysis) -> bool:
        """Whether a style change is still fading in at the analysed frame's time."""
        return self._morph.in_progress(analysis.time, analysis.config.morph_seconds)

    @torch.inference_mode()
    def coverage(self, analysis: FrameAnalysis) -> torch.Tensor:
        """How much styled content each pixel of the analysed frame shows, [h,w] in [0,1]:
        its regions' masks times their strengths (and morph shares). What `style_layer`
        puts in its last channel, without running a network."""
        regions, region_masks = self._shown_regions(analysis)
        small, now, config = analysis.small, analysis.time, analysis.config
        coverage = small.new_zeros(small.shape[-2:])
        for name, region in regions.items():
            blend = self._morph.blend(name, region.style, now, config.morph_seconds)
            weight = sum(look_weight(spec.kind, region, share) for spec, share in blend)
            if weight > 0.0:
                coverage += weight if region_masks is None else region_masks[name] * weight
        return coverage.clamp_(0.0, 1.0)

    @torch.inference_mode()
    def compose(self, analysis: FrameAnalysis, layer: torch.Tensor) -> np.ndarray:
        """The full-resolution pass: the layer scaled to the frame and blended onto it."""
        config, original, frame = analysis.config, analysis.original, analysis.frame
        layer = self._upsample(layer, analysis.small, original, config.upsample)
        result = compose.blend_onto(original, layer[:3], layer[3].clamp_(0.0, 1.0))
        if config.show_mask:
            size = tuple(original.shape[-2:])
            full_mask = resize_image(analysis.person[None], size)[0].clamp_(0.0, 1.0)
            result = compose.mask_overlay(result, full_mask)
        out = frame.copy()
        out[..., :3] = to_uint8(result).cpu().numpy()
        return out

    @staticmethod
    def _upsample(
        layer: torch.Tensor, small: torch.Tensor, original: torch.Tensor, mode: str
    ) -> torch.Tensor:
        """Bring a [C,h,w] layer from processing size back to the frame's size."""
        if layer.shape[-2:] == original.shape[-2:]:
            return layer
        if mode == "bilinear":
            size = tuple(original.shape[-2:])
            return F.interpolate(layer[None], size=size, mode="bilinear", align_corners=False)[0]
        return guided_upsample(
            compose.luminance(small)[None, None],
            layer[None],
            compose.luminance(original)[None, None],
            radius=_GUIDED_UPSAMPLE_RADIUS,
            eps=_GUIDED_UPSAMPLE_EPS,
        )[0]

    @torch.inference_mode()
    def person_mask(self, frame: np.ndarray) -> np.ndarray:
        """The refined person mask at the frame's size, float32 H×W in [0,1]."""
        frame = check_frame(frame)
        config, device = self._config, self._device
        rgb = torch.from_numpy(np.ascontiguousarray(frame[..., :3])).to(device)
        original = to_image(rgb)
        size = processing_size(*original.shape[-2:], config.process_height)
        _, mask = self._region_masks(rgb, resize_image(original, size), config, self._plan)
        full = resize_image(mask[None], tuple(original.shape[-2:]))[0].clamp_(0.0, 1.0)
        return full.float().cpu().numpy()

    def _region_masks(
        self, rgb: torch.Tensor, small: torch.Tensor, config: PipelineConfig, plan: StylePlan
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Each region's mask at processing size (together they cover every pixel once), and
        the mask of all people."""
        size = tuple(small.shape[-2:])
        weights = self._yolact_weights(config)
        yolact_ready = weights is not None and rgb.device.type == "cuda"
        segmenter = choose_segmenter(config.segmenter, *rgb.shape[:2], yolact_ready)
        instances: list[Instance] = []
        if segmenter == "yolact":
            if weights is None:
                raise ModelMissingError(
                    "no YOLACT weights in models/yolact; run `partialstyle models fetch "
                    "yolact-resnet50` or choose the selfie segmenter"
                )
            instances = self._detect(rgb, size, weights, config)
            people = [instance for instance in instances if instance.class_name == "person"]
            probability = union_mask(people, small[0])
            person = self._refine(
                self._mask_state.smooth(probability, config.temporal_smoothing), small, rgb, config
            )
        else:
            person = self._person_mask(rgb, small, config, segmenter)
            people = selfie_people(person) if plan.needs_instances else []

        masks: dict[str, torch.Tensor] = {}
        if plan.needs_instances and people:
            people = self._tracker.number(people)
            numbered = dict(plan.people)
            shares = people_shares(people, softness=max(1.0, size[0] / 60))
            for instance, share in zip(people, shares, strict=True):
                name = f"person:{instance.number}" if instance.number in numbered else "person"
                masks[name] = masks[name] + person * share if name in masks else person * share
        else:
            masks["person"] = person
        claimed = torch.stack(list(masks.values())).sum(0).clamp_(max=1.0)
        for class_name, _ in plan.classes:
            objects = [instance for instance in instances if instance.class_name == class_name]
            if objects:
                region = torch.minimum(union_mask(objects, person), 1.0 - claimed)
                masks[f"class:{class_name}"] = region
                claimed = claimed + region
        masks["background"] = 1.0 - claimed
        return masks, person

    def _yolact_weights(self, config: PipelineConfig):
        """The YOLACT checkpoint for these settings, looked up once per settings change rather
        than by listing models/yolact/ on every frame."""
        if config.segmenter not in ("auto", "yolact"):
            return None
        cached = self._yolact_lookup
        if cached is None or cached[0] != config.yolact_weights:
            cached = (config.yolact_weights, yolact_path(config.yolact_weights))
            self._yolact_lookup = cached
        return cached[1]

    def _detect(
        self, rgb: torch.Tensor, size: tuple[int, int], weights, config: PipelineConfig
    ) -> list[Instance]:
        """YOLACT instances, refreshed every `instance_every` frames and carried in between."""
        from partialstyle.segment.classes import COCO_CLASSES

        self._frames_since_detection += 1
        cached = self._detections
        if (
            cached is None
            or cached[0] != size
            or self._frames_since_detection >= config.instance_every
        ):
            detections = load_yolact(weights, rgb.device).detect(rgb, config.score_threshold)
            self._detections = (size, detected_instances(detections, size, COCO_CLASSES))
            self._frames_since_detection = 0
        return [
            Instance(instance.class_name, instance.mask, instance.box)
            for instance in self._detections[1]
        ]

    def _refine(self, probability, small, rgb, config) -> torch.Tensor:
        scale = small.shape[-2] / rgb.shape[0]
        return refine_mask(
            probability,
            small,
            config.mask_threshold,
            config.mask_feather * scale,
            config.edge_refine,
        )

    def _person_mask(
        self, rgb: torch.Tensor, small: torch.Tensor, config: PipelineConfig, name: str
    ) -> torch.Tensor:
        from partialstyle.segment.selfie import segment_person

        probability = segment_person(load_model(name, rgb.device), rgb, tuple(small.shape[-2:]))
        probability = self._mask_state.smooth(probability, config.temporal_smoothing)
        return self._refine(probability, small, rgb, config)

    def _looks(
        self, name: str, region: RegionStyle, small: torch.Tensor, now: float, config
    ) -> list[tuple[Look, float]]:
        """The region's looks and their shares; morphs of one network blend conditioning."""
        blend = self._morph.blend(name, region.style, now, config.morph_seconds)
        looks = [(self._look(spec, region.strength, small), share) for spec, share in blend]
        if len(looks) == 2:
            (old, old_share), (new, new_share) = looks
            if old.kind == new.kind and old.kind in ("multistyle", "arbitrary"):
                mixed = old.conditioning * old_share + new.conditioning * new_share
                return [(Look(old.kind, mixed), 1.0)]
        return looks

    def _look(self, spec: StyleSpec, strength: float, small: torch.Tensor) -> Look:
        if spec.kind == "multistyle":
            weights = torch.tensor(spec.weight_vector(), device=small.device)
            return Look("multistyle", weights)
        if spec.kind == "arbitrary":
            vector = self._style_vectors.of_picture(spec.source, small.device)
            if strength < 1.0:
                vector = torch.lerp(StyleVectors.of_frame(small), vector, strength)
            return Look("arbitrary", vector)
        if spec.kind == "johnson":
            return Look("johnson", source=spec.source)
        return Look("none")
