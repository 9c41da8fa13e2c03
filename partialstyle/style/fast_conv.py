"""Convolutions for the style networks' fast inference paths, and their precision policy.

Three rewrites change a conv's shape, not its result (tests check each against the plain conv):
``subpixel_weight`` runs "nearest x2 upsample, pad, 3x3 conv" at the input's resolution,
``blocked_weight`` runs a few-channel conv on pixel blocks, and ``strided_blocked_weight`` a
stride-2 conv on the pixel blocks of its input. ``PackedConv`` keeps oneDNN's own
copy of the weight, so a video's frames pay for the weight's reorder once; on CPUs with AMX it
runs the 32-channel 3x3 convs on our own kernel (``amx_conv.cpp``), which can also make the
next norm's statistics as it writes and apply the previous norm as it reads
(``PackedConv.with_moments``), and the few-channel convs on another (``_row_kernels``), which
can write the next conv's padded input itself (``PackedConv.padded_output``).
"""

from __future__ import annotations

from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor

from partialstyle.style import fused_norm

PRECISIONS = ("auto", "fp32", "bf16")

# Internal oneDNN ops (the ones torch.compile's CPU freezing uses); F.conv2d stands in
# should a torch build lack them.
_HAS_PACKED_CONV = hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight") and hasattr(
    torch.ops.mkldnn, "_convolution_pointwise"
)


def native_bf16(device: torch.device) -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX-512 BF16 or AMX)."""
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a fast network computes in: "fp32", "bf16", or "auto" (bf16 where the CPU
    has native bf16, fp32 on any other device). ValueError for any other precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    return torch.bfloat16 if precision == "bf16" else torch.float32


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


def strided_blocked_weight(weight: Tensor) -> Tensor:
    """The kernel of a stride-2 k x k conv (k odd, padded by k // 2) rewritten as a stride-1
    conv on 2x2 pixel blocks of the input padded by the next even number, ``even_pad(k)``.

    conv(pad(x, k // 2), w, stride=2) == conv(pixel_unshuffle(pad(x, e), 2), this)[:H/2, :W/2]
    for even H and W: output pixel i reads padded rows 2i + o .. 2i + o + k - 1 (o = e - k // 2,
    the extra pad), which are blocks i .. i + (k + o - 1) // 2; row d of the kernel lands in
    block (d + o) // 2, phase (d + o) % 2. For the arbitrary network's 3x3 conv from 8 to 16
    channels at full resolution that is a 2x2 conv from 32 to 16: 1.8x the FLOPs, in a shape
    oneDNN runs about 1.6x as fast, and its input written by the previous pass as it pads
    (even pads keep whole blocks in place), so no pass of its own to pad in pixel order.
    """
    k = weight.shape[-1]
    offset = even_pad(k) - k // 2
    size = (k + offset + 1) // 2
    # taps[p, i, d]: input phase p of block offset i meets kernel tap d.
    taps = weight.new_zeros(2, size, k, dtype=torch.float32)
    for d in range(k):
        taps[(d + offset) % 2, (d + offset) // 2, d] = 1.0
    blocks = torch.einsum("pid,qje,ocde->ocpqij", taps, taps, weight.float())
    out_channels, in_channels = weight.shape[:2]
    return blocks.reshape(out_channels, in_channels * 4, size, size).to(weight.dtype)


def even_pad(kernel: int) -> int:
    """The pad a ``strided_blocked_weight`` conv's input takes: k // 2 rounded up to even."""
    return (kernel // 2 + 1) // 2 * 2


def _row_chunks(values: int) -> int:
    """How the AMX row conv splits a kernel row's ``values`` (k * Cin, amx_conv.cpp's
    row_chunks): the fewest chunks of an even size of at most 32, or 0 if none."""
    for chunks in range(1, values + 1):
        size, rest = divmod(values, chunks)
        if rest == 0 and size % 2 == 0 and size <= 32:
            return chunks
    return 0


def _one_bf16_image(x: Tensor) -> bool:
    """Whether ``x`` is what the AMX kernels take: one bf16 CPU image, channels-last."""
    return (
        x.dtype == torch.bfloat16
        and x.dim() == 4
        and x.shape[0] == 1
        and x.is_contiguous(memory_format=torch.channels_last)
        and fused_norm.applies(x)
    )


def _amx_module() -> ModuleType | None:
    """The fused kernels when this build and CPU run AMX (the OS granting its tiles), else
    None."""
    kernels = fused_norm.kernels()
    return kernels if kernels is not None and kernels.amx_available() else None


_EMPTY = torch.empty(0)
# amx_conv's arguments for an input that comes padded and normalised (no DeferredNorm).
_NO_INPUT_NORM = (_EMPTY, _EMPTY, _EMPTY, False, False)


class PackedConv:
    """A conv on an already padded input, for inference: weight and bias cast once to
    ``dtype``, the weight packed by oneDNN for the last input shape, ReLU as oneDNN's post-op.

    With ``upsample`` it computes "nearest x2, reflect pad 1, 3x3 conv" at low resolution
    from a replicate-padded input (``subpixel_weight``); with ``block`` > 1 it runs on
    block x block pixel groups (``blocked_weight``), and a stride-2 conv with ``block`` 2
    on the 2x2 blocks of an input padded by ``even_pad`` (``strided_blocked_weight``).

    F.conv2d makes oneDNN reorder the weight into its blocked layout on every call: a tiny
    job, but one more parallel region per conv, and on a busy machine each one waits for
    every thread to be scheduled (18 reorders cost ~65 ms per frame with 2 threads in one
    measurement). The copy here is made from the weights as they are now: whoever changes
    them makes a new ``PackedConv``.
    """

    def __init__(
        self, conv: torch.nn.Conv2d, dtype: torch.dtype, upsample: bool = False, block: int = 1
    ) -> None:
        weight, bias = conv.weight.detach(), conv.bias
        self.strided_blocks = block == 2 and tuple(conv.stride) == (2, 2)
        if upsample:
            weight = subpixel_weight(weight)
            bias = None if bias is None else bias.repeat_interleave(4)
        elif self.strided_blocks:
            weight = strided_blocked_weight(weight)
        elif block > 1:
            weight = blocked_weight(weight, block)
            bias = None if bias is None else bias.repeat_interleave(block * block)
        self.weight = weight.to(dtype).contiguous()
        self.bias = None if bias is None else bias.detach().to(dtype)
        self.stride = [1, 1] if self.strided_blocks else list(conv.stride)
        self.kernel = conv.kernel_size[0]
        self.upsample = upsample
        self.block = block
        self._packed: tuple[tuple, Tensor] | None = None
        # The AMX kernel's copy of the weight (amx_conv.cpp), for a 32 -> 32 3x3 conv in bf16
        # (the residual convs, the strided ones, and the upsampling conv with 8 outputs).
        self._amx: tuple[Tensor, Tensor] | None = None
        # The AMX row kernel's copy, for a few-channel conv (``_row_kernels``).
        self._amx_rows: tuple[Tensor, Tensor] | None = None
        self.amx_shape = tuple(self.weight.shape) == (32, 32, 3, 3) and self.stride in (
            [1, 1],
            [2, 2],
        )
        # Whether the weight suits the AMX row kernel (see ``_row_kernels``): decided once, as
        # the weight's shape never changes.
        out_channels, in_channels, size = self.weight.shape[:3]
        chunks = _row_chunks(size * in_channels)
        self.row_shape = (
            out_channels <= 32
            and not self.amx_shape
            and chunks > 0
            and size * in_channels // chunks >= 24
            and self.stride[0] in (1, 2)
        )

    def with_moments(
        self, x: Tensor | fused_norm.DeferredNorm, masks_by_width: dict[int, Tensor] | None
    ) -> tuple[Tensor, Tensor | None]:
        """The conv of ``x`` (``shuffle`` False), and where the AMX kernel runs it, the sums
        ``fused_norm``'s statistics need, made as the output is written: over the masks of
        the output's width in ``masks_by_width`` (every region's but the base's, see
        ``multistyle_fast.MaskPyramid``; None for one region). Else None: also for an
        upsampling conv (its output is not the image) and more than one other region.

        ``x`` may be the previous norm's ``DeferredNorm``: the AMX kernel applies it as it
        reads its input; elsewhere it is written out first."""
        deferred = x if isinstance(x, fused_norm.DeferredNorm) else None
        image = x if deferred is None else deferred.raw
        kernels = self._amx_kernels(image, pads=deferred is not None)
        if kernels is None:
            if deferred is not None:
                x = deferred.materialize(fused_norm.kernels())
            return self(x, shuffle=False), None
        stride = self.stride[0]
        pad = 0 if deferred is None else 2
        width = (image.shape[-1] + pad - 3) // stride + 1
        masks = None if masks_by_width is None else masks_by_width[width]
        summed = not self.upsample and (masks is None or masks.shape[1] == 1)
        weight, bias = self._amx
        planes = masks if summed and masks is not None else torch.empty(0)
        if deferred is None:
            y, moments = kernels.amx_conv(x, weight, bias, planes, summed, stride, *_NO_INPUT_NORM)
        else:
            y, moments = kernels.amx_conv(
                deferred.raw,
                weight,
                bias,
                planes,
                summed,
                stride,
                deferred.scale,
                deferred.shift,
                deferred.masks,
                deferred.relu,
                deferred.reflect,
            )
        return y, moments if summed else None

    def padded_output(self, x: Tensor, pad: int, out_block: int = 1) -> Tensor | None:
        """ReLU(conv(x)) reflect-padded by ``pad`` for the next conv, as
        ``fused_norm.padded_activation`` pads it (a blocked conv's output stays in its blocks:
        ``out_block`` 2), in one pass of the AMX row kernel where it applies (see
        ``_row_kernels``). Else None, and the caller takes the conv and the padding pass."""
        blocks_out = self.block > 1 and not self.strided_blocks
        kernels = self._row_kernels(x)
        if kernels is None or out_block != (2 if blocks_out else 1) or pad % out_block:
            return None
        weight, bias = self._amx_rows
        height, width = self._output_size(x)
        stride = self.stride[0]
        return kernels.amx_row_conv(x, weight, bias, True, stride, height, width, pad, out_block)

    def _output_size(self, x: Tensor) -> tuple[int, int]:
        """The conv's output size for the padded input ``x`` (a strided blocked conv's is
        cropped to half its input's, see ``strided_blocked_weight``)."""
        if self.strided_blocks:
            crop = even_pad(self.kernel)
            return x.shape[-2] - crop, x.shape[-1] - crop
        size, stride = self.weight.shape[-1], self.stride[0]
        return tuple((side - size) // stride + 1 for side in x.shape[-2:])

    def _row_kernels(self, x: Tensor) -> ModuleType | None:
        """The kernels when the AMX row conv (``amx_conv.cpp``'s ``amx_row_conv``) applies to
        ``x``, the weight packed for it on first use; else None. It takes a kernel row's taps
        of an output pixel as one run of k * Cin values, so it suits the few-channel convs
        oneDNN runs far from the peak: at most 32 outputs, and the run in tile rows at least
        three-quarters full (the 5x5 conv on 16 channels, 20 of 32 a row, was slower than
        oneDNN)."""
        if not (
            self.row_shape
            and _one_bf16_image(x)
            and x.shape[1] == self.weight.shape[1]
            and self._output_size(x)[1] >= 16
        ):
            return None
        kernels = _amx_module()
        if kernels is not None and self._amx_rows is None:
            self._amx_rows = (kernels.amx_pack_row_weight(self.weight), self._float_bias())
        return kernels

    def takes_deferred(self, dtype: torch.dtype) -> bool:
        """Whether this conv would apply a ``DeferredNorm`` of ``dtype`` as it reads it (on
        the AMX kernel), so that the norm before it need not write its result."""
        return self.amx_shape and dtype == torch.bfloat16 and _amx_module() is not None

    def _amx_kernels(self, x: Tensor, pads: bool = False) -> ModuleType | None:
        """The kernels when the AMX conv applies to ``x`` (one bf16 CPU image, channels-last,
        at least 16 output pixels wide; padded, else ``pads`` that the kernel pads it), the
        weight packed for it on first use; else None."""
        pad = 2 if pads else 0
        if not (
            self.amx_shape
            and _one_bf16_image(x)
            and (x.shape[-1] + pad - 3) // self.stride[0] + 1 >= 16
            and x.shape[-2] + pad >= 3
        ):
            return None
        kernels = _amx_module()
        if kernels is not None and self._amx is None:
            self._amx = (kernels.amx_pack_weight(self.weight), self._float_bias())
        return kernels

    def _float_bias(self) -> Tensor:
        """The bias in fp32 for the AMX kernels (zeros for a conv without one)."""
        bias = torch.zeros(self.weight.shape[0]) if self.bias is None else self.bias.float()
        return bias.contiguous()

    def __call__(self, x: Tensor, relu: bool = False, shuffle: bool = True) -> Tensor:
        """The conv of ``x``, padded as the conv wants (a strided blocked conv: by
        ``even_pad``); a blocked conv also takes ``x`` already in blocks
        (``pixel_unshuffle(x, block)``, as ``fused_norm`` writes it).
        ``shuffle`` False leaves an upsampling or blocked conv's output before
        ``pixel_shuffle``, for a consumer that reads it in that layout."""
        if not relu and (kernels := self._amx_kernels(x)) is not None:
            weight, bias = self._amx
            y = kernels.amx_conv(x, weight, bias, _EMPTY, False, self.stride[0], *_NO_INPUT_NORM)
            y = y[0]
            return F.pixel_shuffle(y, 2) if shuffle and self.upsample else y
        if (kernels := self._row_kernels(x)) is not None:
            weight, bias = self._amx_rows
            height, width = self._output_size(x)
            y = kernels.amx_row_conv(x, weight, bias, relu, self.stride[0], height, width, 0, 1)
            if shuffle and (self.upsample or (self.block > 1 and not self.strided_blocks)):
                y = F.pixel_shuffle(y, 2 if self.upsample else self.block)
            return y
        if self.block > 1 and x.shape[1] * self.block**2 == self.weight.shape[1]:
            x = F.pixel_unshuffle(x, self.block)
        if prepackable(x):
            key = (tuple(x.shape), x.dtype)
            if self._packed is None or self._packed[0] != key:
                blocked = torch._C._nn.mkldnn_reorder_conv2d_weight(
                    self.weight.to(x.dtype).to_mkldnn(),
                    [0, 0],
                    self.stride,
                    [1, 1],
                    1,
                    list(x.shape),
                )
                self._packed = (key, blocked)
            attr = "relu" if relu else "none"
            y = torch.ops.mkldnn._convolution_pointwise(
                x, self._packed[1], self.bias, [0, 0], self.stride, [1, 1], 1, attr, [], ""
            )
        else:
            bias = None if self.bias is None else self.bias.to(x.dtype)
            y = F.conv2d(x, self.weight.to(x.dtype), bias, self.stride)
            y = y.relu_() if relu else y
        if self.strided_blocks:  # (H/2 + e blocks in, H/2 pixels out)
            pad = even_pad(self.kernel)
            return y[..., : x.shape[-2] - pad, : x.shape[-1] - pad]
        if shuffle and (self.upsample or self.block > 1):
            y = F.pixel_shuffle(y, 2 if self.upsample else self.block)
        return y
