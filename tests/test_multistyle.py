"""MultiStyleNet against onnxruntime on the original ONNX, spatial CIN, conversion, errors."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from partialstyle.errors import ModelMissingError
from partialstyle.style import fused_norm
from partialstyle.style.fast_conv import (
    PackedConv,
    blocked_weight,
    even_pad,
    strided_blocked_weight,
    subpixel_weight,
)
from partialstyle.style.multistyle import (
    STATISTICS_PRIOR_PIXELS,
    MultiStyleNet,
    SpatialCIN,
)
from partialstyle.style.multistyle_fast import FastMultiStyleNet
from partialstyle.style.names import NUM_MULTISTYLE
from partialstyle.weights.convert_multistyle import ConversionError, convert_multistyle
from partialstyle.weights.files import model_path
from partialstyle.weights.load import load_weights
from partialstyle.weights.prepare import source_file


@pytest.fixture(scope="module")
def onnx_path(default_models) -> Path:
    """The source ONNX model from the model store (fetched if this machine lacks it)."""
    return source_file("multistyle26")


@pytest.fixture(scope="module")
def weights_path(default_models) -> Path:
    """The converted weights from the model store."""
    return model_path("multistyle26")


@pytest.fixture(scope="module")
def net(weights_path: Path) -> FastMultiStyleNet:
    """The fast inference network, as the pipeline loads it (exact fp32)."""
    return load_weights("multistyle26", weights_path, precision="fp32")


@pytest.fixture(scope="module")
def reference(weights_path: Path) -> MultiStyleNet:
    """The plain reference network with the same weights."""
    from safetensors.torch import load_file

    network = MultiStyleNet()
    network.load_state_dict(load_file(str(weights_path)), strict=True)
    return network.eval()


@pytest.fixture(scope="module")
def session(onnx_path: Path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


def photo(height: int, width: int) -> torch.Tensor:
    """skimage's astronaut photo, area-resized, as [1,3,H,W] in [0,1]."""
    cv2 = pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    image = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255)


def style_mix(weights: dict[int, float]) -> torch.Tensor:
    row = torch.zeros(1, NUM_MULTISTYLE)
    for index, value in weights.items():
        row[0, index] = value
    return row / row.sum()


def run_onnx(session, image: torch.Tensor, mix: torch.Tensor) -> np.ndarray:
    """The source package's own recipe: reflect-pad bottom/right to a multiple of 4, crop."""
    h, w = image.shape[-2:]
    padded = np.pad(image.numpy(), ((0, 0), (0, 0), (0, -h % 4), (0, -w % 4)), mode="reflect")
    out = session.run(None, {"image": padded, "style_weights": mix[0].numpy()})[0]
    return out[..., :h, :w]


@pytest.mark.parametrize("network", ["reference", "net"])
@pytest.mark.parametrize("size", [(160, 160), (123, 77)])
@pytest.mark.parametrize("mix", [{7: 1.0}, {3: 0.25, 12: 0.5, 20: 0.25}])
def test_matches_onnxruntime(request, network, session, size, mix) -> None:
    """The reference network and the fast one built from its weights, both against onnxruntime."""
    image, weights = photo(*size), style_mix(mix)
    with torch.inference_mode():
        ours = request.getfixturevalue(network)(image, weights)
    assert ours.shape == image.shape
    reference = run_onnx(session, image, weights)
    assert np.abs(ours.numpy() - reference).max() <= 1e-4
    # The stylized image really differs from the input (the model did something).
    assert (ours - image).abs().mean() > 0.05


def test_same_style_in_every_region_equals_plain_forward(net) -> None:
    image = photo(96, 128)
    weights = style_mix({5: 0.6, 9: 0.4})
    soft = torch.rand(1, 1, 96, 128)
    masks = torch.cat([soft, 1 - soft], dim=1)
    with torch.inference_mode():
        plain = net(image, weights)
        spatial = net(image, weights.repeat(2, 1), masks)
    assert (plain - spatial).abs().max() <= 1e-5


def test_left_right_regions_follow_their_styles(net) -> None:
    image = photo(128, 192)
    style_a, style_b = style_mix({2: 1.0}), style_mix({17: 1.0})
    masks = torch.zeros(1, 2, 128, 192)
    masks[:, 0, :, :96] = 1
    masks[:, 1, :, 96:] = 1
    with torch.inference_mode():
        plain_a, plain_b = net(image, style_a), net(image, style_b)
        split = net(image, torch.cat([style_a, style_b]), masks)
    assert (plain_a - plain_b).abs().mean() > 0.05, "the two test styles must differ"
    left, right = split[..., :, :80], split[..., :, 112:]
    err = lambda out, ref: (out - ref).abs().mean().item()  # noqa: E731
    assert err(left, plain_a[..., :80]) < 0.75 * err(left, plain_b[..., :80])
    assert err(right, plain_b[..., 112:]) < 0.75 * err(right, plain_a[..., 112:])


def test_spatial_cin_normalises_each_region_with_its_own_statistics() -> None:
    """Against the definition written out by hand: each half's mean and variance, pooled with
    STATISTICS_PRIOR_PIXELS pixels of the whole image's distribution."""
    norm = SpatialCIN(4, num_styles=3)
    with torch.no_grad():
        norm.gamma.copy_(torch.rand(3, 4) + 0.5)
        norm.beta.copy_(torch.randn(3, 4))
    x = torch.randn(2, 4, 16, 24) * 3 + 1
    x[..., 12:] = x[..., 12:] * 4 - 5  # the right half has quite other statistics
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    masks = torch.zeros(2, 2, 16, 24)
    masks[:, 0, :, :12], masks[:, 1, :, 12:] = 1, 1
    out = norm(x, weights, masks)
    prior = STATISTICS_PRIOR_PIXELS
    var_all, mean_all = torch.var_mean(x, dim=(2, 3), unbiased=False, keepdim=True)
    gamma, beta = weights @ norm.gamma, weights @ norm.beta
    for r, columns in enumerate((slice(0, 12), slice(12, 24))):
        half = x[..., columns]
        count = half[0, 0].numel()
        mean = (half.sum(dim=(2, 3), keepdim=True) + prior * mean_all) / (count + prior)
        spread = ((half - mean) ** 2).sum(dim=(2, 3), keepdim=True)
        var = (spread + prior * (var_all + (mean_all - mean) ** 2)) / (count + prior)
        expected = (half - mean) / torch.sqrt(var + 1e-5) * gamma[r, :, None, None]
        assert torch.allclose(out[..., columns], expected + beta[r, :, None, None], atol=1e-5)
    # The whole image's statistics would give something else.
    whole = F.instance_norm(x, eps=1e-5)[..., :12] * gamma[0, :, None, None]
    assert (out[..., :12] - whole - beta[0, :, None, None]).abs().mean() > 0.1


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (4, 4), (5, 2), (3, 5), (5, 5), (9, 6)])
def test_tiny_images(net, size) -> None:
    image = torch.rand(1, 3, *size)
    with torch.inference_mode():
        out = net(image, style_mix({0: 1.0}))
        masks = torch.stack([torch.ones(1, *size), torch.zeros(1, *size)], dim=1)
        split = net(image, style_mix({0: 1.0}).repeat(2, 1), masks)
    assert out.shape == image.shape
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    if size != (1, 1):  # a constant frame: every norm divides rounding noise by sqrt(eps)
        assert (out - split).abs().max() <= 1e-5


def test_batch_of_images_is_normalised_per_image(net) -> None:
    first, second = photo(64, 64), photo(64, 64).flip(-1) * 0.5
    weights = style_mix({4: 1.0})
    with torch.inference_mode():
        batch = net(torch.cat([first, second]), weights)
        alone = net(second, weights)
    assert (batch[1:] - alone).abs().max() <= 1e-5


def test_bad_inputs_raise_value_error(net) -> None:
    image = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="region_masks"):
        net(image, style_mix({1: 1.0}).repeat(2, 1))
    with pytest.raises(ValueError, match="style_weights"):
        net(image, torch.ones(1, 5))
    with pytest.raises(ValueError, match="region_masks must be"):
        net(image, style_mix({1: 1.0}).repeat(2, 1), torch.ones(1, 3, 16, 16))
    with pytest.raises(ValueError, match="image"):
        net(torch.rand(3, 16, 16), style_mix({1: 1.0}))


def test_missing_file_names_the_prepare_command(tmp_path) -> None:
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(ModelMissingError, match="partialstyle models prepare") as info:
        load_weights("multistyle26", missing)
    assert str(missing) in str(info.value)


def test_corrupt_file_is_a_model_missing_error(tmp_path, weights_path) -> None:
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(weights_path.read_bytes()[:5000])
    with pytest.raises(ModelMissingError, match="partialstyle models prepare"):
        load_weights("multistyle26", truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a model at all" * 100)
    with pytest.raises(ModelMissingError, match="garbage.safetensors"):
        load_weights("multistyle26", garbage)


def test_wrong_weights_file_is_a_model_missing_error(tmp_path) -> None:
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(3, 3)}, str(other))
    with pytest.raises(ModelMissingError, match="26-style"):
        load_weights("multistyle26", other)


def test_conversion_is_deterministic(tmp_path, onnx_path) -> None:
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    convert_multistyle(onnx_path, first)
    convert_multistyle(onnx_path, second)
    assert first.read_bytes() == second.read_bytes()
    assert not list(tmp_path.glob("*.partial"))


def test_conversion_rejects_a_different_graph(tmp_path, onnx_path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(onnx_path))
    pad = next(node for node in model.graph.node if node.op_type == "Pad")
    for attribute in pad.attribute:
        if attribute.name == "mode":
            attribute.s = b"constant"
    changed = tmp_path / "changed.onnx"
    onnx.save(model, str(changed))
    with pytest.raises(ConversionError, match="reflect"):
        convert_multistyle(changed, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_conversion_of_a_non_onnx_file_is_a_clear_error(tmp_path) -> None:
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    with pytest.raises(ValueError, match="bogus.onnx"):
        convert_multistyle(bogus, tmp_path / "out.safetensors")


def test_subpixel_conv_equals_upsample_reflect_pad_conv() -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 7, 9, generator=generator)
    weight = torch.randn(6, 5, 3, 3, generator=generator)
    upsampled = F.interpolate(x, scale_factor=2, mode="nearest")
    reference = F.conv2d(F.pad(upsampled, [1] * 4, mode="reflect"), weight)
    low_res = F.conv2d(F.pad(x, [1] * 4, mode="replicate"), subpixel_weight(weight))
    assert (F.pixel_shuffle(low_res, 2) - reference).abs().max() <= 1e-5


@pytest.mark.parametrize(("block", "kernel"), [(2, 9), (4, 9), (2, 3)])
def test_blocked_conv_equals_the_conv(block, kernel) -> None:
    generator = torch.Generator().manual_seed(2)
    side = 4 * block + kernel - 1 + (-(kernel - 1)) % block  # a multiple of the block
    x = torch.randn(2, 4, side, side + block, generator=generator)
    weight = torch.randn(3, 4, kernel, kernel, generator=generator)
    reference = F.conv2d(x, weight)
    blocked = F.conv2d(F.pixel_unshuffle(x, block), blocked_weight(weight, block))
    out = F.pixel_shuffle(blocked, block)[..., : reference.shape[-2], : reference.shape[-1]]
    assert (out - reference).abs().max() <= 1e-4


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_strided_blocked_conv_equals_the_stride_2_conv(kernel) -> None:
    """A stride-2 conv as a stride-1 conv on 2x2 blocks of the input padded to an even pad,
    cropped to the stride-2 conv's size; with oneDNN's packed weight too (PackedConv)."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 10, 14, generator=generator)
    conv = torch.nn.Conv2d(4, 5, kernel, stride=2)
    reference = conv(F.pad(x, [kernel // 2] * 4, mode="reflect"))
    padded = F.pad(x, [even_pad(kernel)] * 4, mode="reflect")
    blocked = F.conv2d(F.pixel_unshuffle(padded, 2), strided_blocked_weight(conv.weight))
    size = reference.shape[-2:]
    assert (
        blocked[..., : size[0], : size[1]] + conv.bias[:, None, None] - reference
    ).abs().max() <= 1e-5
    packed = PackedConv(conv, torch.float32, block=2)
    out = packed(F.pixel_unshuffle(padded, 2).contiguous(memory_format=torch.channels_last))
    assert out.shape == reference.shape
    assert (out - reference).abs().max() <= 1e-5


@pytest.mark.parametrize("fused", [True, False])
def test_inference_path_matches_plain_instance_norm(net, reference, fused) -> None:
    """The fused kernel, or the batch-norm, region-difference and skipped-box tricks, against
    the reference network's plain ops."""
    image = photo(96, 128)
    weights = torch.cat([style_mix({2: 1.0}), style_mix({17: 0.5, 4: 0.5})])
    masks = torch.zeros(1, 2, 96, 128)
    masks[:, 0, 29:83, 41:87] = torch.rand(54, 46)  # a soft region in an unaligned box
    masks[:, 1] = 1 - masks[:, 0]
    if fused:
        assert fused_norm.kernels(wait=True) is not None, fused_norm.status()
    with torch.inference_mode(), contextlib.nullcontext() if fused else fused_norm.disabled():
        fast = net(image, weights, masks)
        swapped = net(image, weights.flip(0), masks.flip(1))
    with torch.inference_mode():
        plain = reference(image, weights, masks)
    assert (fast - plain).abs().max() <= 1e-4
    assert (swapped - plain).abs().max() <= 1e-4
    # The boxed region really changed the picture there (it is not all the second style).
    with torch.inference_mode():
        second = net(image, weights[1:])
    assert (fast[..., 30:80, 40:90] - second[..., 30:80, 40:90]).abs().mean() > 0.02


@pytest.mark.parametrize("key", ["contract.0.conv.weight", "res.2.first.norm.gamma"])
def test_loaded_in_inference_mode_and_reloaded_weights_are_used(weights_path, key) -> None:
    """The pipeline may load under inference_mode; load_state_dict (which copies in place)
    must repack the conv weights and rebuild the norms' row table."""
    image, weights = photo(64, 96), style_mix({3: 1.0})
    with torch.inference_mode():
        model = load_weights("multistyle26", weights_path, precision="fp32")
        before = model(image, weights)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        state[key] = state[key].flip(-1)
        model.load_state_dict(state)
        after = model(image, weights)
        reference = MultiStyleNet()
        reference.load_state_dict(state)
        expected = reference(image, weights)
    assert (before - after).abs().mean() > 0.01
    assert (after - expected).abs().max() <= 1e-4


def test_auto_precision_follows_the_cpu(weights_path) -> None:
    expected = torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    assert load_weights("multistyle26", weights_path).compute_dtype == expected
    assert (
        load_weights("multistyle26", weights_path, precision="fp32").compute_dtype == torch.float32
    )


def test_bf16_path_stays_close_to_fp32(weights_path) -> None:
    exact = load_weights("multistyle26", weights_path, precision="fp32")
    fast = load_weights("multistyle26", weights_path, precision="bf16")
    image, weights = photo(120, 160), style_mix({7: 1.0})
    masks = torch.zeros(1, 2, 120, 160)
    masks[:, 0, :, :80], masks[:, 1, :, 80:] = 1, 1
    two = torch.cat([weights, style_mix({13: 1.0})])
    with torch.inference_mode():
        for args in ((image, weights), (image, two, masks)):
            reference, approx = exact(*args), fast(*args)
            assert approx.dtype == torch.float32
            error = (approx - reference).abs()
            # Measured at 640x360 over 4 styles: mean <= 0.0025, p99 <= 0.018, max <= 0.12.
            assert error.mean() < 0.006 and error.max() < 0.15
            assert error.max() > 0, "bf16 path must really run in reduced precision"
    with pytest.raises(ValueError, match="precision"):
        exact.optimize_for_inference("int8")
