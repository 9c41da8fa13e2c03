"""``SpatialCIN`` for inference: the same layer as few passes over memory as possible.

``FastSpatialCIN`` computes what ``multistyle.SpatialCIN`` defines (tests compare the two)
and fuses what the network does next: ReLU or a residual add, then padding for the next
conv. On the CPU it calls the compiled kernel (``fused_norm``); until that is built, or
where it does not apply, it uses torch ops arranged to read each activation few times:
whole-image statistics from one batch-norm call, each region's moments inside the box where
its mask is nonzero (``RegionSupport``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from partialstyle.style import fused_norm
from partialstyle.style.multistyle import SpatialCIN, masks_at, pooled_statistics, resize_masks


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


class FastSpatialCIN(SpatialCIN):
    """``SpatialCIN`` for inference (no autograd), with the next steps fused in.

    Same parameters as ``SpatialCIN``, so either loads the other's weights.
    """

    @classmethod
    def from_reference(cls, norm: SpatialCIN) -> FastSpatialCIN:
        """A fast layer with ``norm``'s weights."""
        fast = cls(norm.gamma.shape[1], norm.gamma.shape[0], norm.eps)
        fast.load_state_dict(norm.state_dict())
        return fast.to(norm.gamma.device)

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
        subpixel: bool = False,
        out_block: int = 1,
    ) -> Tensor:
        """``SpatialCIN.forward``, then ReLU or + ``residual``, then padding by ``out_pad``.

        ``subpixel``: ``x`` is ``pixel_unshuffle`` of the layer's input (an upsampling
        conv's output before ``pixel_shuffle``); ``out_block`` 2: the result comes as
        ``pixel_unshuffle(result, 2)``. The fused kernel does both on the way.

        ``support`` (at ``x``'s resolution) lets the torch-op path skip pixels where a
        region's mask is 0. ``other_masks`` are the masks of every region but
        ``support.base`` in fp32, contiguous, for the fused kernel; with them
        ``region_masks`` may be None.
        """
        kernels = fused_norm.kernels() if fused_norm.applies(x) else None
        if kernels is None and subpixel:
            x = F.pixel_shuffle(x, 2)
        if kernels is not None:
            base = None if support is None else support.base
            if other_masks is None and region_masks is not None:
                scale = 2 if subpixel else 1
                size = (x.shape[-2] * scale, x.shape[-1] * scale)
                masks = resize_masks(region_masks.float(), size)
                if base is None:
                    base = int(masks.sum(dim=(0, 2, 3)).argmax())
                other_masks = masks[:, [r for r in range(masks.shape[1]) if r != base]]
                other_masks = other_masks.contiguous()
            others = [None] * x.shape[0] if other_masks is None else other_masks.split(1)
            skips = [None] * x.shape[0] if residual is None else residual.split(1)
            layout = {"subpixel": subpixel, "out_block": out_block}
            outputs = [
                self._fused(
                    kernels, xi, style_weights, oi, base, relu, ri, out_pad, pad_mode, layout
                )
                for xi, oi, ri in zip(x.split(1), others, skips, strict=True)
            ]
            return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        if x.shape[0] > 1:
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
        if relu:
            y = y.relu_()
        if residual is not None:
            y = y.add_(residual)
        y = F.pad(y, [out_pad] * 4, mode=pad_mode) if out_pad else y
        return F.pixel_unshuffle(y, out_block) if out_block > 1 else y

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
        layout: dict,
    ) -> Tensor:
        """One image through ``fused_norm.fused_region_norm``."""
        rows = self.affine_rows(style_weights, other_masks)
        channels = self.gamma.shape[1]
        return fused_norm.fused_region_norm(
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
            **layout,
        )

    def _normalize_one(
        self,
        x: Tensor,
        style_weights: Tensor,
        region_masks: Tensor | None,
        support: RegionSupport | None,
    ) -> Tensor:
        """One image [1,C,H,W] with torch ops: as few full passes over memory as possible.

        With one image, batch norm's training-mode statistics are exactly instance norm's,
        and its CPU kernel takes them (accumulating in fp32, also for bf16 input) and
        applies the affine in one call, where separate ops would each cost a pass and,
        on a busy machine, a wait for every thread.

        With regions, this computes what ``SpatialCIN`` defines, with less memory traffic:
        one pass takes the whole image's statistics; each region other than the base (the
        largest) sums its mask-weighted moments inside the box where its mask is nonzero;
        the base region's moments are the whole image's minus the others' (the masks sum
        to 1). Masks summing to 1 also give y = Y_b + sum_r m_r * (Y_r - Y_b), where Y_r is
        the image normalised with region r's statistics and affine: Y_b is one eval-mode
        batch norm over the image, each difference two addcmuls inside region r's box.
        """
        rows = self.affine_rows(style_weights, region_masks)
        channels = x.shape[1]
        gamma, beta = rows[:, :channels], rows[:, channels:]
        if region_masks is None:
            return F.batch_norm(x, None, None, gamma[0], beta[0], True, 0.0, self.eps)
        height, width = x.shape[-2:]
        if support is None:
            support = RegionSupport(0, [(0, height, 0, width)] * gamma.shape[0])
        masks = masks_at(region_masks, x)
        stats = boxed_region_statistics(x, masks, support)
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


def boxed_region_statistics(
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
