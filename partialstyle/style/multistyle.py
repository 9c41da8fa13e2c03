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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from partialstyle.errors import ModelMissingError

NUM_STYLES = 26
# The network downsamples twice by 2, so inputs are padded to a multiple of 4. The deepest
# level then needs at least 2 rows/columns for its 1-pixel reflect pad, hence 8 at full size.
_MULTIPLE = 4
_MIN_SIDE = 8


class SpatialCIN(nn.Module):
    """Conditional instance norm whose affine can vary per pixel.

    Statistics are always taken over the whole image (so style strength does not depend on
    the region layout). The affine is either one gamma/beta vector per image, mixed from the
    style tables, or a per-pixel gamma/beta map: each region's mixed row weighted by the
    region masks at this layer's resolution.
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
    ) -> Tensor:
        """Normalise ``x`` [N,C,H,W] and apply the style affine.

        ``style_weights`` is [R, num_styles]; ``region_masks`` is [N,R,h,w] (area-averaged
        here if not already at ``x``'s resolution) or None, when R must be 1.
        The keywords fuse what the network does next, saving full passes over memory:
        ``relu`` or adding ``residual``, then reflect padding by ``out_pad`` for the next conv.
        """
        mean, rstd = _instance_stats(x, self.eps)  # [N, C] fp32
        # Fold mean, 1/std, gamma and beta into y = x * scale + shift, one row per region.
        gamma = style_weights.float() @ self.gamma.float()  # [R, C]
        beta = style_weights.float() @ self.beta.float()
        scale_rows = gamma.unsqueeze(0) * rstd.unsqueeze(1)  # [N, R, C]
        shift_rows = beta.unsqueeze(0) - mean.unsqueeze(1) * scale_rows
        rows = torch.cat([scale_rows, shift_rows], dim=2).to(x.dtype)  # [N, R, 2C]
        masks = None
        if region_masks is None:
            if rows.shape[1] != 1:
                raise ValueError(
                    f"{rows.shape[1]} style mixes were given without region masks; "
                    "pass region_masks or a single style mix"
                )
        else:
            masks = _resize_masks(region_masks, x.shape[-2:]).to(x.dtype)

        if torch.is_grad_enabled() and (rows.requires_grad or x.requires_grad):
            # Autograd cannot see through the in-place writes below: plain ops instead.
            y = _apply_affine(x, rows, masks)
            y = torch.relu(y) if relu else y
            y = y if residual is None else y + residual
            return F.pad(y, [out_pad] * 4, mode="reflect") if out_pad else y

        height, width = x.shape[-2:]
        out = torch.empty(
            (x.shape[0], x.shape[1], height + 2 * out_pad, width + 2 * out_pad),
            dtype=x.dtype,
            device=x.device,
            memory_format=_memory_format(x),
        )
        inner = out[..., out_pad : out_pad + height, out_pad : out_pad + width]
        if masks is None:
            _apply_affine(x, rows, None, out=inner)
        else:
            # Per-pixel maps are twice the size of x; building and using them a band of
            # rows at a time keeps them in cache, so extra regions cost little.
            band = max(1, _BAND_ELEMENTS // (width * rows.shape[2]))
            for top in range(0, height, band):
                part = slice(top, top + band)
                _apply_affine(x[..., part, :], rows, masks[..., part, :], out=inner[..., part, :])
        if relu:
            inner.relu_()
        if residual is not None:
            inner += residual
        if out_pad:
            _reflect_border_(out, out_pad)
        return out


# Elements of per-pixel scale+shift maps built at once (4 MB in fp32).
_BAND_ELEMENTS = 1 << 20


def _apply_affine(
    x: Tensor, rows: Tensor, masks: Tensor | None, out: Tensor | None = None
) -> Tensor:
    """x * scale + shift, with scale/shift from ``rows`` [N,R,2C], blended per pixel by masks.

    The blend is one small matmul per pixel (K = R regions): its cost hardly grows with R.
    """
    channels = x.shape[1]
    if masks is None:
        scale = rows[:, 0, :channels, None, None]
        shift = rows[:, 0, channels:, None, None]
    else:
        n, r, h, w = masks.shape
        maps = torch.bmm(masks.reshape(n, r, h * w).transpose(1, 2), rows)  # [N, HW, 2C]
        maps = maps.view(n, h, w, -1).permute(0, 3, 1, 2)  # a channels-last NCHW view
        scale, shift = maps[:, :channels], maps[:, channels:]
    if out is None:
        return torch.addcmul(shift, x, scale)
    return torch.addcmul(shift, x, scale, out=out)


def _instance_stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per-image, per-channel mean and 1/sqrt(var + eps) in fp32, as [N, C].

    Sum and sum of squares take two cheap passes; torch.var_mean is about ten times slower
    on CPU for channels-last tensors. The fp32 accumulation keeps the one-pass variance
    accurate for these activations (checked against onnxruntime to 1e-5).
    """
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last):
        flat, dim = x.permute(0, 2, 3, 1).reshape(n, h * w, c), 1  # a view: [N, HW, C]
    else:
        flat, dim = x.reshape(n, c, h * w), 2
    mean = flat.sum(dim=dim, dtype=torch.float32) / (h * w)
    mean_sq = (flat * flat).sum(dim=dim, dtype=torch.float32) / (h * w)
    var = (mean_sq - mean * mean).clamp_(min=0.0)
    return mean, torch.rsqrt(var + eps)


def _memory_format(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1:
        return torch.channels_last
    return torch.contiguous_format


def _reflect_border_(padded: Tensor, pad: int) -> None:
    """Fill the ``pad``-wide border of ``padded`` by reflecting its interior (like F.pad)."""
    height, width = padded.shape[-2] - 2 * pad, padded.shape[-1] - 2 * pad
    cols = slice(pad, pad + width)
    # Rows first (interior columns only), then whole columns, so corners reflect twice.
    padded[..., :pad, cols] = padded[..., pad + 1 : 2 * pad + 1, cols].flip(-2)
    padded[..., pad + height :, cols] = padded[..., height - 1 : height + pad - 1, cols].flip(-2)
    padded[..., :, :pad] = padded[..., :, pad + 1 : 2 * pad + 1].flip(-1)
    padded[..., :, pad + width :] = padded[..., :, width - 1 : width + pad - 1].flip(-1)


def _resize_masks(masks: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    """Area-average masks down to ``size`` (exact block means when the sizes divide)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.adaptive_avg_pool2d(masks, size)


class ConvCIN(nn.Module):
    """Convolution (no bias) on an already reflect-padded input, then SpatialCIN.

    The padding is done by the previous layer's norm (see SpatialCIN ``out_pad``), so
    ``pad`` here only tells that layer how much to add. With ``upsample`` the input is
    first enlarged x2 by nearest neighbour, which the layer does itself (the expand path).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        upsample: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.pad = kernel_size // 2
        self.upsample = upsample
        self.relu = relu
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=False)
        self.norm = SpatialCIN(out_channels)

    def forward(
        self,
        x: Tensor,
        style_weights: Tensor,
        masks: dict[int, Tensor] | None,
        out_pad: int = 0,
        residual: Tensor | None = None,
    ) -> Tensor:
        """``x`` is padded by ``self.pad`` unless ``upsample``; the result by ``out_pad``."""
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = F.pad(x, [self.pad] * 4, mode="reflect")
        y = self.conv(x)
        mask = None if masks is None else masks[y.shape[-1]]
        return self.norm(y, style_weights, mask, relu=self.relu, residual=residual, out_pad=out_pad)


class ResidualBlock(nn.Module):
    """x + CIN(conv(ReLU(CIN(conv(x))))): the second norm has no ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first = ConvCIN(channels, channels, 3)
        self.second = ConvCIN(channels, channels, 3, relu=False)

    def forward(
        self, x: Tensor, style_weights: Tensor, masks: dict[int, Tensor] | None, out_pad: int
    ) -> Tensor:
        """``x`` comes padded by 1 (for the first conv); the result is padded by ``out_pad``."""
        inner = x[..., 1:-1, 1:-1]
        hidden = self.first(x, style_weights, masks, out_pad=self.second.pad)
        return self.second(hidden, style_weights, masks, out_pad=out_pad, residual=inner)


class MultiStyleNet(nn.Module):
    """The 26-style transformer: image in [0,1] -> stylized image in [0,1], any size."""

    def __init__(self, num_residual_blocks: int = 6) -> None:
        super().__init__()
        self.compute_dtype: torch.dtype | None = None  # set by optimize_for_inference
        self.contract = nn.ModuleList(
            [ConvCIN(3, 32, 9), ConvCIN(32, 32, 3, stride=2), ConvCIN(32, 32, 3, stride=2)]
        )
        self.res = nn.ModuleList(ResidualBlock(32) for _ in range(num_residual_blocks))
        self.expand = nn.ModuleList(
            [
                ConvCIN(32, 8, 3, upsample=True),
                ConvCIN(8, 4, 3, upsample=True),
                ConvCIN(4, 3, 9, relu=False),
            ]
        )

    @classmethod
    def load(cls, path: Path, device: torch.device | str = "cpu") -> MultiStyleNet:
        """Load converted weights (strict); a missing or unreadable file is a ModelMissingError."""
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
        # channels_last is oneDNN's fast layout on CPU and changes no result.
        return net.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)

    def optimize_for_inference(self, precision: str = "fp32") -> MultiStyleNet:
        """Pick the compute precision for CPU inference and the fast layout; returns self.

        "fp32" is exact (matches onnxruntime to 1e-4). "bf16" runs convolutions and
        elementwise ops in bfloat16 (statistics stay fp32): faster on CPUs with AVX-512 BF16
        or AMX, at a cost of about 0.002 mean / 0.09 worst-case absolute error per pixel.
        """
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.compute_dtype = torch.bfloat16 if precision == "bf16" else None
        return self.to(memory_format=torch.channels_last).eval().requires_grad_(False)

    def forward(
        self, image: Tensor, style_weights: Tensor, region_masks: Tensor | None = None
    ) -> Tensor:
        """Stylize ``image`` [N,3,H,W] in [0,1].

        ``style_weights`` [R,26] holds one style mix per region (rows are used as given, so
        normalise them to sum 1). ``region_masks`` [N,R,H,W] are soft masks summing to 1 per
        pixel; without them R must be 1 and the whole image gets the one mix.
        """
        _check_inputs(image, style_weights, region_masks)
        masks = None
        if region_masks is not None:
            masks = _mask_pyramid(_pad_to_multiple(region_masks.to(image.dtype)))
        if self.compute_dtype is not None and image.device.type == "cpu":
            with torch.autocast("cpu", dtype=self.compute_dtype):
                out = self._stylize(image, style_weights, masks)
            return out.to(image.dtype)
        return self._stylize(image, style_weights, masks)

    def _stylize(self, image: Tensor, style_weights: Tensor, masks: dict[int, Tensor] | None):
        height, width = image.shape[-2:]
        x = _pad_to_multiple(image)
        layers = [*self.contract, *self.res, *self.expand]
        # Each layer pads its output for the next one; upsampling layers pad for themselves.
        next_pads = [0 if nxt.upsample else nxt.pad for nxt in self._first_convs(layers[1:])]
        x = F.pad(x, [self.contract[0].pad] * 4, mode="reflect")
        for layer, out_pad in zip(layers, [*next_pads, 0], strict=True):
            x = layer(x, style_weights, masks, out_pad)
        return torch.sigmoid(x[..., :height, :width])

    @staticmethod
    def _first_convs(layers: list[nn.Module]) -> list[ConvCIN]:
        return [layer.first if isinstance(layer, ResidualBlock) else layer for layer in layers]


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


def _mask_pyramid(masks: Tensor) -> dict[int, Tensor]:
    """Masks at full, 1/2 and 1/4 resolution, keyed by width (the sizes are exact halves)."""
    half = F.avg_pool2d(masks, 2)
    quarter = F.avg_pool2d(half, 2)
    return {m.shape[-1]: m for m in (masks, half, quarter)}
