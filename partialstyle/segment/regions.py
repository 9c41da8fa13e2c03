"""The region segmenter: from a frame to the masks of the regions a `StylePlan` names.

It chooses the segmenter (the one rule, used by the pipeline and the `mask` and `segment`
commands alike), runs it, keeps the person mask steady over time, numbers people with a
`PeopleTracker` and runs YOLACT every `instance_every` frames, carrying its instances in
between. Networks come from the model cache the pipeline hands down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from partialstyle.config import PipelineConfig
from partialstyle.errors import ModelMissingError
from partialstyle.plan import StylePlan
from partialstyle.segment.classes import COCO_CLASSES
from partialstyle.segment.instances import (
    Instance,
    PeopleTracker,
    detected_instances,
    people_shares,
    selfie_people,
    union_mask,
)
from partialstyle.segment.refine import PersonMask, refine_mask
from partialstyle.segment.selfie import model_probability, segment_person

if TYPE_CHECKING:
    from partialstyle.weights.model_cache import ModelCache

# Frames at least this much wider than tall go to MediaPipe's 16:9 landscape model.
_LANDSCAPE_ASPECT = 1.5


def choose_segmenter(segmenter: str, height: int, width: int, yolact_ready: bool = False) -> str:
    """Resolve 'auto': YOLACT when its weights are there and a GPU runs it, else the selfie
    model that suits the frame's shape."""
    if segmenter != "auto":
        return segmenter
    if yolact_ready:
        return "yolact"
    return "selfie-landscape" if width >= _LANDSCAPE_ASPECT * height else "selfie"


@dataclass(frozen=True, eq=False)
class RegionMasks:
    """Each region's mask [h,w] at processing size (together they cover every pixel once),
    and the mask of all people."""

    regions: dict[str, torch.Tensor]
    person: torch.Tensor


@dataclass(frozen=True, eq=False)
class Detection:
    """One person or object found in a whole frame: COCO class index, score, box in pixels
    (x1, y1, x2, y2) and its mask [H,W] at the frame's size."""

    class_index: int
    score: float
    box: tuple[int, int, int, int]
    mask: torch.Tensor


@dataclass(frozen=True, eq=False)
class _CarriedInstances:
    """YOLACT's last instances and the processing size they were made at."""

    size: tuple[int, int]
    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class _YolactLookup:
    """The `yolact_weights` setting and the checkpoint it pointed to (None: none found)."""

    setting: str | None
    path: Path | None


class RegionSegmenter:
    """Segments frames into a plan's regions, keeping the person mask, people's numbers and
    YOLACT's instances from frame to frame; `models` is the model cache handed down."""

    def __init__(self, models: ModelCache) -> None:
        self._models = models
        self._mask_state = PersonMask()
        self._tracker = PeopleTracker()
        self._carried: _CarriedInstances | None = None
        self._frames_since_detection = 0
        self._yolact_lookup: _YolactLookup | None = None

    def reset(self) -> None:
        """Forget temporal state (between unrelated clips)."""
        self._mask_state.reset()
        self._tracker.reset()
        self._carried = None

    def reconfigured(self, old: PipelineConfig, new: PipelineConfig) -> None:
        """Settings changed: look for YOLACT weights again (they may have been fetched), and
        forget the smoothed mask when the device changes."""
        self._yolact_lookup = None
        if new.device != old.device:
            self._mask_state.reset()

    def choose(
        self, config: PipelineConfig, height: int, width: int, device: torch.device
    ) -> tuple[str, Path | None]:
        """The segmenter these settings pick for a frame, and YOLACT's weights if any.
        YOLACT counts as ready under 'auto' when its weights are there and a GPU runs it."""
        weights = self._yolact_weights(config)
        ready = weights is not None and device.type == "cuda"
        return choose_segmenter(config.segmenter, height, width, ready), weights

    def load(self, config: PipelineConfig, height: int, width: int, device: torch.device) -> None:
        """Load the segmenter these settings pick, instead of on the first frame."""
        name, weights = self.choose(config, height, width, device)
        if name != "yolact":
            self._models.load_model(name, device)
        elif weights is not None:
            self._models.load_yolact(weights, device)

    def regions(
        self, rgb: torch.Tensor, small: torch.Tensor, config: PipelineConfig, plan: StylePlan
    ) -> RegionMasks:
        """Each region's mask at the size of `small` for the frame `rgb` (H×W×3 uint8)."""
        size = tuple(small.shape[-2:])
        name, weights = self.choose(config, *rgb.shape[:2], rgb.device)
        instances: list[Instance] = []
        if name == "yolact":
            instances = self._carried_instances(rgb, size, _require(weights), config)
            people = [instance for instance in instances if instance.class_name == "person"]
            probability = union_mask(people, small[0])
            person = self._refine(
                self._mask_state.smooth(probability, config.temporal_smoothing), small, rgb, config
            )
        else:
            # At the segmenter's own size, smoothed there too (scaling up is linear, so the
            # order does not matter): refinement scales it up in its first pass.
            probability = model_probability(self._models.load_model(name, rgb.device), rgb)
            probability = self._mask_state.smooth(probability, config.temporal_smoothing)
            person = self._refine(probability, small, rgb, config)
            people = selfie_people(person) if plan.needs_instances else []

        masks: dict[str, torch.Tensor] = {}
        if plan.needs_instances and people:
            people = self._tracker.number(people)
            numbered = dict(plan.people)
            shares = people_shares(people, softness=max(1.0, size[0] / 60))
            for instance, share in zip(people, shares, strict=True):
                region = f"person:{instance.number}" if instance.number in numbered else "person"
                masks[region] = (
                    masks[region] + person * share if region in masks else person * share
                )
        else:
            masks["person"] = person
        parts = list(masks.values())
        # One part is a refined mask (or a share of it), within [0, 1] already.
        claimed = parts[0] if len(parts) == 1 else torch.stack(parts).sum(0).clamp_(max=1.0)
        for class_name, _ in plan.classes:
            objects = [instance for instance in instances if instance.class_name == class_name]
            if objects:
                region = torch.minimum(union_mask(objects, person), 1.0 - claimed)
                masks[f"class:{class_name}"] = region
                claimed = claimed + region
        masks["background"] = 1.0 - claimed
        return RegionMasks(masks, person)

    def person_probability(
        self, rgb: torch.Tensor, config: PipelineConfig
    ) -> tuple[str, torch.Tensor]:
        """The segmenter's name and its raw person probability [H,W] at the frame's size
        (not smoothed over time, not refined): what `partialstyle mask` writes."""
        name, weights = self.choose(config, *rgb.shape[:2], rgb.device)
        size = tuple(rgb.shape[:2])
        if name != "yolact":
            return name, self._selfie(name, rgb, None)
        detections = self._models.load_yolact(_require(weights), rgb.device).detect(
            rgb, config.score_threshold
        )
        instances = detected_instances(detections, size, COCO_CLASSES)
        people = [instance for instance in instances if instance.class_name == "person"]
        return name, union_mask(people, rgb[..., 0].float())

    def detections(
        self, rgb: torch.Tensor, config: PipelineConfig, top_k: int
    ) -> tuple[str, list[Detection]]:
        """The segmenter's name and up to `top_k` people or objects in the frame `rgb`:
        YOLACT's detections, or the selfie model's separate people (scored by their mean
        probability). What `partialstyle segment` writes."""
        name, weights = self.choose(config, *rgb.shape[:2], rgb.device)
        found = []
        if name == "yolact":
            yolact = self._models.load_yolact(_require(weights), rgb.device)
            detections = yolact.detect(rgb, config.score_threshold, top_k)
            for i in range(len(detections)):
                x1, y1, x2, y2 = (int(v) for v in detections.boxes[i])
                if x2 <= x1 or y2 <= y1:
                    continue  # predicted wholly outside the image: nothing to show
                class_index, score = int(detections.class_ids[i]), float(detections.scores[i])
                mask = detections.masks[i].float()
                found.append(Detection(class_index, score, (x1, y1, x2, y2), mask))
        else:
            probability = self._selfie(name, rgb, None)
            for person in selfie_people(probability)[:top_k]:
                score = float(probability[person.mask > 0].mean())
                box = tuple(int(v) for v in person.box)
                found.append(Detection(0, score, box, probability * person.mask))
        return name, found

    def _selfie(self, name: str, rgb: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
        return segment_person(self._models.load_model(name, rgb.device), rgb, size)

    def _yolact_weights(self, config: PipelineConfig) -> Path | None:
        """The YOLACT checkpoint for these settings, looked up once per settings change rather
        than by listing models/yolact/ on every frame."""
        if config.segmenter not in ("auto", "yolact"):
            return None
        lookup = self._yolact_lookup
        if lookup is None or lookup.setting != config.yolact_weights:
            path = self._models.yolact_path(config.yolact_weights)
            lookup = self._yolact_lookup = _YolactLookup(config.yolact_weights, path)
        return lookup.path

    def _carried_instances(
        self, rgb: torch.Tensor, size: tuple[int, int], weights: Path, config: PipelineConfig
    ) -> list[Instance]:
        """YOLACT instances, refreshed every `instance_every` frames and carried in between."""
        self._frames_since_detection += 1
        carried = self._carried
        if (
            carried is None
            or carried.size != size
            or self._frames_since_detection >= config.instance_every
        ):
            detections = self._models.load_yolact(weights, rgb.device).detect(
                rgb, config.score_threshold
            )
            instances = detected_instances(detections, size, COCO_CLASSES)
            self._carried = carried = _CarriedInstances(size, tuple(instances))
            self._frames_since_detection = 0
        return list(carried.instances)

    @staticmethod
    def _refine(
        probability: torch.Tensor, small: torch.Tensor, rgb: torch.Tensor, config: PipelineConfig
    ) -> torch.Tensor:
        scale = small.shape[-2] / rgb.shape[0]
        return refine_mask(
            probability,
            small,
            config.mask_threshold,
            config.mask_feather * scale,
            config.edge_refine,
        )


def _require(weights: Path | None) -> Path:
    if weights is None:
        raise ModelMissingError(
            "no YOLACT weights in models/yolact; run `partialstyle models fetch "
            "yolact-resnet50` or choose the selfie segmenter"
        )
    return weights
