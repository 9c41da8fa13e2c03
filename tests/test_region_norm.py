"""Per-region normalisation statistics (issue 9): each region keeps its own look.

The style networks normalise every layer per channel. With statistics over the whole frame, a
region's features were normalised by the other regions' content and style too, so changing the
person's style repainted the background (21-25 levels of 255 on the astronaut frame below, 37-56
on other photos). Each region now has its own mask-weighted statistics.

Distance from the person: a background pixel can still see the person through the network's
receptive field. The 26-style network's reaches 62 px at full resolution (9x9 conv: 4; two
stride-2 3x3 convs: 1 + 2; twelve 3x3 convs at 1/4 size: 48; the two upsampling 3x3 convs: 2 + 1;
the last 9x9: 4), the arbitrary network's 54 px (ten residual convs instead of twelve), and the
region masks are area-averaged to 1/4 size (up to 4 px more). So pixels more than 64 px from any
pixel of the person mask are out of the person's reach; only there must the look not change.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from scipy import ndimage

from partialstyle import compose
from partialstyle.pipeline import Pipeline
from partialstyle.plan import RegionStyle, StylePlan
from partialstyle.style import fused_norm
from partialstyle.style.arbitrary import normalise_region_weights
from partialstyle.style.fused_norm import normalized_regions
from partialstyle.style.multistyle import (
    STATISTICS_PRIOR_PIXELS,
    SpatialCIN,
    region_statistics,
)
from partialstyle.style.region_norm import FastSpatialCIN, RegionSupport
from partialstyle.style.spec import StyleSpec
from partialstyle.weights.load import load_weights

REACH = 64  # px, see the module docstring


def _levels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel mean absolute difference over RGB, in levels of 255."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=-1)


def _out_of_reach(mask: np.ndarray) -> np.ndarray:
    """Pixels more than REACH px from any pixel of the (soft) mask."""
    return ndimage.distance_transform_edt(mask <= 0) > REACH


def _norm_with_styles(channels: int, seed: int) -> SpatialCIN:
    generator = torch.Generator().manual_seed(seed)
    norm = SpatialCIN(channels, num_styles=4)
    with torch.no_grad():
        norm.gamma.copy_(torch.rand(4, channels, generator=generator) + 0.5)
        norm.beta.copy_(torch.randn(4, channels, generator=generator))
    return norm.requires_grad_(False)


def _soft_regions(height: int, width: int) -> torch.Tensor:
    """Three soft regions summing to 1: a blob, a one-pixel speck and the rest."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    distance = ((rows - 0.45 * height) ** 2 + (cols - 0.6 * width) ** 2).sqrt()
    blob = (1.5 - distance / (0.15 * min(height, width))).clamp(0, 1)
    speck = torch.zeros(height, width)
    speck[3, 5] = 0.7 * (1 - blob[3, 5])
    return torch.stack([blob, speck, 1 - blob - speck])[None]


@pytest.fixture(scope="module")
def fused_kernels():
    """The compiled kernels (built on first use; this machine has a C++ compiler)."""
    kernels = fused_norm.kernels(wait=True)
    assert kernels is not None, f"fused kernel build: {fused_norm.status()}"
    return kernels


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_path_equals_the_reference(dtype) -> None:
    """The plain-op inference path (boxes, the derived base region, eval-mode batch norm),
    which runs where the fused kernel is not built, against the reference."""
    norm = _norm_with_styles(32, seed=0)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 32, 45, 80, generator=generator) * 2 + torch.rand(1, 32, 1, 1) * 3
    x = x.to(dtype, memory_format=torch.channels_last)
    masks = _soft_regions(45, 80).to(dtype)
    weights = torch.eye(4)[:3]
    support = RegionSupport.of(masks)
    assert support.base == 2 and support.boxes[1] == (3, 4, 5, 6)
    with torch.inference_mode(), fused_norm.disabled():
        fast = FastSpatialCIN.from_reference(norm)(x, weights, masks, support=support).float()
    reference = norm(x.float(), weights, masks.float())
    # bf16: the output itself is rounded to 8 bits of mantissa (values up to about 5).
    tolerance = 1e-4 if dtype == torch.float32 else 0.04
    assert (fast - reference).abs().max() <= tolerance
    assert (fast - reference).abs().mean() <= tolerance / 10


def test_regions_normalise_apart_and_a_speck_falls_back_to_the_whole_image() -> None:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(1, 8, 60, 60, generator=generator)
    masks = _soft_regions(60, 60)
    mean, var = region_statistics(x, masks)
    # Changing the content of the blob's core leaves the rest's statistics nearly alone:
    # only the prior's 64 pixels (against about 3300) see the whole image.
    shifted = x + 4 * (masks[:, :1] == 1)
    mean_shifted, var_shifted = region_statistics(shifted, masks)
    assert (mean_shifted[0, 0] - mean[0, 0]).abs().min() > 0.5
    assert (mean_shifted[0, 2] - mean[0, 2]).abs().max() < 0.1
    assert (var_shifted[0, 2] / var[0, 2] - 1).abs().max() < 0.1
    # The speck weighs 0.7 of a pixel against the prior's 64: the whole image's statistics.
    var_all, mean_all = torch.var_mean(x, dim=(2, 3), unbiased=False)
    assert masks[0, 1].sum() < 0.02 * STATISTICS_PRIOR_PIXELS
    assert torch.allclose(mean[0, 1], mean_all[0], atol=0.05)
    # (one pixel d standard deviations out moves the variance by about d²/65)
    assert torch.allclose(var[0, 1], var_all[0], rtol=0.1)


def test_one_style_everywhere_ignores_the_regions(default_models, fused_kernels) -> None:
    """Regions given the same style share statistics: a plain forward, exactly."""
    from partialstyle.weights.model_cache import load_model

    net = load_model("multistyle26", torch.device("cpu"))
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    mix = torch.zeros(1, 26)
    mix[0, 5] = 1.0
    masks = _soft_regions(64, 96)
    with torch.inference_mode():
        plain = net(image, mix)
        regions = net(image, mix.repeat(3, 1), masks)
        apart = net(image, mix.repeat(3, 1), masks, share_repeated_styles=False)
    assert torch.equal(plain, regions)
    assert (apart - plain).abs().mean() > 1e-3  # own statistics do change the look


def _style(spec: str) -> RegionStyle:
    return RegionStyle(StyleSpec.parse(spec))


@pytest.fixture(scope="module")
def style_pictures(tmp_path_factory) -> dict[str, str]:
    """Real pictures to take arbitrary styles from."""
    folder = tmp_path_factory.mktemp("styles")
    paths = {}
    for name in ("immunohistochemistry", "hubble_deep_field", "coffee", "chelsea"):
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), getattr(skimage.data, name)()[..., ::-1])
        paths[name] = f"arbitrary:{path}"
    return paths


@pytest.mark.usefixtures("default_models")
@pytest.mark.parametrize("kind", ["multistyle", "arbitrary"])
def test_background_keeps_its_look_whatever_the_person_style(
    astronaut_wide, style_pictures, kind
) -> None:
    """Measured on this frame: 21-25 levels before per-region statistics, 1.5-1.8 after
    (multistyle); arbitrary 12-17 before, 0.5-0.9 after."""
    if kind == "multistyle":
        background, people = "multistyle:19", ["multistyle:7", "multistyle:2", "multistyle:12"]
    else:
        background = style_pictures["immunohistochemistry"]
        people = [style_pictures[name] for name in ("hubble_deep_field", "coffee", "chelsea")]
    mask = Pipeline().person_mask(astronaut_wide)
    far, inside = _out_of_reach(mask), mask > 0.99
    assert far.sum() > 50_000 and inside.sum() > 20_000
    outputs = [
        Pipeline(plan=StylePlan.from_specs(person, background)).process(astronaut_wide)
        for person in people
    ]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            difference = _levels(outputs[i], outputs[j])
            assert difference[inside].mean() > 20, "the person styles must really differ"
            assert difference[far].mean() < 4
            assert np.percentile(difference[far], 99) < 16


@pytest.mark.usefixtures("default_models")
def test_background_alone_in_its_style_looks_the_same_as_beside_a_styled_person(
    astronaut_wide,
) -> None:
    """A person left as they are (`none`) or painted by another network: the background's
    pass then covers only the background, and is normalised over it the same way."""
    mask = Pipeline().person_mask(astronaut_wide)
    far = _out_of_reach(mask)
    alone = Pipeline(plan=StylePlan.from_specs("none", "multistyle:19")).process(astronaut_wide)
    beside = Pipeline(plan=StylePlan.from_specs("multistyle:7", "multistyle:19")).process(
        astronaut_wide
    )
    assert _levels(alone, beside)[far].mean() < 4


@pytest.fixture(scope="module")
def two_people(astronaut) -> np.ndarray:
    """Two real people side by side, apart (a 608×256 frame)."""
    person = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    gap = np.full((256, 96, 3), 200, np.uint8)
    return np.ascontiguousarray(np.hstack([person, gap, person]))


@pytest.mark.usefixtures("default_models")
def test_one_persons_style_does_not_change_the_other(two_people) -> None:
    """Person 2 away from person 1's reach, whatever person 1's style: measured 9.8-13.9
    levels before per-region statistics, 0.4-0.6 after."""
    mask = Pipeline().person_mask(two_people)
    first = mask.copy()
    first[:, 304:] = 0
    second = mask.copy()
    second[:, :304] = 0
    watched = (second > 0.99) & _out_of_reach(first)
    assert watched.sum() > 10_000
    outputs = []
    for style in ("multistyle:7", "multistyle:2", "multistyle:12"):
        regions = {
            "person": _style(style),
            "person:2": _style("multistyle:20"),
            "background": _style("multistyle:19"),
        }
        outputs.append(Pipeline(plan=StylePlan.from_regions(regions)).process(two_people))
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            difference = _levels(outputs[i], outputs[j])
            assert difference[first > 0.99].mean() > 20, "person 1's styles must differ"
            assert difference[watched].mean() < 4


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("regions", [0, 2, 3])
@pytest.mark.parametrize(
    ("relu", "residual", "pad", "mode"),
    [(True, False, 1, "reflect"), (False, True, 4, "reflect"), (True, True, 1, "replicate")],
)
@pytest.mark.parametrize("channels", [32, 5])  # whole vectors a pixel, and an odd count
def test_fused_kernel_equals_the_reference(
    fused_kernels, dtype, regions, relu, residual, pad, mode, channels
) -> None:
    """Statistics, blended affine, ReLU, residual and padding against plain ops."""
    norm = _norm_with_styles(channels, seed=4)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(1, channels, 45, 80, generator=generator) * 2 + 1.5
    x = x.to(dtype, memory_format=torch.channels_last)
    skip = torch.randn(1, channels, 47, 82, generator=generator).to(dtype)
    skip = skip.contiguous(memory_format=torch.channels_last)[..., 1:-1, 1:-1]  # strided view
    masks = None if regions == 0 else _soft_regions(45, 80)[:, 3 - regions :]
    if regions == 2:  # two regions summing to 1
        masks = torch.cat([masks[:, :1], 1 - masks[:, :1]], dim=1)
    weights = torch.eye(4)[: max(regions, 1)]
    with torch.inference_mode():
        fused = FastSpatialCIN.from_reference(norm)(
            x,
            weights,
            masks,
            relu=relu,
            residual=skip if residual else None,
            out_pad=pad,
            pad_mode=mode,
        )
    expected = norm(x.float(), weights, masks)
    if relu:
        expected = expected.relu()
    if residual:
        expected = expected + skip.float()
    expected = F.pad(expected, [pad] * 4, mode=mode)
    assert fused.dtype == dtype and fused.shape == expected.shape
    assert fused.is_contiguous(memory_format=torch.channels_last)
    error = (fused.float() - expected).abs()
    # bf16: the result is rounded to 8 bits of mantissa (values up to about 10).
    assert error.max() <= (2e-5 if dtype == torch.float32 else 0.04)


@pytest.mark.usefixtures("default_models")
def test_fast_network_stays_close_to_exact_fp32(fused_kernels, astronaut_wide) -> None:
    """The fused bf16 network, the plain-op bf16 network and the exact fp32 network on a real
    frame with the real person mask: within 0.003 mean (0-1 scale) of exact fp32."""
    from safetensors.torch import load_file

    from partialstyle.style.multistyle import MultiStyleNet
    from partialstyle.weights.files import model_path

    image = torch.from_numpy(astronaut_wide).permute(2, 0, 1)[None].float() / 255
    person = torch.from_numpy(Pipeline().person_mask(astronaut_wide))
    masks = torch.stack([1 - person, person])[None]
    styles = torch.zeros(2, 26)
    styles[0, 19], styles[1, 7] = 1.0, 1.0
    exact = load_weights("multistyle26", model_path("multistyle26"), precision="fp32")
    fast = load_weights("multistyle26", model_path("multistyle26"), precision="bf16")
    plain = MultiStyleNet()
    plain.load_state_dict(load_file(str(model_path("multistyle26"))), strict=True)
    for args in ((image, styles[:1]), (image, styles, masks)):
        with torch.inference_mode():
            fused_fp32, fused_bf16 = exact(*args), fast(*args)
            with fused_norm.disabled():
                plain_fp32, plain_bf16 = exact(*args), fast(*args)
        with torch.inference_mode():  # the reference network: the definition, plain ops
            reference = plain(*args)
        assert (plain_fp32 - reference).abs().max() < 1e-3
        assert (fused_fp32 - reference).abs().max() < 1e-3
        for approx in (fused_bf16, plain_bf16):
            assert (approx - reference).abs().mean() < 0.003


def test_without_a_compiler_the_plain_ops_run(tmp_path) -> None:
    """A machine without a C++ compiler: the build fails quietly, the network still works."""
    import os
    import subprocess
    import sys

    script = (
        "import torch\n"
        "from partialstyle.style import fused_norm\n"
        "from partialstyle.style.region_norm import FastSpatialCIN\n"
        "assert fused_norm.kernels(wait=True) is None\n"
        "print(fused_norm.status())\n"
        "norm = FastSpatialCIN(4, num_styles=2)\n"
        "masks = torch.rand(1, 1, 8, 8)\n"
        "with torch.inference_mode():\n"
        "    out = norm(torch.randn(1, 4, 8, 8), torch.eye(2), torch.cat([masks, 1 - masks], 1))\n"
        "print(tuple(out.shape))\n"
    )
    environment = {
        **os.environ,
        "CXX": str(tmp_path / "no-compiler"),
        # Nowhere a kernel was built before (see kernel_dir), so it must be compiled.
        "PARTIALSTYLE_KERNEL_DIR": str(tmp_path / "kernels"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    status, shape = result.stdout.strip().splitlines()
    assert status.startswith("failed: ") and shape == "(1, 4, 8, 8)"
    assert "WARNING" not in result.stderr  # the builder's warnings stay out of the terminal


@pytest.mark.parametrize(
    ("sizes", "largest"), [((1, 3, 1), 1), ((3, 1, 1), 0), ((1, 1, 3), 2), ((1, 3), 1), ((3, 1), 0)]
)
def test_fused_mask_pyramid_equals_pooling(fused_kernels, sizes, largest) -> None:
    """The one-pass pyramid: the largest region as base, the others' masks at 1, 1/2, 1/4.
    With the base first or last (two regions always) the full-size masks are a view."""
    generator = torch.Generator().manual_seed(6)
    weights = torch.tensor(sizes, dtype=torch.float32)[:, None, None]
    masks = torch.rand(1, len(sizes), 40, 64, generator=generator) * weights
    masks = masks / masks.sum(dim=1, keepdim=True)
    base, full, half, quarter = fused_kernels.mask_pyramid(masks)
    assert int(base) == largest
    others = masks[:, [r for r in range(len(sizes)) if r != largest]]
    assert torch.equal(full, others) and full.is_contiguous()
    is_view = full.untyped_storage().data_ptr() == masks.untyped_storage().data_ptr()
    assert is_view == (largest in (0, len(sizes) - 1))
    assert torch.allclose(half, F.avg_pool2d(others, 2), atol=1e-6)
    assert torch.allclose(quarter, F.avg_pool2d(F.avg_pool2d(others, 2), 2), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
# Pixel rows from the subpixel layout: permutes for 2, 4 and 8 channels, a gather for 3. With
# two regions the masks come in vectors from the mask rows (QuadMasks) where a z row is whole
# periods of lcm(4C, 16) values (always but for 3 channels 14 wide), else from an expanded row.
@pytest.mark.parametrize(
    ("channels", "pad", "block", "width"),
    [(8, 1, 1, 14), (4, 4, 2, 14), (3, 0, 1, 14), (3, 0, 1, 16), (4, 1, 2, 14), (2, 1, 1, 14)]
    + [(4, 2, 1, 14)],
)
@pytest.mark.parametrize("regions", [1, 2])
def test_fused_subpixel_input_and_blocked_output(
    fused_kernels, dtype, channels, pad, block, width, regions
):
    """The kernel reading an upsampling conv's output before pixel_shuffle, and writing its
    padded result in 2x2 blocks, equals shuffling, normalising, padding and unshuffling,
    with one region (the plain statistics) and two."""
    generator = torch.Generator().manual_seed(channels + pad + width)
    z = torch.randn(1, 4 * channels, 10, width, generator=generator).to(dtype)
    z = z.contiguous(memory_format=torch.channels_last)
    masks = torch.rand(1, 2, 20, 2 * width, generator=generator)
    masks[..., :6, :] = 0.0  # rows no other region reaches take the base's rows
    masks = masks / (1.0 + masks.sum(dim=1, keepdim=True))
    others = masks[:, 1:].contiguous() if regions == 2 else None
    gamma = torch.rand(regions, channels, generator=generator) + 0.5
    beta = torch.randn(regions, channels, generator=generator)
    normalise = functools.partial(
        fused_norm.fused_region_norm,
        fused_kernels,
        gamma=gamma,
        beta=beta,
        other_masks=others,
        base=0 if regions == 2 else None,
        eps=1e-5,
        relu=True,
        out_pad=pad,
    )
    fused = normalise(z, subpixel=True, out_block=block)
    expected = normalise(F.pixel_shuffle(z, 2).contiguous(memory_format=torch.channels_last))
    if block > 1:
        expected = F.pixel_unshuffle(expected, block)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    assert fused.shape == expected.shape
    assert torch.allclose(fused.float(), expected.float(), atol=tolerance)


def _rgb_frame_view(height: int, width: int) -> torch.Tensor:
    """An fp32 image [1,3,H,W] viewed from an RGB frame, as the pipeline hands one over."""
    generator = torch.Generator().manual_seed(height)
    rgb = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return rgb.permute(2, 0, 1)[None].float().div(255.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("block", [1, 2])
@pytest.mark.parametrize("layout", ["frame view", "planar"])
def test_network_input_in_one_pass(fused_kernels, dtype, block, layout) -> None:
    """The kernel's padded (and blocked) network input is bit for bit what torch ops make."""
    image = _rgb_frame_view(36, 52)
    image = image if layout == "frame view" else image.contiguous()
    made = fused_norm.padded_input(image, 4, dtype, block=block)
    expected = F.pad(image, [4] * 4, mode="reflect").to(dtype)
    if block > 1:
        expected = F.pixel_unshuffle(expected, block)
    assert made.is_contiguous(memory_format=torch.channels_last)
    assert made.dtype == dtype and torch.equal(made, expected)


@pytest.mark.parametrize("subpixel", [False, True])
def test_padded_activation_equals_shuffle_and_pad(fused_kernels, subpixel) -> None:
    generator = torch.Generator().manual_seed(9)
    y = torch.randn(1, 12 if subpixel else 8, 10, 14, generator=generator).to(torch.bfloat16)
    y = y.contiguous(memory_format=torch.channels_last)
    made = fused_norm.padded_activation(fused_kernels, y, 1, subpixel=subpixel)
    expected = F.pad(F.pixel_shuffle(y, 2) if subpixel else y, [1] * 4, mode="reflect")
    assert torch.equal(made, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sigmoid_output_matches_torch(fused_kernels, dtype) -> None:
    """The network's last step (crop, fp32, sigmoid) in one pass, over the whole range."""
    generator = torch.Generator().manual_seed(10)
    x = torch.randn(1, 3, 24, 40, generator=generator) * 6
    x[0, :, 0, :13] = torch.tensor([-1e4, -100, -88, -30, -1, -1e-3, 0, 1e-3, 1, 30, 88, 100, 1e4])
    x = x.to(dtype, memory_format=torch.channels_last)
    made = fused_norm.sigmoid_output(x, 20, 36)
    expected = x[..., :20, :36].float().sigmoid()
    assert made.dtype == torch.float32 and made.shape == expected.shape
    assert made.is_contiguous(memory_format=torch.channels_last)
    assert (made - expected).abs().max() <= 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("regions", [1, 2, 3])
def test_sigmoid_output_as_a_premultiplied_layer(fused_kernels, dtype, regions) -> None:
    """Given the weights the image is shown with, the last step makes the premultiplied
    layer itself: bit for bit what compositing makes of the sigmoid's image (the kernel),
    and what the torch ops make of it; weights in any layout."""
    generator = torch.Generator().manual_seed(12)
    x = (torch.randn(1, 3, 24, 40, generator=generator) * 6).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    weights = [torch.rand(36, 20, generator=generator).t() for _ in range(regions)]
    layer = fused_norm.sigmoid_output(x, 20, 36, weights)
    image = fused_norm.sigmoid_output(x, 20, 36)[0]
    assert layer.shape == (1, 4, 20, 36) and layer.dtype == torch.float32
    expected = compose.premultiplied_layer(image, [(image, weight) for weight in weights])
    assert torch.equal(layer[0], expected)
    with fused_norm.disabled():
        image = fused_norm.sigmoid_output(x, 20, 36)[0]
        expected = compose.premultiplied_layer(image, [(image, weight) for weight in weights])
        assert torch.equal(fused_norm.sigmoid_output(x, 20, 36, weights)[0], expected)


def test_normalized_regions_kernel_equals_the_torch_ops(fused_kernels) -> None:
    """Region masks made to sum to 1 in one pass: each over their sum, or shared equally
    where no region shows; masks in any layout."""
    generator = torch.Generator().manual_seed(11)
    person = torch.rand(30, 40, generator=generator)
    wall = torch.rand(40, 30, generator=generator).t()  # a transposed view
    person[:5], wall[:5] = 0.0, 0.0
    wall[5] = -wall[5]  # negative values count as 0
    made = normalized_regions((person, wall))
    with fused_norm.disabled():
        expected = normalized_regions((person, wall))
    assert made.shape == (1, 2, 30, 40) and torch.equal(made, expected)
    assert torch.equal(made[0, :, :5], torch.full((2, 5, 40), 0.5))


def test_arbitrary_region_weights_kernel_equals_the_torch_ops(fused_kernels) -> None:
    """The arbitrary network's region weights ([N,R,H,W]) take the same kernel for one
    image: negative weights count as 0, and pixels where no region shows are shared."""
    generator = torch.Generator().manual_seed(13)
    masks = torch.randn(1, 3, 20, 24, generator=generator)
    masks[..., :4, :] = 0.0
    masks[..., 4:6, :] = -masks[..., 4:6, :].abs()  # all negative: shared too
    made = normalise_region_weights(masks)
    with fused_norm.disabled():
        expected = normalise_region_weights(masks)
    assert made.shape == masks.shape
    assert torch.allclose(made, expected, atol=1e-6)
    assert torch.equal(made[..., :6, :], torch.full((1, 3, 6, 24), 1 / 3))
    assert torch.allclose(made.sum(dim=1), torch.ones(1, 20, 24), atol=1e-6)
    assert made.min() >= 0.0


def test_normalized_regions_of_a_mask_and_its_background(fused_kernels) -> None:
    """A mask and 1 - mask sum to exactly 1 in float32 (so the kernel copies those rows):
    the result is the masks themselves, bit for bit as the torch ops give it, and rows that
    do not sum to 1 are still divided."""
    generator = torch.Generator().manual_seed(12)
    person = torch.rand(1 << 20, generator=generator)
    assert torch.equal(person + (1.0 - person), torch.ones_like(person))
    person = person[: 40 * 64].view(40, 64)
    background = 1.0 - person
    background[7] *= 0.5  # one row that does not fill the frame
    made = normalized_regions((person, background))
    with fused_norm.disabled():
        expected = normalized_regions((person, background))
    assert torch.equal(made, expected)
    rows = [r for r in range(40) if r != 7]
    assert torch.equal(made[0, 0, rows], person[rows]) and torch.equal(
        made[0, 1, rows], background[rows]
    )
    assert not torch.equal(made[0, 1, 7], background[7])
