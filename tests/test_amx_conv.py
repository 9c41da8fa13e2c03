"""The AMX conv (``amx_conv.cpp``) against torch's conv, and its sums against region_moments.

The kernel runs only on CPUs with AMX (Intel Xeon since Sapphire Rapids); elsewhere these tests
skip, and the networks take oneDNN's conv (the network tests cover both, whichever runs here).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from partialstyle.style import fused_norm
from partialstyle.style.fast_conv import PackedConv


@pytest.fixture(scope="module")
def amx():
    kernels = fused_norm.kernels(wait=True)
    assert kernels is not None, f"fused kernel build: {fused_norm.status()}"
    if not kernels.amx_available():
        pytest.skip("needs a CPU with AMX")
    return kernels


def bf16_image(generator: torch.Generator, channels: int, height: int, width: int) -> torch.Tensor:
    x = torch.randn(1, channels, height, width, generator=generator).to(torch.bfloat16)
    return x.contiguous(memory_format=torch.channels_last)


def soft_mask(generator: torch.Generator, height: int, width: int) -> torch.Tensor:
    """A mask that is 0 on the left (whole runs of 16 the kernel skips), soft elsewhere."""
    mask = torch.rand(1, 1, height, width, generator=generator)
    mask[..., : width // 2] = 0.0
    return mask.contiguous()


# Odd heights (the last row pair has one row), widths that are not multiples of 16 (the last
# run overlaps the one before) and the narrowest the kernel takes; stride 1 and 2 (whose input
# may have an odd or even side).
@pytest.mark.parametrize(("height", "width"), [(7, 37), (1, 16), (12, 48), (5, 17)])
@pytest.mark.parametrize(("stride", "extra"), [(1, 0), (2, 0), (2, 1)])
def test_amx_conv_equals_the_conv(amx, height, width, stride, extra) -> None:
    generator = torch.Generator().manual_seed(height * 100 + width)
    torch.manual_seed(height * 100 + width)
    conv = torch.nn.Conv2d(32, 32, 3)
    sides = [stride * (side - 1) + 3 + extra for side in (height, width)]
    x = bf16_image(generator, 32, *sides)
    weight = conv.weight.detach().to(torch.bfloat16)
    bias = conv.bias.detach().float()
    reference = F.conv2d(x.float(), weight.float(), bias, stride)  # same bf16 products, fp32
    y, sums = amx.amx_conv(x, amx.amx_pack_weight(weight), bias, torch.empty(0), False, stride)
    assert y.shape == reference.shape and y.dtype == torch.bfloat16
    assert y.is_contiguous(memory_format=torch.channels_last)
    # Only the rounding to bf16 (and the order of the fp32 sums) differs.
    assert ((y.float() - reference).abs() <= reference.abs() * 2**-8 + 1e-4).all()
    assert sums.numel() == 0


@pytest.mark.parametrize(("height", "width"), [(7, 37), (12, 48)])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_amx_conv_sums_equal_region_moments(amx, height, width, masked, stride) -> None:
    """The statistics' sums made as the output is written equal the kernel's separate pass
    over that output, with one region and with another region's mask."""
    generator = torch.Generator().manual_seed(height + width)
    conv = torch.nn.Conv2d(32, 32, 3)
    x = bf16_image(generator, 32, stride * (height - 1) + 3, stride * (width - 1) + 3)
    masks = soft_mask(generator, height, width) if masked else torch.empty(0)
    weight = amx.amx_pack_weight(conv.weight.detach())
    y, sums = amx.amx_conv(x, weight, conv.bias.detach().float(), masks, True, stride)
    expected = amx.region_moments(y, masks, 1)
    assert sums.shape == expected.shape and sums.dtype == torch.float64
    assert torch.allclose(sums, expected, rtol=1e-5, atol=1e-3)


def test_packed_conv_takes_the_amx_kernel(amx) -> None:
    """A bf16 32 -> 32 3x3 conv runs on AMX (and gives the sums); the upsampling one too, but
    gives none (its output is not the image); a strided one gives them; fp32 stays with
    oneDNN."""
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(32, 32, 3)
    x = bf16_image(generator, 32, 10, 20)
    packed = PackedConv(conv, torch.bfloat16)
    y, sums = packed.with_moments(x, None)
    assert sums is not None and packed._amx is not None
    assert torch.equal(y, packed(x))
    weight, bias = (p.detach().to(torch.bfloat16).float() for p in (conv.weight, conv.bias))
    reference = F.conv2d(x.float(), weight, bias)  # the packed conv keeps its bias in bf16 too
    assert ((y.float() - reference).abs() <= reference.abs() * 2**-8 + 1e-4).all()

    upsampling = PackedConv(torch.nn.Conv2d(32, 8, 3), torch.bfloat16, upsample=True)
    z, none = upsampling.with_moments(x, None)
    assert none is None and upsampling._amx is not None and z.shape == (1, 32, 8, 18)

    strided = PackedConv(torch.nn.Conv2d(32, 32, 3, stride=2), torch.bfloat16)
    z, sums = strided.with_moments(bf16_image(generator, 32, 9, 37), None)
    assert sums is not None and strided._amx is not None and z.shape == (1, 32, 4, 18)

    fp32 = PackedConv(conv, torch.float32)
    _, none = fp32.with_moments(x.float().contiguous(memory_format=torch.channels_last), None)
    assert none is None and fp32._amx is None
