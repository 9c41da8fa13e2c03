"""MediaPipe's selfie segmentation network, rebuilt in torch so it matches MediaPipe's own masks.

Both MediaPipe models ("selfie": 256x256, "selfie-landscape": 144 high x 256 wide) share one
topology: a small MobileNetV3-like encoder with squeeze-excite, a gated head, three decoder stages
that fuse the encoder's skips, and a 2x2 transposed convolution to a one-channel probability map.
Convolutions pad like TensorFlow's SAME, which is asymmetric for the stride-2 layers; plain
symmetric padding would ruin the masks. `weights/convert_selfie.py` turns the .tflite
files into this module's weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from partialstyle.filters import upsample_bilinear
from partialstyle.layers import tf_same_padding
from partialstyle.segment.mediapipe_resize import mediapipe_input

# variant name -> network input size (height, width), as MediaPipe's graphs feed the two models.
VARIANTS: dict[str, tuple[int, int]] = {
    "selfie": (256, 256),
    "selfie-landscape": (144, 256),
}


class TFSameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow SAME padding, computed from the input size."""

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = tf_same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = tf_same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), 1, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


def pointwise(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1)


def depthwise(channels: int, kernel: int, stride: int = 1) -> TFSameConv2d:
    return TFSameConv2d(channels, channels, kernel, stride, groups=channels)


def global_mean(x: Tensor) -> Tensor:
    return x.mean((2, 3), keepdim=True)


class SqueezeExcite(nn.Module):
    """Channel gate from global context: sigmoid(expand(relu(reduce(mean(x)))))."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = pointwise(channels, reduced)
        self.expand = pointwise(reduced, channels)

    def gate(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.expand(F.relu(self.reduce(global_mean(x)))))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class MobileNetV3Block(nn.Module):
    """MobileNet-v3's inverted residual: 1x1 expand, depthwise (any kernel), each with the given
    activation, optional squeeze-excite, linear 1x1 project; residual when it fits. (The
    arbitrary-style predictor's ``MobileNetV2Block`` has ReLU6, 3x3 and no squeeze-excite.)"""

    def __init__(
        self,
        in_channels: int,
        expanded: int,
        out_channels: int,
        kernel: int,
        stride: int,
        activation: type[nn.Module],
        se_reduced: int | None = None,
    ) -> None:
        super().__init__()
        self.expand = pointwise(in_channels, expanded)
        self.expand_act = activation()
        self.depthwise = depthwise(expanded, kernel, stride)
        self.depthwise_act = activation()
        self.se = SqueezeExcite(expanded, se_reduced) if se_reduced else nn.Identity()
        self.project = pointwise(expanded, out_channels)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand_act(self.expand(x))
        y = self.se(self.depthwise_act(self.depthwise(y)))
        y = self.project(y)
        return y + x if self.use_residual else y


class GatedHead(nn.Module):
    """relu(1x1 conv of the features), scaled per channel by a sigmoid gate of their global mean."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = pointwise(in_channels, out_channels)
        self.gate = pointwise(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x)) * torch.sigmoid(self.gate(global_mean(x)))


def upsample2x(x: Tensor) -> Tensor:
    """TFLite RESIZE_BILINEAR with half-pixel centres, exactly 2x."""
    size = (x.shape[-2] * 2, x.shape[-1] * 2)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class DecoderStage(nn.Module):
    """Upsample the coarser features, fuse them with an encoder skip, and refine.

    The skip is gated by squeeze-excite computed on the fused sum, then the upsampled features are
    added back; a 1x1 conv and a residual depthwise conv refine the result. MediaPipe's graph
    upsamples before its 1x1 projection; projecting first is the same arithmetic (both are
    linear and the bilinear weights sum to 1), with the projection at a quarter of the pixels
    and the upsampling on its output (24 channels instead of 128 in the first stage).
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.project = pointwise(in_channels, channels)
        self.skip_gate = SqueezeExcite(channels, channels)
        self.conv = pointwise(channels, channels)
        self.depthwise = depthwise(channels, 3)

    def forward(self, skip: Tensor, previous: Tensor) -> Tensor:
        up = upsample2x(self.project(previous))
        fused = skip * self.skip_gate.gate(skip + up) + up
        refined = F.relu(self.conv(fused))
        return refined + F.relu(self.depthwise(refined))


class SelfieSegmenter(nn.Module):
    """Person probability per pixel, for an RGB image already resized to `input_size`."""

    def __init__(self, variant: str = "selfie") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(
                f"unknown selfie variant {variant!r}; choose one of {sorted(VARIANTS)}"
            )
        self.variant = variant
        self.input_size = VARIANTS[variant]
        relu, hswish = nn.ReLU, nn.Hardswish
        self.stem = TFSameConv2d(3, 16, 3, stride=2)
        self.stage1 = MobileNetV3Block(16, 16, 16, 3, 2, relu, se_reduced=8)
        self.stage2 = nn.Sequential(
            MobileNetV3Block(16, 72, 24, 3, 2, relu),
            MobileNetV3Block(24, 88, 24, 3, 1, relu),
        )
        self.stage3 = nn.Sequential(
            MobileNetV3Block(24, 96, 32, 5, 2, hswish, se_reduced=24),
            MobileNetV3Block(32, 128, 32, 5, 1, hswish, se_reduced=32),
            MobileNetV3Block(32, 128, 32, 5, 1, hswish, se_reduced=32),
            MobileNetV3Block(32, 96, 32, 5, 1, hswish, se_reduced=24),
            MobileNetV3Block(32, 96, 32, 5, 1, hswish, se_reduced=24),
        )
        self.head = GatedHead(32, 128)
        self.decode3 = DecoderStage(128, 24)
        self.decode2 = DecoderStage(24, 16)
        self.decode1 = DecoderStage(16, 16)
        self.to_mask = nn.ConvTranspose2d(16, 1, 2, stride=2)

    def check_input(self, x: Tensor) -> None:
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(
                f"the {self.variant} model takes {self.input_size[0]}x{self.input_size[1]} input, "
                f"got {x.shape[-2]}x{x.shape[-1]}; resize with mediapipe_input first"
            )

    def forward(self, x: Tensor) -> Tensor:
        """x: N x 3 x H x W RGB in [0, 1] at `input_size`; returns N x 1 x H x W probabilities."""
        self.check_input(x)
        e0 = F.hardswish(self.stem(x))
        e1 = self.stage1(e0)
        e2 = self.stage2(e1)
        e3 = self.stage3(e2)
        d = self.decode3(e2, self.head(e3))
        d = self.decode2(e1, d)
        d = self.decode1(e0, d)
        return torch.sigmoid(self.to_mask(d))


def _check_image(image: Tensor) -> None:
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"segment_person needs an H x W x 3 uint8 RGB image, got {image.dtype} "
            f"of shape {tuple(image.shape)}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"segment_person got an empty image of shape {tuple(image.shape)}")


@torch.inference_mode()
def segment_person(
    model: nn.Module, image: Tensor, out_size: tuple[int, int] | None = None
) -> Tensor:
    """Person probability mask for one H x W x 3 uint8 RGB frame, as MediaPipe computes it.

    `model` is a `SelfieSegmenter` or its onnxruntime form (`selfie_onnx`). The frame is
    stretched to the model's input size the way MediaPipe does it, and the mask is resized
    bilinearly to `out_size` (height, width), by default the frame's own size. The result is
    an out_size float32 tensor in [0, 1] on the model's device.
    """
    _check_image(image)
    if out_size is None:
        out_size = (image.shape[0], image.shape[1])
    if out_size[0] < 1 or out_size[1] < 1:
        raise ValueError(f"out_size must be positive (height, width), got {out_size}")
    probability = model_probability(model, image)
    return upsample_bilinear(probability[None, None], out_size)[0, 0]


@torch.inference_mode()
def model_probability(model: nn.Module, image: Tensor) -> Tensor:
    """The person probability at the model's own output size, float32 [h,w] in [0, 1]: what
    `segment_person` resizes. Mask refinement scales it up inside its own first pass."""
    _check_image(image)
    weight = next(model.parameters())
    x = mediapipe_input(image.to(weight.device), model.input_size).to(weight.dtype)
    return model(x).float()[0, 0]
