"""What the spatially conditioned kinds (multistyle, arbitrary) share: several regions'
looks in one forward pass, each normalised over its own region."""

from __future__ import annotations

import torch

from partialstyle.style import fused_norm
from partialstyle.style.kinds.base import Look, StyleKind, StylePass


def conditioned_pass(
    run: StylePass,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
    """The network's inputs for one pass of `run.looks`: the frame as a batch [1,3,h,w]
    (half precision if asked), the conditioning [N,C] on the frame's device, the region
    masks [1,N,h,w] (None: one look everywhere), and whether the regions share statistics."""
    image, looks, masks = run.image, run.looks, run.masks
    batch = image[None].half() if run.half else image[None]
    conditioning = torch.stack([look.conditioning for look in looks]).to(image.device)
    if len(looks) > 1:
        return batch, conditioning, fused_norm.normalized_regions(masks).to(batch.dtype), True
    if masks and bool((masks[0] < 1.0 - 1e-6).any()):
        # The look shows on part of the frame only; the rest is painted by another network
        # or left as it is. Normalising the look's region with its own statistics keeps it
        # the same whatever the rest looks like (the rest gets the same style, own statistics).
        region = masks[0].clamp(0.0, 1.0)
        region_masks = torch.stack([region, 1.0 - region])[None].to(batch.dtype)
        return batch, conditioning.repeat(2, 1), region_masks, False
    return batch, conditioning, None, True


def mixed(kind: StyleKind, old: Look, old_share: float, new: Look, new_share: float) -> Look:
    """A morph between two looks of one conditioned network: their conditioning mixed."""
    return Look(kind, old.conditioning * old_share + new.conditioning * new_share)
