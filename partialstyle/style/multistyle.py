"""The 26-style transformer network (Dumoulin et al. 2017) with spatially varying style.

One network holds 26 styles: every instance norm layer has a table of 26 gamma/beta rows,
and a style is a weight vector that mixes those rows (conditional instance norm, CIN).
``SpatialCIN`` goes one step further: given soft region masks, each pixel gets its own mix,
so a person and the background can be painted in different styles in a single pass.

Layout (mirrors the source ONNX graph; every conv has reflect padding and no bias):
contract 3->32 9x9, 32->32 3x3/2, 32->32 3x3/2; six residual blocks of two 3x3 convs;
expand nearest x2 + 32->8 3x3, nearest x2 + 8->4 3x3, 4->3 9x9; sigmoid.
Every conv is followed by a CIN; a ReLU follows all but the second CIN of each residual
block and the last one.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from partialstyle.errors import ModelMissingError
from partialstyle.style import fused_norm

NUM_STYLES = 26
# The network downsamples twice by 2, so inputs are padded to a multiple of 4. The deepest
# level then needs at least 2 rows/columns for its 1-pixel reflect pad, hence 8 at full size.
_MULTIPLE = 4
_MIN_SIDE = 8


class SpatialCIN(nn.Module):
    """Conditional instance norm whose affine can vary per pixel.

    Without region masks this is the source network's instance norm with one mixed
    gamma/beta row. With masks, each region is normalised with its own mask-weighted mean
    and variance per channel (``region_statistics``) and then gets its own gamma/beta, so a
    region's look does not depend on what the other regions contain or how they are
    styled. Every pixel's scale and shift are the mask-weighted blend of the regions'.
    """

    def __init__(self, channels: int, num_styles: int = NUM_STYLES, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(num_styles, channels))
        self.beta = nn.Parameter(torch.zeros(num_styles, channels))

    def forward(
        self,
        x: Tensor,
        style_weights: Tensor,
        region_masks: Tensor | None = None,
        *,
        relu: bool = False,
        residual: Tensor | None = None,
        out_pad: int = 0,
        pad_mode: str = "reflect",
        support: RegionSupport | None = None,
        other_masks: Tensor | None = None,
    ) -> Tensor:
        """Normalise ``x`` [N,C,H,W] and apply the style affine.

        ``style_weights`` is [R, num_styles]; ``region_masks`` is [N,R,h,w] (area-averaged
        here if not already at ``x``'s resolution) or None, when R must be 1. The masks
        must sum to 1 at every pixel. ``support`` (at ``x``'s resolution) lets inference
        skip pixels where a region's mask is 0.
        ``other_masks`` are the masks of every region but ``support.base`` in fp32,
        contiguous, for the fused kernel; with them ``region_masks`` may be None.
        The keywords fuse what the network does next, saving full passes over memory:
        ``relu`` or adding ``residual``, then padding by ``out_pad`` for the next conv.
        """
        kernels = fused_norm.kernels() if fused_norm.applies(x) else None
        if torch.is_grad_enabled() and (self.gamma.requires_grad or x.requires_grad):
            # Autograd path: plain ops, easy to differentiate.
            y = self._reference(x, style_weights, region_masks)
        elif kernels is not None:
            base = None if support is None else support.base
            if other_masks is None and region_masks is not None:
                masks = _resize_masks(region_masks.float(), x.shape[-2:])
                if base is None:
                    base = int(masks.sum(dim=(0, 2, 3)).argmax())
                other_masks = masks[:, [r for r in range(masks.shape[1]) if r != base]]
                other_masks = other_masks.contiguous()
            others = [None] * x.shape[0] if other_masks is None else other_masks.split(1)
            skips = [None] * x.shape[0] if residual is None else residual.split(1)
            outputs = [
                self._fused(kernels, xi, style_weights, oi, base, relu, ri, out_pad, pad_mode)
                for xi, oi, ri in zip(x.split(1), others, skips, strict=True)
            ]
            return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        elif x.shape[0] > 1:
            # batch_norm pools statistics over the batch, so images go one at a time.
            masks = [None] * x.shape[0] if region_masks is None else region_masks.split(1)
            y = torch.cat(
                [
                    self._normalize_one(xi, style_weights, mi, support)
                    for xi, mi in zip(x.split(1), masks, strict=True)
                ]
            )
        else:
            y = self._normalize_one(x, style_weights, region_masks, support)
        inplace = not torch.is_grad_enabled()
        if relu:
            y = y.relu_() if inplace else torch.relu(y)
        if residual is not None:
            y = y.add_(residual) if inplace else y + residual
        return F.pad(y, [out_pad] * 4, mode=pad_mode) if out_pad else y

    def _affine_rows(self, x: Tensor, style_weights: Tensor, region_masks: Tensor | None) -> Tensor:
        """The mixed [gamma | beta] row of every region, [R, 2C] in fp32."""
        if region_masks is None and style_weights.shape[0] != 1:
            raise ValueError(
                f"{style_weights.shape[0]} style mixes were given without region masks; "
                "pass region_masks or a single style mix"
            )
        weights = style_weights.float()
        return torch.cat([weights @ self.gamma.float(), weights @ self.beta.float()], dim=1)

    def _reference(self, x: Tensor, style_weights: Tensor, region_masks: Tensor | None) -> Tensor:
        """Plain differentiable ops, one formula for any batch: the definition of this layer."""
        rows = self._affine_rows(x, style_weights, region_masks)
        if region_masks is None:
            return _apply_affine(F.instance_norm(x, eps=self.eps), rows, None)
        masks = _masks_at(region_masks, x)
        mean, var = region_statistics(x, masks)  # [N,R,C] each
        channels = x.shape[1]
        scale = rows[:, :channels] * torch.rsqrt(var + self.eps)
        shift = rows[:, channels:] - mean * scale
        return _apply_affine(x, torch.cat([scale, shift], dim=2), masks)

    def _fused(
        self,
        kernels,
        x: Tensor,
        style_weights: Tensor,
        other_masks: Tensor | None,
        base: int | None,
        relu: bool,
        residual: Tensor | None,
        out_pad: int,
        pad_mode: str,
    ) -> Tensor:
        """``_reference`` plus ReLU, residual and padding: see ``fused_region_norm``."""
        rows = self._affine_rows(x, style_weights, other_masks)
        channels = x.shape[1]
        return fused_region_norm(
            kernels,
            x,
            rows[:, :channels],
            rows[:, channels:],
            other_masks,
            base,
            self.eps,
            relu=relu,
            residual=residual,
            out_pad=out_pad,
            pad_mode=pad_mode,
        )

    def _normalize_one(
        self,
        x: Tensor,
        style_weights: Tensor,
        region_masks: Tensor | None,
        support: RegionSupport | None,
    ) -> Tensor:
        """Inference for one image [1,C,H,W]: as few full passes over memory as possible.

        With one image, batch norm's training-mode statistics are exactly instance norm's,
        and its CPU kernel takes them (accumulating in fp32, also for bf16 input) and
        applies the affine in one call, where separate ops would each cost a pass and,
        on a busy machine, a wait for every thread.

        With regions, this computes what ``_reference`` defines, with less memory traffic:
        one pass takes the whole image's statistics; each region other than the base (the
        largest) sums its mask-weighted moments inside the box where its mask is nonzero;
        the base region's moments are the whole image's minus the others' (the masks sum
        to 1). Masks summing to 1 also give y = Y_b + sum_r m_r * (Y_r - Y_b), where Y_r is
        the image normalised with region r's statistics and affine: Y_b is one eval-mode
        batch norm over the image, each difference two addcmuls inside region r's box.
        """
        rows = self._affine_rows(x, style_weights, region_masks)
        channels = x.shape[1]
        gamma, beta = rows[:, :channels], rows[:, channels:]
        if region_masks is None:
            return F.batch_norm(x, None, None, gamma[0], beta[0], True, 0.0, self.eps)
        height, width = x.shape[-2:]
        if support is None:
            support = RegionSupport(0, [(0, height, 0, width)] * gamma.shape[0])
        masks = _masks_at(region_masks, x)
        stats = _boxed_region_statistics(x, masks, support)
        if stats is None:  # one region covers every pixel: plain instance norm
            return F.batch_norm(
                x, None, None, gamma[support.base], beta[support.base], True, 0.0, self.eps
            )
        mean, var = stats  # [R,C] each, fp32
        scale = gamma * torch.rsqrt(var + self.eps)
        shift = beta - mean * scale
        base = support.base
        y = F.batch_norm(x, mean[base], var[base], gamma[base], beta[base], False, 0.0, self.eps)
        for r, box in enumerate(support.boxes):
            if r == base or box is None:
                continue
            top, bottom, left, right = box
            # Y_r - Y_b = x * scale + shift: an addcmul on a strided box view is about four
            # times faster than an eval-mode batch norm on it.
            delta_scale = (scale[r] - scale[base]).to(x.dtype)[:, None, None]
            delta_shift = (shift[r] - shift[base]).to(x.dtype)[:, None, None]
            part = (..., slice(top, bottom), slice(left, right))
            delta = torch.addcmul(delta_shift, x[part], delta_scale)
            y[part].addcmul_(delta, masks[:, r : r + 1][part])
        return y


# A region's statistics are pooled with this many pixels (at the layer's resolution) drawn
# from the whole image's statistics, like a prior: a region of area A weighs its own moments
# by A / (A + 64). Large regions (the background, a person: thousands of pixels at the
# residual blocks' 1/4 resolution) keep their own statistics to within a few percent; a
# sliver of a few pixels, whose variance would be noise, falls back smoothly to the whole
# image's. 64 pixels (an 8x8 patch at that resolution) is a judgement, not a tuned value:
# small against real regions, large against specks at a mask's soft edge.
STATISTICS_PRIOR_PIXELS = 64.0


def region_statistics(
    x: Tensor, masks: Tensor, prior_pixels: float = STATISTICS_PRIOR_PIXELS
) -> tuple[Tensor, Tensor]:
    """Mask-weighted mean and (biased) variance per region and channel, [N,R,C] each, fp32.

    ``x`` is [N,C,H,W], ``masks`` [N,R,H,W] (soft weights; a pixel counts m times). Each
    region's moments are pooled with ``prior_pixels`` pixels' worth of the whole image's
    (see STATISTICS_PRIOR_PIXELS), so tiny or empty regions get the image's statistics.
    Plain ops, differentiable: the reference for the fast paths.
    """
    x, masks = x.float(), masks.float()
    var_all, mean_all = torch.var_mean(x, dim=(2, 3), unbiased=False)  # [N,C]
    centred = x - mean_all[..., None, None]
    area = masks.sum(dim=(2, 3))[..., None]  # [N,R,1]
    first = torch.einsum("nrhw,nchw->nrc", masks, centred)
    second = torch.einsum("nrhw,nchw->nrc", masks, centred * centred)
    return pooled_statistics(area, first, second, mean_all[:, None], var_all[:, None], prior_pixels)


def pooled_statistics(
    area: Tensor,
    first: Tensor,
    second: Tensor,
    mean_all: Tensor,
    var_all: Tensor,
    prior_pixels: float = STATISTICS_PRIOR_PIXELS,
) -> tuple[Tensor, Tensor]:
    """A region's mean and variance from its area and its first and second moments about
    the whole image's mean, pooled with ``prior_pixels`` pixels of the whole image's
    distribution (mean ``mean_all``, variance ``var_all``). Shapes broadcast."""
    weight = area + prior_pixels
    offset = first / weight  # region mean minus image mean
    var = (second + prior_pixels * var_all) / weight - offset * offset
    return mean_all + offset, var.clamp_min(0.0)


def fused_region_norm(
    kernels,
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    other_masks: Tensor | None,
    base: int | None,
    eps: float,
    *,
    relu: bool = False,
    residual: Tensor | None = None,
    out_pad: int = 0,
    pad_mode: str = "reflect",
) -> Tensor:
    """Region instance norm of one image [1,C,H,W] with the fused kernels (``fused_norm``).

    ``gamma``/``beta`` are the regions' rows [R,C] (fp32); ``other_masks`` (fp32
    [1,R-1,H,W], contiguous) are the masks of every region but ``base``, in order, or None
    when R = 1 (the masks sum to 1, so the base's is implied). Then ReLU, + ``residual``,
    padding by ``out_pad``: the result of ``region_statistics`` and the blended affine, in
    one call and two passes over memory (one reads ``x`` for every statistic, the other
    writes the padded result); the statistics in between are computed in fp64.

    As in ``SpatialCIN._normalize_one``, the base region's sums are the whole image's minus
    the others', and its row is the starting point to which the others add their masked
    differences, so pixels outside every other region cost no more than without regions.
    """
    x = x if x.stride(1) == 1 else x.contiguous(memory_format=torch.channels_last)
    if residual is not None and residual.stride(1) != 1:
        residual = residual.contiguous(memory_format=torch.channels_last)
    empty = x.new_empty(0, dtype=torch.float32)
    return kernels.region_norm(
        x,
        empty if other_masks is None else other_masks,
        gamma.float().contiguous(),
        beta.float().contiguous(),
        -1 if base is None else base,
        eps,
        STATISTICS_PRIOR_PIXELS,
        x.new_empty(0) if residual is None else residual,
        relu,
        out_pad,
        pad_mode == "reflect",
    )


def _boxed_region_statistics(
    x: Tensor, masks: Tensor, support: RegionSupport
) -> tuple[Tensor, Tensor] | None:
    """``region_statistics`` for one image [1,C,H,W], reading each non-base region's box only.

    Returns [R,C] mean and variance, or None when no region but the base has pixels.
    """
    if all(box is None for r, box in enumerate(support.boxes) if r != support.base):
        return None
    channels = x.shape[1]
    pixels = float(x.shape[-2] * x.shape[-1])
    # batch_norm_update_stats accumulates in fp32 and returns the biased variance.
    mean_all, var_all = torch.batch_norm_update_stats(
        x,
        x.new_zeros(channels, dtype=torch.float32),
        x.new_ones(channels, dtype=torch.float32),
        1.0,
    )
    mean_all, var_all = mean_all.float(), var_all.float()
    regions = len(support.boxes)
    area = x.new_zeros(regions, 1, dtype=torch.float32)
    first = x.new_zeros(regions, channels, dtype=torch.float32)
    second = x.new_zeros(regions, channels, dtype=torch.float32)
    for r, box in enumerate(support.boxes):
        if r == support.base or box is None:
            continue
        top, bottom, left, right = box
        part = (..., slice(top, bottom), slice(left, right))
        sum_x, sum_xx = _weighted_moments(x[part], masks[:, r : r + 1][part])
        area[r] = masks[:, r : r + 1][part].sum(dtype=torch.float32)
        # moments about the image mean: sum m (x - mu) and sum m (x - mu)^2
        first[r] = sum_x - area[r] * mean_all
        second[r] = sum_xx - 2.0 * mean_all * sum_x + area[r] * mean_all * mean_all
    base = support.base
    area[base] = pixels - area.sum()
    first[base] = -first.sum(dim=0)
    second[base] = pixels * var_all - second.sum(dim=0)
    return pooled_statistics(area, first, second, mean_all, var_all)


def _weighted_moments(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """sum(w * x) and sum(w * x^2) per channel over one image's [1,C,h,w] box, in fp32.

    As one matrix product per image row ([1,w] x [w,C] on channels-last views, no copy of
    ``x``): oneDNN accumulates bf16 in fp32 and only each row's sum is rounded, where an
    elementwise product and a sum would cast the box to fp32 first (twice the time).
    """
    rows = x[0].permute(1, 2, 0)  # [h,w,C]
    row_weights = weight[0, 0][:, None, :]  # [h,1,w]
    sum_x = torch.bmm(row_weights, rows).sum(dim=(0, 1), dtype=torch.float32)
    sum_xx = torch.bmm(row_weights, rows * rows).sum(dim=(0, 1), dtype=torch.float32)
    return sum_x, sum_xx


class RegionSupport(NamedTuple):
    """Where each region's mask is nonzero: a base region and per-region boxes.

    ``boxes[r]`` is (top, bottom, left, right), end-exclusive, or None for an empty mask.
    """

    base: int
    boxes: list[tuple[int, int, int, int] | None]

    @classmethod
    def of(cls, masks: Tensor, block: int = 1) -> RegionSupport:
        """Boxes of nonzero mask pixels over the batch; the base is the largest region.

        ``masks`` may be area-averaged by ``block``: a block is nonzero if any of its
        pixels is, so the boxes, scaled back up, still cover every nonzero pixel, and
        finding them costs 1/block^2 of the full-size search.
        """
        nonzero = masks.amax(dim=0) > 0  # [R, h, w]
        rows, cols = nonzero.any(dim=2), nonzero.any(dim=1)
        boxes = []
        for row, col in zip(rows, cols, strict=True):
            row, col = row.nonzero(), col.nonzero()
            if row.numel() == 0:
                boxes.append(None)
                continue
            box = (int(row[0]), int(row[-1]) + 1, int(col[0]), int(col[-1]) + 1)
            boxes.append(tuple(block * edge for edge in box))
        base = int(masks.sum(dim=(0, 2, 3)).argmax())
        return cls(base, boxes)

    def scaled(self, factor: int) -> RegionSupport:
        """The support after area-averaging by ``factor``: boxes grow to whole blocks."""
        boxes = [
            None
            if box is None
            else (box[0] // factor, -(-box[1] // factor), box[2] // factor, -(-box[3] // factor))
            for box in self.boxes
        ]
        return RegionSupport(self.base, boxes)


def _masks_at(region_masks: Tensor | None, x: Tensor) -> Tensor | None:
    """Region masks at ``x``'s resolution and dtype (None stays None)."""
    if region_masks is None:
        return None
    return _resize_masks(region_masks, x.shape[-2:]).to(x.dtype)


def _apply_affine(x: Tensor, rows: Tensor, masks: Tensor | None) -> Tensor:
    """x * scale + shift for ``x`` [N,C,H,W] and ``rows`` = [scale | shift].

    Without masks ``rows`` is [1, 2C]. With masks [N,R,H,W], ``rows`` is [N,R,2C] and every
    pixel's scale and shift are the mask-weighted blend of its image's region rows.
    """
    channels = x.shape[1]
    rows = rows.to(x.dtype)
    if masks is None:
        return torch.addcmul(rows[0, channels:, None, None], x, rows[0, :channels, None, None])
    maps = torch.einsum("nrhw,nrc->nchw", masks, rows)
    return torch.addcmul(maps[:, channels:], x, maps[:, :channels])


def _resize_masks(masks: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    """Area-average masks down to ``size`` (exact block means when the sizes divide)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.adaptive_avg_pool2d(masks, size)


class ConvCIN(nn.Module):
    """Convolution (no bias) on an already padded input, then SpatialCIN.

    The padding is done by the previous layer's norm (see SpatialCIN ``out_pad``), so
    ``pad`` here only tells that layer how much to add. With ``upsample`` the source
    network enlarges the input x2 by nearest neighbour and reflect-pads it; this layer
    computes the same thing at the input's resolution from a replicate-padded input
    (see ``subpixel_weight``), so it wants ``pad_mode`` "replicate" from the layer before.
    With ``space_to_depth`` s > 1 the conv runs on s x s pixel blocks (``blocked_weight``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        upsample: bool = False,
        relu: bool = True,
        space_to_depth: int = 1,
    ) -> None:
        super().__init__()
        self.pad = kernel_size // 2
        self.pad_mode = "replicate" if upsample else "reflect"
        self.upsample = upsample
        self.space_to_depth = space_to_depth
        self.relu = relu
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=False)
        self.norm = SpatialCIN(out_channels)
        # oneDNN's own copy of the weight for the last input shape (see _convolve); it is
        # dropped when weights are loaded in place or the precision changes.
        self._packed: tuple[tuple, Tensor] | None = None
        self.register_load_state_dict_post_hook(lambda module, _: module.forget_packed())

    def forget_packed(self) -> None:
        """Drop the packed weight, so the next call packs the current one."""
        self._packed = None

    def forward(
        self,
        x: Tensor,
        style_weights: Tensor,
        masks: MaskPyramid | None,
        out_pad: int = 0,
        residual: Tensor | None = None,
        pad_mode: str = "reflect",
    ) -> Tensor:
        """``x`` comes padded by ``self.pad`` (``self.pad_mode``); the result by ``out_pad``."""
        block = self.space_to_depth
        y = self._convolve(x if block == 1 else F.pixel_unshuffle(x, block))
        if self.upsample or block > 1:
            y = F.pixel_shuffle(y, 2 if self.upsample else block)
        mask = support = others = None
        if masks is not None:
            support = masks.support.scaled(masks.width // y.shape[-1])
            others = masks.others[y.shape[-1]]
            if not (fused_norm.applies(y) and fused_norm.kernels() is not None):
                mask = masks.at(y.shape[-1])  # the plain-op path wants every region's
        return self.norm(
            y,
            style_weights,
            mask,
            relu=self.relu,
            residual=residual,
            out_pad=out_pad,
            pad_mode=pad_mode,
            support=support,
            other_masks=others,
        )

    def _convolve(self, x: Tensor) -> Tensor:
        """The conv (the sub-pixel one with ``upsample``), with a prepacked weight on CPU.

        F.conv2d makes oneDNN reorder the weight into its blocked layout on every call: a
        tiny job, but one more parallel region per conv, and on a busy machine each one
        waits for every thread to be scheduled (18 reorders cost ~65 ms per frame with
        2 threads in one measurement). The packed weight is kept for the last input shape
        and weight storage, so a video's frames pack once. (Weights may be inference tensors,
        which have no version counter: in-place edits other than load_state_dict must call
        ``forget_packed``.)
        """
        stride = list(self.conv.stride)
        weight = self.conv.weight
        if not prepackable(x):
            return F.conv2d(x, self._dense_weight().to(x.dtype), stride=stride)
        key = (tuple(x.shape), x.dtype, weight.data_ptr())
        packed = self._packed
        if packed is None or packed[0] != key:
            dense = self._dense_weight()
            blocked = torch._C._nn.mkldnn_reorder_conv2d_weight(
                dense.to(x.dtype).contiguous().to_mkldnn(), [0, 0], stride, [1, 1], 1, list(x.shape)
            )
            packed = self._packed = (key, blocked)
        return torch.ops.mkldnn._convolution_pointwise(
            x, packed[1], None, [0, 0], stride, [1, 1], 1, "none", [], ""
        )

    def _dense_weight(self) -> Tensor:
        """The weight of the conv as run: sub-pixel, blocked or as it is."""
        if self.upsample:
            return subpixel_weight(self.conv.weight)
        if self.space_to_depth > 1:
            return blocked_weight(self.conv.weight, self.space_to_depth)
        return self.conv.weight


def blocked_weight(weight: Tensor, block: int) -> Tensor:
    """The kernel of a stride-1 conv rewritten for s x s pixel blocks (s = ``block``).

    conv(x, w) == pixel_shuffle(conv(pixel_unshuffle(x, s), blocked_weight(w, s)), s) for
    an input whose sides are multiples of s. Output phase (a, b) of a block takes input
    phase (p, q) of block offset (i, j) through tap (s*i + p - a, s*j + q - b) when that
    lies in the kernel. A k x k kernel becomes (k+s-2)//s + 1 square; for the last 4->3 9x9
    conv at s = 2 that is 16->12 channels and 5x5: 1.2x the FLOPs in a shape oneDNN runs
    about 3x faster than 4 input and 3 output channels.
    """
    k = weight.shape[-1]
    size = (k + block - 2) // block + 1
    # taps[a, p, i, d]: output phase a, input phase p and block offset i meet kernel tap d.
    taps = weight.new_zeros(block, block, size, k, dtype=torch.float32)
    for a in range(block):
        for p in range(block):
            for i in range(size):
                if 0 <= block * i + p - a < k:
                    taps[a, p, i, block * i + p - a] = 1.0
    blocks = torch.einsum("apid,bqje,ocde->oabcpqij", taps, taps, weight.float())
    out_channels, in_channels = weight.shape[:2]
    shape = (out_channels * block * block, in_channels * block * block, size, size)
    return blocks.reshape(shape).to(weight.dtype)


# Internal oneDNN ops (the ones torch.compile's CPU freezing uses); F.conv2d stands in
# should a torch build lack them.
_HAS_PACKED_CONV = hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight") and hasattr(
    torch.ops.mkldnn, "_convolution_pointwise"
)


def prepackable(x: Tensor) -> bool:
    """Whether the oneDNN prepacked conv applies: CPU inference in fp32 or bf16."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
        and _HAS_PACKED_CONV
        and not (torch.is_grad_enabled() and x.requires_grad)
    )


def subpixel_weight(weight: Tensor) -> Tensor:
    """3x3 kernel for "nearest x2 upsample, reflect pad 1, 3x3 conv" run at low resolution.

    Reflect-padding the upsampled image by 1 repeats its outer pixels, which are copies of
    the low-res border: it equals replicate-padding the low-res image by 1, then upsampling.
    Each output phase (row parity p, column parity q) then sees only a 2x2 low-res
    neighbourhood, with the 3x3 taps that land on the same low-res pixel summed. The four
    phase kernels, zero-extended to 3x3 and stacked as output channels in pixel_shuffle's
    order, make one conv on the replicate-padded low-res input; pixel_shuffle(., 2)
    interleaves the phases. Same FLOPs as the source's conv, but no upsampled
    intermediate and 4x wider, 4x smaller outputs, which oneDNN runs much faster.
    """
    out_channels, in_channels = weight.shape[:2]
    # taps[p][a, i]: kernel row i lands on padded low-res row a for output row phase p.
    taps = weight.new_tensor(
        [[[1, 0, 0], [0, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 0], [0, 0, 1]]],
        dtype=torch.float32,
    )
    phases = torch.einsum("pai,ocij,qbj->opqcab", taps, weight.float(), taps)
    return phases.reshape(4 * out_channels, in_channels, 3, 3).to(weight.dtype)


class ResidualBlock(nn.Module):
    """x + CIN(conv(ReLU(CIN(conv(x))))): the second norm has no ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first = ConvCIN(channels, channels, 3)
        self.second = ConvCIN(channels, channels, 3, relu=False)
        self.pad = self.first.pad
        self.pad_mode = self.first.pad_mode

    def forward(
        self,
        x: Tensor,
        style_weights: Tensor,
        masks: MaskPyramid | None,
        out_pad: int,
        pad_mode: str = "reflect",
    ) -> Tensor:
        """``x`` comes padded by 1 (for the first conv); the result is padded by ``out_pad``."""
        inner = x[..., 1:-1, 1:-1]
        hidden = self.first(x, style_weights, masks, out_pad=self.second.pad)
        return self.second(
            hidden, style_weights, masks, out_pad=out_pad, residual=inner, pad_mode=pad_mode
        )


PRECISIONS = ("auto", "fp32", "bf16")


class MultiStyleNet(nn.Module):
    """The 26-style transformer: image in [0,1] -> stylized image in [0,1], any size.

    Inference runs in ``compute_dtype`` (fp32 or bf16, see ``optimize_for_inference``):
    the image is cast once on the way in, activations stay in that dtype and the
    channels-last layout from conv to conv, and the result is cast back to the image's
    dtype. One instance holds no per-call state, so threads may share it.
    """

    def __init__(self, num_residual_blocks: int = 6) -> None:
        super().__init__()
        self.compute_dtype = torch.float32
        self.contract = nn.ModuleList(
            [ConvCIN(3, 32, 9), ConvCIN(32, 32, 3, stride=2), ConvCIN(32, 32, 3, stride=2)]
        )
        self.res = nn.ModuleList(ResidualBlock(32) for _ in range(num_residual_blocks))
        self.expand = nn.ModuleList(
            [
                ConvCIN(32, 8, 3, upsample=True),
                ConvCIN(8, 4, 3, upsample=True),
                ConvCIN(4, 3, 9, relu=False, space_to_depth=2),
            ]
        )

    @classmethod
    def load(
        cls, path: Path, device: torch.device | str = "cpu", precision: str = "auto"
    ) -> MultiStyleNet:
        """Load converted weights (strict), ready for inference in ``precision``.

        A missing or unreadable file is a ModelMissingError. See ``optimize_for_inference``
        for the precisions; "auto" is bf16 on CPUs with native bf16 and fp32 elsewhere.
        """
        from safetensors.torch import load_file

        path = Path(path)
        hint = "run `partialstyle models prepare` to create it"
        if not path.is_file():
            raise ModelMissingError(f"style model {path} is missing; {hint}")
        try:
            state = load_file(str(path), device=str(device))
        except Exception as exc:  # safetensors raises several types for damaged files
            raise ModelMissingError(f"style model {path} is unreadable ({exc}); {hint}") from None
        net = cls()
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError:
            raise ModelMissingError(
                f"style model {path} does not hold the 26-style network's weights; {hint}"
            ) from None
        return net.to(device).optimize_for_inference(precision)

    def optimize_for_inference(self, precision: str = "auto") -> MultiStyleNet:
        """Pick the compute precision and the fast layout for inference; returns self.

        "fp32" is exact (matches onnxruntime to 1e-4). "bf16" keeps activations and conv
        weights in bfloat16 (norm statistics and affine tables stay fp32): about twice as
        fast on CPUs with AVX-512 BF16 or AMX, at about 0.002 mean absolute error per
        pixel. "auto" is bf16 on such CPUs and fp32 on any other device.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        device = next(self.parameters()).device
        if precision == "auto":
            precision = "bf16" if native_bf16(device) else "fp32"
        self.compute_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        for layer in self.modules():
            if isinstance(layer, ConvCIN):
                # Conv weights are cast once here; norm tables stay fp32 for the statistics.
                layer.conv.to(self.compute_dtype)
                layer.forget_packed()
        # channels_last is oneDNN's fast layout on CPU and changes no result.
        return self.to(memory_format=torch.channels_last).eval().requires_grad_(False)

    def forward(
        self,
        image: Tensor,
        style_weights: Tensor,
        region_masks: Tensor | None = None,
        share_repeated_styles: bool = True,
    ) -> Tensor:
        """Stylize ``image`` [N,3,H,W] in [0,1].

        ``style_weights`` [R,26] holds one style mix per region (rows are used as given, so
        normalise them to sum 1). ``region_masks`` [N,R,H,W] are soft masks summing to 1 per
        pixel; without them R must be 1 and the whole image gets the one mix. Each region is
        normalised with its own statistics (see SpatialCIN). Regions given the same mix are
        one region, so one style everywhere is a plain forward, unless
        ``share_repeated_styles`` is False (for a region that shares the frame with pixels
        this network does not paint, see ``stylize``).
        """
        _check_inputs(image, style_weights, region_masks)
        if region_masks is not None and share_repeated_styles:
            style_weights, region_masks = merge_repeated_styles(style_weights, region_masks)
            if style_weights.shape[0] == 1:
                region_masks = None
        dtype = self.compute_dtype
        masks = None
        if region_masks is not None:
            masks = MaskPyramid.build(_pad_to_multiple(region_masks.float()), dtype)
        height, width = image.shape[-2:]
        x = F.pad(_pad_to_multiple(image), [self.contract[0].pad] * 4, mode="reflect")
        x = x.to(dtype, memory_format=torch.channels_last)
        layers = [*self.contract, *self.res, *self.expand]
        # Each layer pads its output the way the next layer wants it.
        for layer, nxt in zip(layers, [*layers[1:], None], strict=True):
            out_pad, pad_mode = (0, "reflect") if nxt is None else (nxt.pad, nxt.pad_mode)
            x = layer(x, style_weights, masks, out_pad=out_pad, pad_mode=pad_mode)
        return x[..., :height, :width].to(image.dtype).sigmoid_()


def merge_repeated_styles(styles: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """One region per distinct style row ([R,K] styles), its mask the sum of theirs.

    Pixels painted in the same style then share normalisation statistics, as in a plain
    forward. Rows keep the order of their first appearance.
    """
    kept: list[int] = []
    owner: list[int] = []
    for r in range(styles.shape[0]):
        match = next(
            (k for k, first in enumerate(kept) if torch.equal(styles[first], styles[r])), None
        )
        if match is None:
            kept.append(r)
            match = len(kept) - 1
        owner.append(match)
    if len(kept) == styles.shape[0]:
        return styles, masks
    index = torch.tensor(owner, device=masks.device)
    merged = masks.new_zeros(masks.shape[0], len(kept), *masks.shape[2:])
    return styles[kept], merged.index_add_(1, index, masks)


def native_bf16(device: torch.device) -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX-512 BF16 or AMX)."""
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _check_inputs(image: Tensor, style_weights: Tensor, region_masks: Tensor | None) -> None:
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be [N,3,H,W], got {list(image.shape)}")
    if style_weights.dim() != 2 or style_weights.shape[1] != NUM_STYLES:
        raise ValueError(f"style_weights must be [R,{NUM_STYLES}], got {list(style_weights.shape)}")
    if region_masks is None:
        if style_weights.shape[0] != 1:
            raise ValueError(
                f"{style_weights.shape[0]} style mixes need region_masks; pass masks or one mix"
            )
        return
    expected = [image.shape[0], style_weights.shape[0], *image.shape[-2:]]
    if list(region_masks.shape) != expected:
        raise ValueError(
            f"region_masks must be {expected} (N,R,H,W), got {list(region_masks.shape)}"
        )


def _pad_to_multiple(x: Tensor) -> Tensor:
    """Pad bottom/right to a multiple of 4 (and at least 8) as the source package does.

    Reflect padding needs pad < size; images too small for that (4 px or fewer on a side)
    are padded by edge replication instead, which is the closest stand-in.
    """
    height, width = x.shape[-2:]
    pad_h = max(_MIN_SIDE, -(-height // _MULTIPLE) * _MULTIPLE) - height
    pad_w = max(_MIN_SIDE, -(-width // _MULTIPLE) * _MULTIPLE) - width
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, [0, pad_w, 0, pad_h], mode=mode)


class MaskPyramid(NamedTuple):
    """Region masks at full, 1/2 and 1/4 resolution, keyed by width, and their support.

    ``others`` holds the masks of every region but the base (the largest) in fp32,
    contiguous: what the fused kernel reads; the base's mask is 1 minus their sum. The
    plain-op path asks ``at`` for all of them in the compute dtype, made on first ask.
    """

    others: dict[int, Tensor]
    support: RegionSupport
    width: int
    dtype: torch.dtype
    every: dict[int, Tensor]

    @classmethod
    def build(cls, masks: Tensor, dtype: torch.dtype) -> MaskPyramid:
        """Averaged in fp32 (the sizes are exact halves), only the non-base masks; by the
        fused kernel in one pass where it applies (one image on the CPU)."""
        kernels = fused_norm.kernels() if fused_norm.applies(masks) else None
        if kernels is not None and masks.shape[0] == 1:
            chosen, full, half, quarter = kernels.mask_pyramid(masks.contiguous())
            base = int(chosen)
        else:
            base = int(masks.sum(dim=(0, 2, 3)).argmax())
            full = masks[:, [r for r in range(masks.shape[1]) if r != base]].contiguous()
            half = F.avg_pool2d(full, 2)
            quarter = F.avg_pool2d(half, 2)
        others = {m.shape[-1]: m for m in (full, half, quarter)}
        support = RegionSupport.of(_with_base(quarter, base), block=4)._replace(base=base)
        return cls(others, support, masks.shape[-1], dtype, {})

    def at(self, width: int) -> Tensor:
        """Every region's mask at the level ``width`` pixels wide, in the compute dtype."""
        if width not in self.every:
            self.every[width] = _with_base(self.others[width], self.support.base).to(self.dtype)
        return self.every[width]


def _with_base(others: Tensor, base: int) -> Tensor:
    """All R masks from the R-1 non-base ones: the base's is what they leave of 1."""
    rest = (1.0 - others.sum(dim=1, keepdim=True)).clamp_min(0.0)
    return torch.cat([others[:, :base], rest, others[:, base:]], dim=1)
