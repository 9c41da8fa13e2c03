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
from partialstyle.style.fused_norm import DeferredNorm

NO_INPUT_NORM = (torch.empty(0), torch.empty(0), torch.empty(0), False, False)


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
    packed = amx.amx_pack_weight(weight)
    y, sums = amx.amx_conv(x, packed, bias, torch.empty(0), False, stride, *NO_INPUT_NORM)
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
    bias = conv.bias.detach().float()
    y, sums = amx.amx_conv(x, weight, bias, masks, True, stride, *NO_INPUT_NORM)
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


# Sides from the narrowest the kernel takes to odd ones; a mask that reaches only some rows
# (the kernel blends those, and takes the base's rows elsewhere).
@pytest.mark.parametrize(("height", "width"), [(9, 37), (4, 32), (13, 34)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("regions", [1, 2])
@pytest.mark.parametrize(("relu", "reflect"), [(True, True), (False, False)])
def test_deferred_norm_is_applied_as_the_conv_reads(
    amx, height, width, stride, regions, relu, reflect
) -> None:
    """A conv of a ``DeferredNorm`` (normalised and padded as the kernel reads it) gives the
    same bits, and the same sums, as the conv of the norm's written result."""
    generator = torch.Generator().manual_seed(height * 10 + width + stride)
    torch.manual_seed(height + width)
    raw = bf16_image(generator, 32, height, width)
    gamma = 1.0 + torch.rand(regions, 32, generator=generator)
    beta = torch.randn(regions, 32, generator=generator)
    masks = torch.empty(0)
    if regions == 2:
        masks = soft_mask(generator, height, width)
        masks[..., : height // 3, :] = 0.0  # rows the other region does not reach
    scale, shift = amx.region_norm_rows(raw, masks, gamma, beta, 0, 1e-5, 0.0, 1, torch.empty(0))
    deferred = DeferredNorm(raw, scale, shift, masks, relu, reflect)
    written = deferred.materialize(amx)
    assert written.shape == (1, 32, height + 2, width + 2)

    conv = PackedConv(torch.nn.Conv2d(32, 32, 3, stride=stride), torch.bfloat16)
    out_height, out_width = ((side + 2 - 3) // stride + 1 for side in (height, width))
    out_masks = {out_width: soft_mask(generator, out_height, out_width)}
    expected, expected_sums = conv.with_moments(written, out_masks)
    y, sums = conv.with_moments(deferred, out_masks)
    assert torch.equal(y, expected)
    assert torch.equal(sums, expected_sums)
    assert conv.takes_deferred(torch.bfloat16) and not conv.takes_deferred(torch.float32)


def test_a_deferred_norm_is_written_where_the_amx_kernel_does_not_apply(amx) -> None:
    """Too narrow an output for the kernel: the conv of the written result (oneDNN)."""
    generator = torch.Generator().manual_seed(3)
    raw = bf16_image(generator, 32, 6, 12)
    scale, shift = torch.rand(1, 32) + 0.5, torch.randn(1, 32)
    deferred = DeferredNorm(raw, scale, shift, torch.empty(0), True, True)
    conv = PackedConv(torch.nn.Conv2d(32, 32, 3), torch.bfloat16)
    y, sums = conv.with_moments(deferred, None)
    assert sums is None and torch.equal(y, conv(deferred.materialize(amx), shuffle=False))


def test_the_network_gives_the_same_bits_with_its_norms_deferred(
    amx, default_models, astronaut, monkeypatch
) -> None:
    """The 26-style network on the astronaut photo, one region and two: the contracting
    norms applied by the strided convs as they read (fused_norm.DeferredNorm) give the same
    bits as written out first."""
    import cv2

    from partialstyle.weights.files import model_path
    from partialstyle.weights.load import load_weights

    net = load_weights("multistyle26", model_path("multistyle26"), precision="bf16")
    image = cv2.resize(astronaut, (160, 96), interpolation=cv2.INTER_AREA)
    image = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255)
    one = torch.zeros(1, 26)
    one[0, 7] = 1.0
    two = torch.zeros(2, 26)
    two[0, 7], two[1, 19] = 1.0, 1.0
    masks = torch.zeros(1, 2, 96, 160)
    masks[:, 1, 20:80, 40:110] = 1.0  # a soft-edged "person" in the middle
    masks[:, 1] = F.avg_pool2d(masks[:, 1:], 9, stride=1, padding=4)[:, 0]
    masks[:, 0] = 1.0 - masks[:, 1]
    calls = []
    takes = PackedConv.takes_deferred

    def counted(self, dtype):
        calls.append(takes(self, dtype))
        return calls[-1]

    with torch.inference_mode():
        monkeypatch.setattr(PackedConv, "takes_deferred", counted)
        deferred = [net(image, one), net(image, two, masks)]
        monkeypatch.setattr(PackedConv, "takes_deferred", lambda self, dtype: False)
        written = [net(image, one), net(image, two, masks)]
    assert calls.count(True) == 4  # both strided convs, in both calls
    for a, b in zip(deferred, written, strict=True):
        assert torch.equal(a, b)


# The arbitrary network's first two convs, on pixel blocks: the 9x9 one from 3 to 8 channels
# (5x5 on 12 -> 32, its output in blocks, padded by 2 in blocks for the next), and the stride-2
# one from 8 to 16 (2x2 on 32 -> 16 from blocks padded by 2, its output padded by 1).
@pytest.mark.parametrize(("height", "width"), [(38, 70), (36, 64), (34, 98)])
def test_row_conv_writes_the_padded_result(amx, height, width) -> None:
    """amx_row_conv (a kernel row's taps as one run of values) gives oneDNN's conv and the
    padding pass after it, within bf16 rounding."""
    generator = torch.Generator().manual_seed(height + width)
    torch.manual_seed(height * width)
    image = torch.rand(1, 3, height, width, generator=generator)
    first = PackedConv(torch.nn.Conv2d(3, 8, 9), torch.bfloat16, block=2)
    x = fused_norm.padded_input(image, 4, torch.bfloat16, block=2)
    expected = fused_norm.padded_activation(
        amx, first(x, relu=True, shuffle=False), 2, subpixel=True, out_block=2
    )
    padded = first.padded_output(x, 2, out_block=2)
    assert padded.shape == expected.shape == (1, 32, height // 2 + 2, width // 2 + 2)
    assert (
        (padded.float() - expected.float()).abs() <= expected.float().abs() * 2**-7 + 1e-2
    ).all()

    second = PackedConv(torch.nn.Conv2d(8, 16, 3, stride=2), torch.bfloat16, block=2)
    expected = fused_norm.padded_activation(amx, second(padded, relu=True, shuffle=False), 1)
    result = second.padded_output(padded, 1)
    assert result.shape == expected.shape == (1, 16, height // 2 + 2, width // 2 + 2)
    assert result.is_contiguous(memory_format=torch.channels_last)
    assert (
        (result.float() - expected.float()).abs() <= expected.float().abs() * 2**-7 + 1e-2
    ).all()


# The other few-channel convs of the networks: the 26-style network's upsampling conv from 8
# channels, the arbitrary network's stride-2 conv from 16, its upsampling conv from 16 and its
# last 9x9 conv on blocks (12 outputs of a tile's 16).
@pytest.mark.parametrize(
    ("make", "channels", "side"),
    [
        (lambda: PackedConv(torch.nn.Conv2d(8, 4, 3), torch.bfloat16, upsample=True), 8, 3),
        (lambda: PackedConv(torch.nn.Conv2d(16, 32, 3, stride=2), torch.bfloat16), 16, 3),
        (lambda: PackedConv(torch.nn.Conv2d(16, 8, 3), torch.bfloat16, upsample=True), 16, 3),
        (lambda: PackedConv(torch.nn.Conv2d(8, 3, 9), torch.bfloat16, block=2), 32, 5),
    ],
)
@pytest.mark.parametrize("shuffle", [False, True])
def test_row_conv_equals_onednn(amx, monkeypatch, make, channels, side, shuffle) -> None:
    """PackedConv on the AMX row kernel gives oneDNN's conv within bf16 rounding."""
    generator = torch.Generator().manual_seed(channels + side)
    torch.manual_seed(channels * side)
    conv = make()
    x = bf16_image(generator, channels, 37 + side, 41 + side)
    assert conv._row_kernels(x) is not None
    y = conv(x, shuffle=shuffle)
    with monkeypatch.context() as patch:
        patch.setattr(PackedConv, "_row_kernels", lambda self, x: None)
        expected = conv(x, shuffle=shuffle)
    assert y.shape == expected.shape
    assert ((y.float() - expected.float()).abs() <= expected.float().abs() * 2**-7 + 2e-2).all()


def test_row_conv_leaves_other_convs_to_onednn(amx) -> None:
    """Outside the convs it suits, the row kernel says None: 64 outputs, the 32-channel 3x3
    convs (the other AMX kernel's), tile rows under three-quarters full (the 26-style
    network's last conv: 20 of 32) or not splittable (its first: 27 values), fp32, an output
    narrower than 16; and padded_output, a layout the padding pass would change."""
    generator = torch.Generator().manual_seed(1)
    x32 = bf16_image(generator, 32, 20, 40)
    for conv, x in [
        (PackedConv(torch.nn.Conv2d(32, 64, 3), torch.bfloat16), x32),
        (PackedConv(torch.nn.Conv2d(32, 32, 3), torch.bfloat16), x32),
        (
            PackedConv(torch.nn.Conv2d(4, 3, 9), torch.bfloat16, block=2),
            bf16_image(generator, 16, 24, 40),
        ),
        (PackedConv(torch.nn.Conv2d(3, 32, 9), torch.bfloat16), bf16_image(generator, 3, 24, 40)),
    ]:
        assert conv._row_kernels(x) is None and conv.padded_output(x, 1) is None
    first = PackedConv(torch.nn.Conv2d(3, 8, 9), torch.bfloat16, block=2)
    x = bf16_image(generator, 12, 24, 40)
    assert first.padded_output(x, 2, out_block=2) is not None
    assert first.padded_output(x, 2, out_block=1) is None
    assert (
        first.padded_output(x.float().contiguous(memory_format=torch.channels_last), 2, 2) is None
    )
    assert first.padded_output(bf16_image(generator, 12, 24, 18), 2, out_block=2) is None
    with pytest.raises(RuntimeError, match="even chunks"):
        amx.amx_pack_row_weight(torch.randn(32, 3, 9, 9))  # 27 values a kernel row
