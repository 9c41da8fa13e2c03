"""Johnson et al. (2016) feed-forward style network, as in pytorch/examples fast_neural_style.

The attribute names below are the checkpoint format: the published candy, mosaic, rain_princess and
udnie ``.pth`` files (and anything trained the same way, including ``train_style``) are plain state
dicts keyed by them, so they load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from partialstyle.layers import pad_to_multiple
from partialstyle.style import fused_norm
from partialstyle.style.fast_conv import compute_dtype

# The network halves the frame twice and doubles it twice, so sides must be multiples of 4; its
# deepest reflection pad (1 px at a quarter of the size) needs at least 2 px there.
SIZE_MULTIPLE = 4
MIN_SIDE = 8


class ReflectConv(nn.Module):
    """Reflection-pad by half the kernel, then a valid convolution: no zero border artefacts."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.pad = kernel_size // 2
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(F.pad(x, (self.pad,) * 4, mode="reflect"))


class UpsampleConv(ReflectConv):
    """Nearest-neighbour upsampling by 2 before the convolution, which avoids the checkerboard
    pattern of a transposed convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm; the block learns a correction added to its input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ReflectConv(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ReflectConv(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(x)))
        return x + self.in2(self.conv2(y))


class TransformerNet(nn.Module):
    """Image-to-image style network: 3 downsampling convs, 5 residual blocks, 2 upsampling convs.

    ``forward`` takes and returns [N,3,H,W] RGB in [0,1] for any H and W; the checkpoints were
    trained on 0..255 pixels, so the scaling happens inside. ``raw`` is the unscaled network, for
    training.
    """

    def __init__(self) -> None:
        super().__init__()
        # None: plain ops in the weights' dtype. Set by ``set_precision`` for inference.
        self.compute_dtype: torch.dtype | None = None
        self._fast = None
        self.register_load_state_dict_post_hook(lambda module, _: setattr(module, "_fast", None))
        self.conv1 = ReflectConv(3, 32, 9)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = ReflectConv(32, 64, 3, stride=2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = ReflectConv(64, 128, 3, stride=2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1 = ResidualBlock(128)
        self.res2 = ResidualBlock(128)
        self.res3 = ResidualBlock(128)
        self.res4 = ResidualBlock(128)
        self.res5 = ResidualBlock(128)
        self.deconv1 = UpsampleConv(128, 64, 3)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = UpsampleConv(64, 32, 3)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ReflectConv(32, 3, 9)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The network as trained: 0..255 in, unclamped 0..255-ish out; H and W multiples of 4."""
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)

    def set_precision(self, precision: str = "auto") -> TransformerNet:
        """Inference on the style networks' fast CPU path (``johnson_fast``) in "fp32", "bf16"
        or "auto" (bf16 on CPUs with native bf16); returns self."""
        self.compute_dtype = compute_dtype(precision, next(self.parameters()).device)
        self._fast = None
        return self

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an [N,3,H,W] image batch, got shape {tuple(image.shape)}")
        height, width = image.shape[-2:]
        padded = pad_to_multiple(image, SIZE_MULTIPLE, MIN_SIDE)
        kernels = self._fast_kernels(padded)
        if kernels is not None:
            if self._fast is None:
                from partialstyle.style.johnson_fast import FastTransformerNet

                self._fast = FastTransformerNet(self, self.compute_dtype)
            return self._fast(kernels, padded)[..., :height, :width].to(image.dtype)
        styled = self.raw(padded * 255.0)[..., :height, :width]
        return (styled / 255.0).clamp(0.0, 1.0)

    def _fast_kernels(self, image: torch.Tensor):
        """The fused kernels where the fast path applies: asked for, CPU inference, built."""
        if self.compute_dtype is None or self.training or not fused_norm.applies(image):
            return None
        return fused_norm.kernels()
