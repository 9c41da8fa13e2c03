"""Compositing: blend stylized regions into one layer, bring it to the frame's size and
blend it onto the frame.

Images are float tensors [3,H,W] in [0,1] on any device, masks [H,W] in [0,1], except in
the uint8 path (`layer_colors`, `blend_styled`): on the CPU, with bilinear upsampling, the
full-resolution work is OpenCV's vectorised uint8 routines on the frame itself, with no
float copy of it (the frame's size costs little: 3840×2160 is a few times 1280×720, not
the 8× of its pixels in float).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from partialstyle.filters import guided_upsample
from partialstyle.frames import resize_image, to_uint8
from partialstyle.layers import luminance
from partialstyle.style import fused_norm


def preserve_colors(stylized: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Keep the original's colors and take only the stylized brightness.

    Adding the luminance difference to every channel is the YCbCr swap (Y from the
    stylized image, Cb/Cr from the original) written without the colour-space round trip.
    """
    shift = luminance(stylized) - luminance(original)
    return (original + shift).clamp_(0.0, 1.0)


def blend_onto(
    original: torch.Tensor, premultiplied: torch.Tensor, coverage: torch.Tensor
) -> torch.Tensor:
    """original·(1 − coverage) + premultiplied, where premultiplied = Σ coverage_r·styled_r.

    coverage is each pixel's total share of stylized content (region mask × strength).
    """
    return torch.addcmul(premultiplied, original, 1.0 - coverage).clamp_(0.0, 1.0)


def mask_overlay(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Debug view: tint the person mask red over a dimmed frame."""
    tint = torch.tensor([1.0, 0.15, 0.15], device=image.device, dtype=image.dtype)[:, None, None]
    dimmed = image * 0.6
    return torch.lerp(dimmed, tint * 0.5 + image * 0.5, mask[None])


# Edge-aware upsampling window (processing pixels) and regularisation, tuned on real photos
# by the quality numbers `partialstyle bench` reports.
_GUIDED_UPSAMPLE_RADIUS = 2
_GUIDED_UPSAMPLE_EPS = 1e-2


def premultiplied_layer(
    small: torch.Tensor, parts: list[tuple[torch.Tensor, torch.Tensor | float]]
) -> torch.Tensor:
    """Stylized images and their weights (a [h,w] mask times strength, or one number) as one
    premultiplied layer plus its coverage, [4,h,w].

    Blending at processing size and scaling the layer once keeps the cost at full resolution
    independent of the number of regions, and pixels no region styles keep their exact
    original values.
    """
    # Regions styled by one shared pass hold the same image: weigh it once, by their sum.
    weights = [weight for _, weight in parts]
    first = parts[0][0] if parts else None
    if (
        first is not None
        and first.dim() == 3
        and all(styled is first for styled, _ in parts)
        and all(isinstance(w, torch.Tensor) and w.shape == first.shape[1:] for w in weights)
    ):
        kernels = fused_norm.for_frames(first, *weights)
        if kernels is not None:  # the sum, the product and the coverage in one pass
            return kernels.premultiplied_layer(first, weights)
    by_image: dict[int, tuple[torch.Tensor, torch.Tensor | float]] = {}
    for styled, weight in parts:
        _, total = by_image.get(id(styled), (styled, 0.0))
        by_image[id(styled)] = (styled, total + weight)
    layer = small.new_empty((4, *small.shape[-2:]))
    if not by_image:
        return layer.zero_()
    premultiplied, coverage = layer[:3], layer[3]
    for index, (styled, weight) in enumerate(by_image.values()):
        if index == 0:  # written in place: the usual single image costs one product
            torch.mul(styled, weight, out=premultiplied)
            if isinstance(weight, torch.Tensor):
                coverage.copy_(weight)
            else:
                coverage.fill_(weight)
        else:
            premultiplied.add_(styled * weight)
            coverage.add_(weight)
    return layer


def upsample(
    layer: torch.Tensor, small: torch.Tensor, original: torch.Tensor, mode: str
) -> torch.Tensor:
    """Bring a [C,h,w] layer from processing size (`small`'s) to the frame's (`original`'s):
    bilinear, or guided by the frame's luminance so edges stay sharp."""
    if layer.shape[-2:] == original.shape[-2:]:
        return layer
    if mode == "bilinear":
        size = tuple(original.shape[-2:])
        return F.interpolate(layer[None], size=size, mode="bilinear", align_corners=False)[0]
    return guided_upsample(
        luminance(small)[None, None],
        layer[None],
        luminance(original)[None, None],
        radius=_GUIDED_UPSAMPLE_RADIUS,
        eps=_GUIDED_UPSAMPLE_EPS,
    )[0]


# Coverage above this counts as styled when a layer's colour is recovered from it.
_DEFINED = 1e-3


def layer_colors(layer: torch.Tensor, small: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A premultiplied layer [4,h,w] as uint8 colour h×w×3 and float32 coverage h×w (numpy):
    the styled colour where some region is styled, `small`'s own colour elsewhere."""
    kernels = fused_norm.for_frames(layer, small)
    if kernels is not None:
        # The same in one pass of the compiled kernel (eight of torch ops, about 3 ms a
        # 640x360 frame on one thread).
        color, coverage = kernels.layer_colors(layer, small, _DEFINED)
        return color.numpy(), coverage.numpy()
    layer = layer.float()
    coverage = layer[3]
    # One division per pixel, not per value: the colour is the layer times 1 / coverage.
    inverse = coverage.clamp(min=_DEFINED).reciprocal_()
    color = torch.where(coverage > _DEFINED, layer[:3] * inverse, small.float())
    coverage = np.ascontiguousarray(coverage.clamp(0.0, 1.0).cpu().numpy())
    return to_uint8(color).cpu().numpy(), coverage


def blend_layer(frame: np.ndarray, layer: torch.Tensor, small: torch.Tensor) -> np.ndarray:
    """A premultiplied layer [4,h,w] at processing size (`small`'s) blended onto the uint8
    frame at the frame's size: what `compose_frame` makes with bilinear upsampling, alpha kept.

    On the CPU it is one compiled pass over the frame that scales the layer up on the way, with
    no colour recovered from the layer first. Elsewhere, and where a layer to be scaled up
    covers the whole frame (then nothing is blended and OpenCV's uint8 resize of the colour
    is the whole pass), the colour and coverage of `layer_colors` go through `blend_styled`.
    """
    kernels = fused_norm.for_frames(layer)
    usable = kernels is not None and frame.flags.writeable  # torch's rule for from_numpy
    if usable and (layer.shape[-2:] == frame.shape[:2] or float(layer[3].min()) < 1.0):
        return kernels.blend_layer(torch.from_numpy(frame), layer).numpy()
    color, coverage = layer_colors(layer, small)
    return blend_styled(frame, color, coverage)


def blend_styled(frame: np.ndarray, color: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """frame·(1 − coverage) + color·coverage at the frame's size, in uint8; alpha kept.

    frame: uint8 H×W×3 or H×W×4; color: uint8 h×w×3 (processing size); coverage: float32
    h×w in [0, 1]. Where the coverage is 0 (a region styled `none`) the frame's pixels come
    out exactly as they went in. On the CPU it is one compiled pass (scaling the layer up
    on the way); the OpenCV form blends only in the box around styled pixels.
    """
    height, width = frame.shape[:2]
    kernels = fused_norm.kernels()
    usable = (
        kernels is not None
        and coverage.dtype == np.float32
        and all(array.flags.writeable for array in (frame, color, coverage))  # torch's rule
    )
    # Styled everywhere (regions that fill the frame): no blend. The kernels write an RGBA
    # frame's colour beside its alpha in the same pass (a copy and a strided write here).
    if (frame.shape[-1] == 3 or not usable) and coverage.min() >= 1.0:
        if color.shape[:2] != (height, width):
            color = cv2.resize(color, (width, height), interpolation=cv2.INTER_LINEAR)
        if frame.shape[-1] == 3:
            return color
        out = frame.copy()  # keeps the alpha channel
        out[..., :3] = color
        return out
    if usable:
        # One pass of the compiled kernels, the layer scaled up on the way where it is at
        # processing size: a quarter to a third of the OpenCV calls' time.
        blend = kernels.blend_pixels if color.shape[:2] == (height, width) else kernels.blend_scaled
        blended = blend(
            torch.from_numpy(frame), torch.from_numpy(color), torch.from_numpy(coverage)
        )
        return blended.numpy()
    # Clipped and boxed at processing size: bilinear scaling keeps values in [0, 1] and
    # zeros beyond a pixel's margin of the box, and the frame's size costs no pass here.
    coverage = np.clip(coverage, 0.0, 1.0)
    rows, columns = _styled_box(coverage)
    if rows.start >= rows.stop:
        return frame.copy()  # nothing styled: the frame as it is
    if color.shape[:2] != (height, width):
        rows = _scaled(rows, height / color.shape[0], height)
        columns = _scaled(columns, width / color.shape[1], width)
        color = cv2.resize(color, (width, height), interpolation=cv2.INTER_LINEAR)
        coverage = cv2.resize(coverage, (width, height), interpolation=cv2.INTER_LINEAR)
    weight = coverage[rows, columns]
    part = np.ascontiguousarray(frame[rows, columns, :3])
    blended = cv2.blendLinear(color[rows, columns], part, weight, 1.0 - weight)
    if blended.shape == frame.shape:
        return blended  # the whole frame was styled: no copy of it needed
    out = frame.copy()
    out[rows, columns, :3] = blended
    return out


def _scaled(span: slice, scale: float, limit: int) -> slice:
    """A span of processing-size pixels as frame pixels, one processing pixel wider on each
    side (what bilinear scaling spreads a pixel over)."""
    return slice(
        max(0, int((span.start - 1) * scale)), min(limit, int((span.stop + 1) * scale) + 1)
    )


def _styled_box(coverage: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns that hold every pixel with some coverage (only those blend)."""
    rows = np.flatnonzero(coverage.max(1) > 0.0)
    columns = np.flatnonzero(coverage.max(0) > 0.0)
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)


def compose_frame(
    frame: np.ndarray,
    original: torch.Tensor,
    small: torch.Tensor,
    layer: torch.Tensor,
    upsample_mode: str,
    person: torch.Tensor | None = None,
) -> np.ndarray:
    """The full-resolution pass: the layer scaled to the frame and blended onto it, with the
    person mask `person` (processing size) tinted over it when given. Returns `frame`'s
    shape and dtype (uint8), alpha untouched."""
    layer = upsample(layer, small, original, upsample_mode)
    result = blend_onto(original, layer[:3], layer[3].clamp_(0.0, 1.0))
    if person is not None:
        full_mask = resize_image(person[None], tuple(original.shape[-2:]))[0].clamp_(0.0, 1.0)
        result = mask_overlay(result, full_mask)
    styled = to_uint8(result).cpu().numpy()
    if frame.shape[-1] == 3:
        return styled
    out = frame.copy()  # keeps the alpha channel
    out[..., :3] = styled
    return out
