"""Backbones of the official YOLACT configs: ResNet (optionally deformable) and DarkNet-53.

Attribute names follow the official checkpoints so that their state_dicts load unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from .config import YolactConfig


class ModulatedDeformConv3x3(nn.Module):
    """DCNv2: a 3x3 conv whose sampling offsets and per-tap weights are predicted from the input.

    `conv_offset_mask` predicts 27 channels: 18 interleaved (dy, dx) offsets, one pair per tap,
    then 9 modulation logits. torchvision's deform_conv2d uses the same offset layout.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.conv_offset_mask = nn.Conv2d(in_channels, 27, 3, stride=stride, padding=1)
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        nn.init.zeros_(self.bias)
        # Zero offsets and a modulation of 0.5 everywhere at init, as in DCNv2.
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: Tensor) -> Tensor:
        offset_and_mask = self.conv_offset_mask(x)
        offset = offset_and_mask[:, :18]
        mask = torch.sigmoid(offset_and_mask[:, 18:])
        return deform_conv2d(
            x, offset, self.weight, self.bias, stride=self.stride, padding=1, mask=mask
        )


class Bottleneck(nn.Module):
    """ResNet bottleneck with the stride on the 3x3 conv (the torchvision "v1.5" layout)."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        deformable: bool = False,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        if deformable:
            self.conv2: nn.Module = ModulatedDeformConv3x3(width, width, stride)
        else:
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """ResNet-50/101 without the classifier; returns the output of every stage."""

    def __init__(self, config: YolactConfig) -> None:
        super().__init__()
        # Registered first so the state_dict order matches the official files.
        self.layers = nn.ModuleList()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        in_channels = 64
        for stage, num_blocks in enumerate(config.blocks_per_stage):
            width = 64 * 2**stage
            stride = 1 if stage == 0 else 2
            blocks = []
            for block in range(num_blocks):
                downsample = None
                if block == 0:
                    downsample = nn.Sequential(
                        nn.Conv2d(in_channels, width * 4, 1, stride=stride, bias=False),
                        nn.BatchNorm2d(width * 4),
                    )
                blocks.append(
                    Bottleneck(
                        in_channels,
                        width,
                        stride if block == 0 else 1,
                        deformable=config.is_deformable(stage, block),
                        downsample=downsample,
                    )
                )
                in_channels = width * 4
            self.layers.append(nn.Sequential(*blocks))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


def darknet_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
    """Conv (no bias) + BN + LeakyReLU(0.1), the unit DarkNet is built from."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1, inplace=True),
    )


class DarkNetBlock(nn.Module):
    """Residual pair: 1x1 squeeze to half the channels, 3x3 back up, add the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = darknet_conv(channels, channels // 2, 1)
        self.conv2 = darknet_conv(channels // 2, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.conv1(x))


class DarkNetBackbone(nn.Module):
    """DarkNet-53 without the classifier; returns the output of every stage."""

    def __init__(self, config: YolactConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        self._preconv = darknet_conv(3, 32, 3)
        in_channels = 32
        for out_channels, num_blocks in zip(
            config.stage_channels, config.blocks_per_stage, strict=True
        ):
            stage = [darknet_conv(in_channels, out_channels, 3, stride=2)]
            stage += [DarkNetBlock(out_channels) for _ in range(num_blocks)]
            self.layers.append(nn.Sequential(*stage))
            in_channels = out_channels

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self._preconv(x)
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


def build_backbone(config: YolactConfig) -> nn.Module:
    if config.backbone == "darknet":
        return DarkNetBackbone(config)
    return ResNetBackbone(config)
