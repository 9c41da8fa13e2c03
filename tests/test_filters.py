"""Image filters used by mask refinement and edge-aware upsampling."""

import cv2
import pytest
import torch
import torch.nn.functional as F

from partialstyle.filters import (
    box_filter,
    downsample_area,
    gaussian_blur,
    guided_filter,
    guided_upsample,
    upsample_bilinear,
)
from partialstyle.layers import BT601_LUMA, luminance
from partialstyle.segment.refine import _half_resolution_inputs, refine_mask
from partialstyle.style import fused_norm


@pytest.mark.parametrize("radius", [1, 2, 7, 20])
def test_box_filter_equals_border_normalised_average_pooling(radius):
    x = torch.rand(2, 3, 41, 67)
    reference = F.avg_pool2d(x, 2 * radius + 1, 1, radius, count_include_pad=False)
    assert torch.allclose(box_filter(x, radius), reference, atol=1e-5)


def test_guided_filter_keeps_an_edge_that_a_blur_smears():
    guide = torch.zeros(1, 1, 40, 40)
    guide[..., 20:] = 1.0  # a sharp vertical edge
    noisy = guide + 0.1 * torch.randn_like(guide)
    filtered = guided_filter(guide, noisy, radius=4, eps=1e-3)
    blurred = gaussian_blur(noisy, 3.0)
    edge_step = filtered[..., 21].mean() - filtered[..., 18].mean()
    assert edge_step > 0.9  # the edge survives
    assert blurred[..., 21].mean() - blurred[..., 18].mean() < 0.7
    assert (filtered - guide).abs().mean() < (noisy - guide).abs().mean()


def test_guided_upsample_takes_edges_from_the_full_resolution_guide():
    full = torch.zeros(1, 1, 64, 64)
    full[..., 33:] = 1.0  # an edge that falls between low-resolution pixels
    small = F.interpolate(full, size=(16, 16), mode="area")
    source = torch.cat([small, 1.0 - small, 0.5 * small], dim=1)
    sharp = guided_upsample(small, source, full, radius=2, eps=1e-4)
    soft = F.interpolate(source, size=(64, 64), mode="bilinear")
    target = torch.cat([full, 1.0 - full, 0.5 * full], dim=1)
    assert (sharp - target).abs().mean() < 0.5 * (soft - target).abs().mean()


def test_constant_images_pass_through():
    guide = torch.rand(1, 1, 30, 30)
    constant = torch.full((1, 3, 30, 30), 0.25)
    assert torch.allclose(guided_filter(guide, constant, 3, 1e-3), constant, atol=1e-5)
    assert torch.allclose(gaussian_blur(constant, 2.0), constant, atol=1e-6)
    small_guide = F.interpolate(guide, size=(10, 10), mode="area")
    up = guided_upsample(small_guide, constant[..., :10, :10], guide, 2, 1e-3)
    assert torch.allclose(up, torch.full((1, 3, 30, 30), 0.25), atol=1e-4)


@pytest.mark.parametrize("size", [(90, 160), (180, 320), (361, 641)])
def test_opencv_resizes_match_torch(size):
    """On the CPU, resizes go through OpenCV; torch's own resizes (other devices) are the
    reference: bilinear growth alike to float rounding, area shrink alike at whole factors."""
    x = torch.rand(1, 2, 45, 80)
    grown = upsample_bilinear(x, size)
    torch.testing.assert_close(
        grown, F.interpolate(x, size=size, mode="bilinear", align_corners=False), atol=1e-5, rtol=0
    )
    big = torch.rand(1, 2, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(
        downsample_area(big, size), F.interpolate(big, size=size, mode="area"), atol=1e-5, rtol=0
    )
    assert upsample_bilinear(x, (45, 80)) is x


def test_luminance_of_a_frame_view_equals_the_planar_one():
    """BT.601 luma through OpenCV on a view of RGB pixels, as through torch on planes."""
    generator = torch.Generator().manual_seed(4)
    pixels = torch.rand(30, 40, 3, generator=generator)
    view = pixels.permute(2, 0, 1)  # how the pipeline hands a frame over
    planar = view.contiguous()
    red, green, blue = BT601_LUMA
    expected = planar[0] * red + planar[1] * green + planar[2] * blue
    assert luminance(view).shape == (30, 40)
    assert (luminance(view) - expected).abs().max() <= 1e-6
    assert (luminance(planar) - expected).abs().max() <= 1e-6


@pytest.fixture(scope="module")
def frame_kernels():
    """The compiled frame kernels (built on first use; this machine has a C++ compiler)."""
    kernels = fused_norm.kernels(wait=True)
    assert kernels is not None, f"kernel build: {fused_norm.status()}"
    return kernels


@pytest.mark.parametrize(
    ("small", "full", "radius", "channels", "blur"),
    [
        ((180, 320), (360, 640), 2, 1, 1.0),
        ((45, 81), (91, 163), 3, 3, 0.0),
        ((45, 81), (91, 163), 3, 3, 2.6),
        ((7, 9), (15, 20), 1, 2, 1.5),
        ((30, 100), (90, 1000), 2, 1, 0.7),
        ((60, 70), (61, 71), 1, 1, 0.0),
        ((3, 40), (5, 80), 1, 1, 4.0),
    ],
)
def test_guided_upsample_kernel_equals_the_torch_ops(
    frame_kernels, small, full, radius, channels, blur
):
    """The one-pass guided upsampling gives what its torch and OpenCV definition gives, at
    the pipeline's size, at odd sizes and scales, with several source channels, and with the
    feather's Gaussian blur made in the same pass (replicated edges; a blur wider than the
    image is cut as OpenCV's is)."""
    generator = torch.Generator().manual_seed(5)
    guide = torch.rand(1, 1, *full, generator=generator)
    guide_small = F.interpolate(guide, size=small, mode="area")
    source = torch.rand(1, channels, *small, generator=generator).round_()  # mask-like
    fast = guided_upsample(guide_small, source, guide, radius, 1e-3, blur)
    with fused_norm.disabled():
        reference = guided_upsample(guide_small, source, guide, radius, 1e-3, blur)
    assert fast.shape == reference.shape == (1, channels, *full)
    assert (fast - reference).abs().max() < 1e-5


@pytest.mark.parametrize("layout", ["pixels", "planes"])
def test_refinement_inputs_in_one_pass_equal_the_torch_ops(frame_kernels, astronaut, layout):
    """Mask refinement's luma and half-size guide and mask come from one pass of the kernel:
    the same as the torch and OpenCV ops within float rounding, and so is the refined mask."""
    frame = torch.from_numpy(astronaut[:360, :480].copy()).float().div(255.0)
    image = frame.permute(2, 0, 1)  # how the pipeline hands a frame over
    if layout == "planes":
        image = image.contiguous()
    rows = torch.linspace(-1.0, 1.0, 360)[:, None]
    columns = torch.linspace(-1.0, 1.0, 480)[None, :]
    probability = torch.sigmoid(8.0 * (0.6 - rows**2 - columns**2))  # a soft blob
    fast = _half_resolution_inputs(probability, image, 0.5)
    refined = refine_mask(probability, image, 0.5, 2.0, edge_refine=True)
    with fused_norm.disabled():
        reference = _half_resolution_inputs(probability, image, 0.5)
        expected = refine_mask(probability, image, 0.5, 2.0, edge_refine=True)
    for got, want in zip(fast, reference, strict=True):
        assert got.shape == want.shape
        assert (got - want).abs().max() < 1e-6
    assert (refined - expected).abs().max() < 1e-5
    assert 0.2 < refined.mean() < 0.8  # a real mask, neither empty nor full


@pytest.fixture()
def opencv_without_ipp():
    """OpenCV's own resize code: for float images cv2.resize otherwise calls Intel's IPP,
    whose bilinear positions differ by up to 1e-5 (so do torch's)."""
    used = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    yield
    cv2.ipp.setUseIPP(used)


@pytest.mark.parametrize("model_size", [(144, 256), (256, 256), (360, 480), (1, 3)])
def test_refinement_scales_the_segmenters_output_in_its_first_pass(
    frame_kernels, opencv_without_ipp, astronaut, model_size
):
    """Given the segmenter's own (smaller, or any) output, the kernel scales it up on the
    way: what OpenCV's bilinear resize and then the same pass give. The refined mask is
    what the torch ops give within the resizes' difference."""
    frame = torch.from_numpy(astronaut[:360, :480].copy()).float().div(255.0)
    image = frame.permute(2, 0, 1)
    noise = torch.rand(model_size, generator=torch.Generator().manual_seed(0))
    scaled = torch.from_numpy(cv2.resize(noise.numpy(), (480, 360), interpolation=cv2.INTER_LINEAR))
    fast = _half_resolution_inputs(noise, image, 0.5)
    for got, want in zip(fast, _half_resolution_inputs(scaled, image, 0.5), strict=True):
        assert got.shape == want.shape
        assert (got - want).abs().max() < 1e-6

    rows = torch.linspace(-1.0, 1.0, model_size[0])[:, None]
    columns = torch.linspace(-1.0, 1.0, model_size[1])[None, :]
    blob = torch.sigmoid(8.0 * (0.6 - rows**2 - columns**2))
    refined = refine_mask(blob, image, 0.5, 2.0, edge_refine=True)
    with fused_norm.disabled():
        expected = refine_mask(blob, image, 0.5, 2.0, edge_refine=True)
    assert (refined - expected).abs().max() < 1e-4
    if model_size != (1, 3):
        assert 0.2 < refined.mean() < 0.8
