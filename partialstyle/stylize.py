"""Run the style networks: each network once per frame for all the regions that use it.

A region's current look is a `Look`: which network, and how it is conditioned. Looks of one
conditioned network (multistyle weights, arbitrary style vectors) for different regions share
one forward pass through spatially varying normalisation. Johnson networks have one style
each, so every distinct network runs once, on the crop its regions cover.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import torch

from partialstyle.errors import PartialStyleError
from partialstyle.weights.model_cache import load_johnson, load_model

# A Johnson region whose bounding box covers less than this share of the frame runs on a crop.
_CROP_BELOW = 0.6
_CROP_MARGIN = 16
# Mask values above this count as covered when finding a region's bounding box.
_COVERED = 0.01


@dataclass(eq=False)
class Look:
    """What a region looks like now.

    kind "none": the frame itself; "multistyle": `conditioning` holds the 26 mixing weights;
    "arbitrary": `conditioning` holds the 100-number style vector; "johnson": `source` names
    the network.
    """

    kind: str
    conditioning: torch.Tensor | None = None
    source: str = ""


def stylize(
    image: torch.Tensor,
    looks: dict[Hashable, Look],
    masks: dict[Hashable, torch.Tensor] | None,
    half: bool = False,
) -> dict[Hashable, torch.Tensor]:
    """Every look's stylized image ([3,h,w] each) for the frame `image` ([3,h,w] in [0,1]).

    `masks` (same keys, [h,w] each) say where each look will be shown; looks of one network
    whose masks are given share a single pass. Without masks every look covers the frame.
    """
    outputs: dict[Hashable, torch.Tensor] = {}
    for kind in ("multistyle", "arbitrary"):
        keys = [key for key, look in looks.items() if look.kind == kind]
        for group in _disjoint_groups(keys, masks):
            outputs.update(_conditioned_pass(kind, image, looks, group, masks, half))
    johnson_sources: dict[str, list[Hashable]] = {}
    for key, look in looks.items():
        if look.kind == "johnson":
            johnson_sources.setdefault(look.source, []).append(key)
        elif look.kind == "none":
            outputs[key] = image
    for source, keys in johnson_sources.items():
        styled = _johnson_pass(image, source, [masks[k] for k in keys] if masks else None, half)
        outputs.update(dict.fromkeys(keys, styled))
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


def _conditioned_pass(
    kind: str,
    image: torch.Tensor,
    looks: dict[Hashable, Look],
    keys: list[Hashable],
    masks: dict[Hashable, torch.Tensor] | None,
    half: bool,
) -> dict[Hashable, torch.Tensor]:
    device = image.device
    conditioning = torch.stack([looks[key].conditioning for key in keys]).to(device)
    batch = image[None].half() if half else image[None]
    region_masks, share = None, True
    if len(keys) > 1:
        stacked = torch.stack([masks[key] for key in keys])
        total = stacked.sum(0, keepdim=True)
        # Where none of these regions shows, any style will do; share the pixel equally.
        stacked = torch.where(total > 1e-6, stacked / total.clamp(min=1e-6), 1.0 / len(keys))
        region_masks = stacked[None].to(batch.dtype)
    elif masks and bool((masks[keys[0]] < 1.0 - 1e-6).any()):
        # The look shows on part of the frame only; the rest is painted by another network
        # or left as it is. Normalising the look's region with its own statistics keeps it
        # the same whatever the rest looks like (the rest gets the same style, own statistics).
        region = masks[keys[0]].clamp(0.0, 1.0)
        region_masks = torch.stack([region, 1.0 - region])[None].to(batch.dtype)
        conditioning = conditioning.repeat(2, 1)
        share = False
    if kind == "multistyle":
        network = load_model("multistyle26", device)
        output = network(batch, conditioning.to(batch.dtype), region_masks, share)[0]
    else:
        network = load_model("arbitrary", device)
        output = network.stylize(batch.float(), conditioning.float(), region_masks, share)[0]
    output = output.float()
    return dict.fromkeys(keys, output)


def _johnson_pass(
    image: torch.Tensor, source: str, masks: list[torch.Tensor] | None, half: bool
) -> torch.Tensor:
    """One Johnson network over the frame, or over the crop its regions cover."""
    network = load_johnson(source, image.device)
    height, width = image.shape[-2:]
    box = _covered_box(masks, height, width) if masks else None
    if box is None:
        return network(image[None])[0].float()
    top, bottom, left, right = box
    styled = image.clone()
    styled[:, top:bottom, left:right] = network(image[None, :, top:bottom, left:right])[0]
    return styled


def _covered_box(
    masks: list[torch.Tensor], height: int, width: int
) -> tuple[int, int, int, int] | None:
    """The bounding box (with a margin) of where the masks show, if it is worth cropping."""
    covered = torch.stack(masks).amax(0) > _COVERED
    rows = torch.nonzero(covered.any(1)).flatten()
    columns = torch.nonzero(covered.any(0)).flatten()
    if len(rows) == 0:
        return None
    top = max(0, int(rows[0]) - _CROP_MARGIN)
    bottom = min(height, int(rows[-1]) + 1 + _CROP_MARGIN)
    left = max(0, int(columns[0]) - _CROP_MARGIN)
    right = min(width, int(columns[-1]) + 1 + _CROP_MARGIN)
    if (bottom - top) * (right - left) >= _CROP_BELOW * height * width:
        return None
    return top, bottom, left, right


class StyleVectors:
    """Style vectors of pictures for the arbitrary network, computed once per picture."""

    def __init__(self, capacity: int = 16) -> None:
        self._vectors: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._capacity = capacity

    def of_picture(self, path: str, device: torch.device) -> torch.Tensor:
        from partialstyle.io import read_image

        picture = Path(path).expanduser()
        if not picture.is_file():
            raise PartialStyleError(f"style picture {picture} does not exist")
        key = (str(picture.resolve()), picture.stat().st_mtime_ns, str(device))
        if key not in self._vectors:
            pixels = torch.from_numpy(read_image(picture)[..., :3].copy())
            network = load_model("arbitrary", device)
            self._vectors[key] = network.style_vector(pixels)
            while len(self._vectors) > self._capacity:
                self._vectors.popitem(last=False)
        self._vectors.move_to_end(key)
        return self._vectors[key]

    @staticmethod
    def of_frame(image: torch.Tensor) -> torch.Tensor:
        """The frame's own style vector: strength 0 of an arbitrary style means this one."""
        network = load_model("arbitrary", image.device)
        pixels = image.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)
        return network.style_vector(pixels)
