"""The 26-style network for inference: ``multistyle.MultiStyleNet``, rearranged for speed.

Built from the reference network's weights (``FastMultiStyleNet.from_reference``) and tested
equal to it. What differs is only how the same arithmetic is laid out:
- activations stay channels-last in the compute dtype (fp32, or bf16 on CPUs with native
  bf16) from conv to conv; the norm statistics and affine tables stay fp32;
- every conv runs on a weight oneDNN packed once (``fast_conv.PackedConv``); the upsampling
  convs run at low resolution (``subpixel_weight``), the last 9x9 conv on 2x2 pixel blocks;
- each norm also applies the ReLU or residual add and pads for the next conv
  (``region_norm.FastSpatialCIN``), so the network never pads or adds in a pass of its own;
- region masks are averaged to each level once per frame (``MaskPyramid``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from partialstyle.layers import pad_to_multiple
from partialstyle.style import fused_norm
from partialstyle.style.fast_conv import PackedConv, compute_dtype
from partialstyle.style.multistyle import (
    MIN_SIDE,
    SIZE_MULTIPLE,
    ConvCIN,
    MultiStyleNet,
    ResidualBlock,
    regions_to_paint,
)
from partialstyle.style.region_norm import FastSpatialCIN, RegionSupport


class MaskPyramid:
    """Region masks at full, 1/2 and 1/4 resolution, keyed by width, and their support.

    ``others`` holds the masks of every region but the base (the largest) in fp32,
    contiguous: what the fused kernel reads; the base's mask is 1 minus their sum. The
    torch-op path asks ``at`` for all of them in the compute dtype, made on first ask, and
    ``support`` for the regions' boxes, found on first ask (the fused kernel needs neither:
    finding the boxes took half of the pyramid's time).
    """

    def __init__(self, others: dict[int, Tensor], base: int, width: int, dtype: torch.dtype):
        self.others = others
        self.base = base
        self.width = width
        self.dtype = dtype
        self.every: dict[int, Tensor] = {}

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
        return cls(others, base, masks.shape[-1], dtype)

    @functools.cached_property
    def support(self) -> RegionSupport:
        """Each region's box of nonzero mask pixels (from the quarter-size masks)."""
        quarter = self.others[min(self.others)]
        return RegionSupport.of(_with_base(quarter, self.base), block=4)._replace(base=self.base)

    def at(self, width: int) -> Tensor:
        """Every region's mask at the level ``width`` pixels wide, in the compute dtype."""
        if width not in self.every:
            self.every[width] = _with_base(self.others[width], self.base).to(self.dtype)
        return self.every[width]


def _with_base(others: Tensor, base: int) -> Tensor:
    """All R masks from the R-1 non-base ones: the base's is what they leave of 1."""
    rest = (1.0 - others.sum(dim=1, keepdim=True)).clamp_min(0.0)
    return torch.cat([others[:, :base], rest, others[:, base:]], dim=1)


class StyleRows:
    """Every norm layer's mixed gamma and beta rows for one call, from one matrix product.

    Mixing two rows per layer with torch ops costs more Python and dispatch time than a
    small layer's whole arithmetic on this network (36 products and 18 concatenations a
    frame); one product over all the layers' tables takes one call.
    """

    def __init__(self, table: Tensor, norms: dict[int, int], weights: Tensor):
        mixed = weights.float() @ table  # [R, 2 * total]: every gamma, then every beta
        sizes = list(norms.values())
        parts = mixed.split(sizes + sizes, dim=1)  # one call for all the views
        self._rows = {key: (parts[i], parts[len(sizes) + i]) for i, key in enumerate(norms)}

    def of(self, norm: FastSpatialCIN) -> tuple[Tensor, Tensor]:
        """``norm``'s gamma and beta rows, [R, C] each (fp32 views of the product)."""
        return self._rows[id(norm)]


class FastConvCIN(ConvCIN):
    """``ConvCIN`` on an input the previous layer already padded.

    ``pad`` and ``pad_mode`` tell the previous layer's norm how to pad its output (see
    ``FastSpatialCIN`` ``out_pad``). With ``upsample`` the conv runs at the input's
    resolution on a replicate-padded input (see ``subpixel_weight``); with
    ``space_to_depth`` s > 1 on s x s pixel blocks (``blocked_weight``).
    """

    norm_layer = FastSpatialCIN

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pad_mode = "replicate" if self.upsample else "reflect"
        self.space_to_depth = 1
        # The packed conv of the current weight; dropped when weights are loaded in place
        # or the precision changes, and remade when the weight's storage moved.
        self._packed: tuple[int, PackedConv] | None = None
        self.register_load_state_dict_post_hook(lambda module, _: module.forget_packed())

    def forget_packed(self) -> None:
        """Drop the packed weight, so the next call packs the current one."""
        self._packed = None

    def packed(self) -> PackedConv:
        """The packed conv of the current weight (made again when the weight moved)."""
        weight = self.conv.weight
        if self._packed is None or self._packed[0] != weight.data_ptr():
            conv = PackedConv(self.conv, weight.dtype, self.upsample, self.space_to_depth)
            self._packed = (weight.data_ptr(), conv)
        return self._packed[1]

    def forward(
        self,
        x: Tensor,
        style_weights: Tensor,
        masks: MaskPyramid | None,
        out_pad: int = 0,
        residual: Tensor | None = None,
        pad_mode: str = "reflect",
        out_block: int = 1,
        rows: StyleRows | None = None,
        deferred: bool = False,
    ) -> Tensor | fused_norm.DeferredNorm:
        """``x`` comes padded by ``self.pad`` (``self.pad_mode``), or as the previous layer's
        ``DeferredNorm``; the result by ``out_pad``.

        On the fused kernel's path an upsampling or blocked conv's output goes to the norm
        before ``pixel_shuffle`` (the kernel reads it as the image), and ``out_block`` 2
        asks for the result in 2x2 pixel blocks (the next conv's ``space_to_depth``).
        ``rows``: the network's mixed norm rows for this call (else mixed here).
        ``deferred``: the result may be a ``DeferredNorm``, which the next layer's conv
        applies as it reads it (``fused_norm.fused_region_norm``).
        """
        # A DeferredNorm (one image) comes only from this path.
        image = x.raw if isinstance(x, fused_norm.DeferredNorm) else x
        kernels = fused_norm.kernels() if fused_norm.applies(image) else None
        if kernels is not None and image.shape[0] == 1:
            # One image on the kernel's path: straight to it, the layer's overhead kept to
            # the conv and one kernel call (it is most of a small layer's time).
            subpixel = self.upsample or self.space_to_depth == 2
            # The AMX conv also sums the statistics as it writes (fast_conv.PackedConv).
            y, moments = self.packed().with_moments(x, None if masks is None else masks.others)
            others = base = None
            if masks is not None:
                others = masks.others[y.shape[-1] * (2 if subpixel else 1)]
                base = masks.base
            if rows is None:
                mixed = self.norm.affine_rows(style_weights, others)
                gamma, beta = mixed.split(mixed.shape[1] // 2, dim=1)
            else:
                gamma, beta = rows.of(self.norm)
            return fused_norm.fused_region_norm(
                kernels,
                y,
                gamma,
                beta,
                others,
                base,
                self.norm.eps,
                relu=self.relu,
                residual=residual,
                out_pad=out_pad,
                pad_mode=pad_mode,
                subpixel=subpixel,
                out_block=out_block,
                moments=moments,
                deferred=deferred,
            )
        y = self.packed()(x)
        width = y.shape[-1]
        mask = support = None
        if masks is not None:
            support = masks.support.scaled(masks.width // width)
            mask = masks.at(width)
        return self.norm(
            y,
            style_weights,
            mask,
            relu=self.relu,
            residual=residual,
            out_pad=out_pad,
            pad_mode=pad_mode,
            support=support,
        )


class FastResidualBlock(ResidualBlock):
    """``ResidualBlock``: the second norm adds the block's input and pads."""

    conv_layer = FastConvCIN

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.pad = self.first.pad
        self.pad_mode = self.first.pad_mode

    def forward(
        self,
        x: Tensor,
        style_weights: Tensor,
        masks: MaskPyramid | None,
        out_pad: int,
        pad_mode: str = "reflect",
        rows: StyleRows | None = None,
    ) -> Tensor:
        """``x`` comes padded by 1 (for the first conv); the result is padded by ``out_pad``."""
        inner = x[..., 1:-1, 1:-1]
        hidden = self.first(x, style_weights, masks, out_pad=self.second.pad, rows=rows)
        return self.second(
            hidden,
            style_weights,
            masks,
            out_pad=out_pad,
            residual=inner,
            pad_mode=pad_mode,
            rows=rows,
        )


class FastMultiStyleNet(MultiStyleNet):
    """``MultiStyleNet`` for inference: same layers and weights (same state dict keys),
    same results, laid out for speed (the way torchvision's quantizable models subclass
    the float ones).

    Inference runs in ``compute_dtype`` (fp32 or bf16, see ``optimize_for_inference``):
    the image is cast once on the way in, activations stay in that dtype and the
    channels-last layout from conv to conv, and the result is cast back to the image's
    dtype. One instance holds no per-call state, so threads may share it.
    """

    conv_layer = FastConvCIN
    residual_block = FastResidualBlock

    def __init__(self, num_residual_blocks: int = 6) -> None:
        super().__init__(num_residual_blocks)
        self.compute_dtype = torch.float32
        # (parameter addresses, every norm's gammas then betas, each norm's channel count)
        self._row_table: tuple[tuple, Tensor, dict[int, int]] | None = None
        self._norms: list[FastSpatialCIN] | None = None
        self.register_load_state_dict_post_hook(lambda module, _: module.forget_row_table())
        # The last 4->3 9x9 conv at full resolution runs on 2x2 pixel blocks.
        self.expand[-1].space_to_depth = 2

    @classmethod
    def from_reference(cls, net: MultiStyleNet, precision: str = "auto") -> FastMultiStyleNet:
        """The fast network with ``net``'s weights, on its device, ready for inference."""
        fast = cls(num_residual_blocks=len(net.res))
        fast.load_state_dict(net.state_dict(), strict=True)
        return fast.to(next(net.parameters()).device).optimize_for_inference(precision)

    def optimize_for_inference(self, precision: str = "auto") -> FastMultiStyleNet:
        """Pick the compute precision and the fast layout for inference; returns self.

        "fp32" is exact (matches onnxruntime to 1e-4). "bf16" keeps activations and conv
        weights in bfloat16 (norm statistics and affine tables stay fp32): about twice as
        fast on CPUs with AVX-512 BF16 or AMX, at about 0.002 mean absolute error per
        pixel. "auto" is bf16 on such CPUs and fp32 on any other device.
        """
        self.compute_dtype = compute_dtype(precision, next(self.parameters()).device)
        self.forget_row_table()
        for layer in self.modules():
            if isinstance(layer, FastConvCIN):
                # Conv weights are cast once here; norm tables stay fp32 for the statistics.
                layer.conv.to(self.compute_dtype)
                layer.forget_packed()
        # channels_last is oneDNN's fast layout on CPU and changes no result.
        return self.to(memory_format=torch.channels_last).eval().requires_grad_(False)

    def forget_row_table(self) -> None:
        """Drop the norms' row table, so the next call builds it from the current weights."""
        self._row_table = None

    def style_rows(self, style_weights: Tensor) -> StyleRows:
        """Every norm's mixed rows for ``style_weights`` [R, 26], from one table of all
        layers' gamma and beta rows, made again when the parameters moved or were loaded
        (as each layer's packed conv is)."""
        if self._norms is None:  # the layers never change; walking them costs 0.2 ms a call
            self._norms = [m for m in self.modules() if isinstance(m, FastSpatialCIN)]
        norms = self._norms
        key = tuple(p.data_ptr() for m in norms for p in (m.gamma, m.beta))
        if self._row_table is None or self._row_table[0] != key:
            channels = {id(norm): norm.gamma.shape[1] for norm in norms}
            gammas = [norm.gamma.detach().float() for norm in norms]
            betas = [norm.beta.detach().float() for norm in norms]
            self._row_table = (key, torch.cat([*gammas, *betas], dim=1), channels)
        _, table, channels = self._row_table
        return StyleRows(table, channels, style_weights)

    def forward(
        self,
        image: Tensor,
        style_weights: Tensor,
        region_masks: Tensor | None = None,
        share_repeated_styles: bool = True,
        shown_with: Sequence[Tensor] = (),
    ) -> Tensor:
        """``MultiStyleNet.forward``: stylize ``image`` [N,3,H,W] in [0,1].

        With ``shown_with`` (weights [H,W] of one image: where it will be shown), the result
        is the premultiplied layer [1,4,H,W] of ``compose.premultiplied_layer`` instead,
        made in the network's last pass (``fused_norm.sigmoid_output``).
        """
        style_weights, padded_masks = regions_to_paint(
            image, style_weights, region_masks, share_repeated_styles
        )
        dtype = self.compute_dtype
        masks = None if padded_masks is None else MaskPyramid.build(padded_masks, dtype)
        height, width = image.shape[-2:]
        x = pad_to_multiple(image, SIZE_MULTIPLE, MIN_SIDE)
        x = fused_norm.padded_input(x, self.contract[0].pad, dtype)
        rows = self.style_rows(style_weights)
        layers = [*self.contract, *self.res, *self.expand]
        # Each layer pads its output the way the next layer wants it.
        for layer, nxt in zip(layers, [*layers[1:], None], strict=True):
            out_pad, pad_mode = (0, "reflect") if nxt is None else (nxt.pad, nxt.pad_mode)
            layout = {"pad_mode": pad_mode, "rows": rows}
            if isinstance(nxt, FastConvCIN) and nxt.space_to_depth > 1:
                layout["out_block"] = 2
            pair = isinstance(layer, FastConvCIN) and isinstance(nxt, FastConvCIN)
            if pair and nxt.packed().takes_deferred(dtype):
                # The contracting norms' results are applied by the strided convs as they
                # read them, never written (fused_norm.DeferredNorm).
                layout["deferred"] = True
            x = layer(x, style_weights, masks, out_pad, **layout)
        return fused_norm.sigmoid_output(x, height, width, shown_with).to(image.dtype)
