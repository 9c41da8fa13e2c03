"""The style stage: each region's looks, every network run once per group of looks, and
the regions blended into one premultiplied layer.

A region's current look is a `Look` made by its style's kind (partialstyle.style.kinds).
Looks of a kind that shares passes (multistyle weights, arbitrary style vectors) for
different regions run in one forward pass through spatially varying normalisation; looks of
other kinds run once per network, on the crop their regions cover.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

import torch

from partialstyle import compose
from partialstyle.plan import RegionStyle, StylePlan
from partialstyle.style.kinds import KINDS, Look, Networks, StyleKind, StylePass
from partialstyle.style.spec import StyleSpec

if TYPE_CHECKING:
    from partialstyle.weights.model_cache import ModelCache

# (spec, share) pairs a region shows: one style, or two while it morphs into a new one.
Blend = list[tuple[StyleSpec, float]]


def look_weight(kind: StyleKind, region: RegionStyle, share: float) -> float:
    """How much of a look shows in its region: its morph share times the region's strength.
    A kind that puts the strength into its conditioning (arbitrary) has its pixels taken
    whole."""
    if not kind.restyles or region.strength <= 0.0:
        return 0.0
    return share * (1.0 if kind.strength_in_conditioning else region.strength)


def coverage(
    like: torch.Tensor,
    regions: dict[str, RegionStyle],
    region_masks: dict[str, torch.Tensor] | None,
    blends: dict[str, Blend],
) -> torch.Tensor:
    """How much styled content each pixel shows, [h,w] in [0,1]: the regions' masks times
    their looks' weights. What `StyleStage.layer` puts in its last channel, without running
    a network."""
    size = like.shape[-2:]
    total: torch.Tensor | None = None  # the first part is the sum so far: no pass over zeros
    for name, region in regions.items():
        weight = sum(look_weight(spec.style_kind, region, share) for spec, share in blends[name])
        if weight > 0.0:
            part = (
                like.new_full(size, weight) if region_masks is None else region_masks[name] * weight
            )
            total = part if total is None else total.add_(part)
    if total is None:
        return like.new_zeros(size)
    return total.clamp_(0.0, 1.0)


class StyleStage:
    """Runs the style networks on regions; `models` is the model cache handed down."""

    def __init__(self, models: ModelCache) -> None:
        self._networks = Networks(models)

    def load(self, plan: StylePlan, device: torch.device) -> None:
        """Load every network the plan's styles need."""
        for region in plan.regions().values():
            region.style.style_kind.load(region.style, self._networks, device)

    def layer(
        self,
        small: torch.Tensor,
        regions: dict[str, RegionStyle],
        region_masks: dict[str, torch.Tensor] | None,
        blends: dict[str, Blend],
        half: bool,
    ) -> torch.Tensor:
        """Every region stylized and blended into one premultiplied layer plus its coverage
        (mask × weight), [4,h,w] at the size of `small`. `region_masks` None: one look over
        the whole frame."""
        looks: dict[Hashable, Look] = {}
        weights: dict[Hashable, float] = {}
        for name, region in regions.items():
            for index, (look, share) in enumerate(self.looks(region, blends[name], small)):
                weight = look_weight(look.kind, region, share)
                if weight > 0.0:
                    looks[name, index] = look
                    weights[name, index] = weight
        masks = {key: region_masks[key[0]] for key in looks} if region_masks else None
        # A full-strength look is shown by its mask itself (no product pass).
        shown = (
            {key: masks[key] if weights[key] == 1.0 else masks[key] * weights[key] for key in looks}
            if masks
            else weights
        )
        layer = self._layer_from_one_pass(small, looks, masks, shown, regions, half)
        if layer is not None:
            return layer
        stylized = self.stylize(small, looks, masks, half)
        parts = []
        for key in looks:
            styled = stylized[key]
            if regions[key[0]].preserve_colors:
                styled = compose.preserve_colors(styled, small)
            parts.append((styled, shown[key]))
        return compose.premultiplied_layer(small, parts)

    def _layer_from_one_pass(
        self,
        small: torch.Tensor,
        looks: dict[Hashable, Look],
        masks: dict[Hashable, torch.Tensor] | None,
        shown: dict[Hashable, torch.Tensor | float],
        regions: dict[str, RegionStyle],
        half: bool,
    ) -> torch.Tensor | None:
        """The layer from the network's last pass (`StyleKind.forward_layer`) when every look
        shares one pass and shows its pixels as they are: the stylized image is then never
        written, nor read back to be premultiplied. None otherwise."""
        if not masks or any(regions[name].preserve_colors for name, _ in looks):
            return None
        kinds = {look.kind for look in looks.values()}
        keys = list(looks)
        if len(kinds) != 1 or len(_disjoint_groups(keys, masks)) != 1:
            return None
        (kind,) = kinds
        if not kind.shares_pass:
            return None
        run = StylePass(small, tuple(looks.values()), tuple(masks.values()), half)
        return kind.forward_layer(run, self._networks, [shown[key] for key in keys])

    def looks(
        self, region: RegionStyle, blend: Blend, small: torch.Tensor
    ) -> list[tuple[Look, float]]:
        """The region's looks and their shares; a morph within one kind that can mix its
        conditioning is one look."""
        looks = [
            (spec.style_kind.conditioning(spec, region.strength, small, self._networks), share)
            for spec, share in blend
        ]
        if len(looks) == 2:
            (old, old_share), (new, new_share) = looks
            if old.kind is new.kind:
                mixed = old.kind.interpolate(old, old_share, new, new_share)
                if mixed is not None:
                    return [(mixed, 1.0)]
        return looks

    def stylize(
        self,
        image: torch.Tensor,
        looks: dict[Hashable, Look],
        masks: dict[Hashable, torch.Tensor] | None,
        half: bool = False,
    ) -> dict[Hashable, torch.Tensor]:
        """Every look's stylized image ([3,h,w] each) for the frame `image` ([3,h,w] in [0,1]).

        `masks` (same keys, [h,w] each) say where each look will be shown; looks that can
        share a pass do so when their masks are given. Without masks every look covers the
        frame.
        """
        outputs: dict[Hashable, torch.Tensor] = {}
        for kind in KINDS:
            keys = [key for key, look in looks.items() if look.kind is kind]
            if kind.shares_pass:
                groups = _disjoint_groups(keys, masks)
            else:
                groups = _same_network_groups(keys, looks)
            for group in groups:
                group_masks = tuple(masks[key] for key in group) if masks else None
                run = StylePass(image, tuple(looks[key] for key in group), group_masks, half)
                outputs.update(dict.fromkeys(group, kind.forward(run, self._networks)))
        return outputs


def _disjoint_groups(
    keys: list[Hashable], masks: dict[Hashable, torch.Tensor] | None
) -> list[list[Hashable]]:
    """Split keys into passes: one spatial pass can hold each mask only once."""
    if not masks:
        return [[key] for key in keys]
    groups: list[list[Hashable]] = []
    for key in keys:
        for group in groups:
            if all(masks[other] is not masks[key] for other in group):
                group.append(key)
                break
        else:
            groups.append([key])
    return groups


def _same_network_groups(keys: list[Hashable], looks: dict[Hashable, Look]) -> list[list[Hashable]]:
    """Split keys into runs: looks with the same network file run once."""
    groups: dict[str, list[Hashable]] = {}
    for key in keys:
        groups.setdefault(looks[key].source, []).append(key)
    return list(groups.values())
