from __future__ import annotations

import pytest
import torch
from johnson_format import published_layout, write_published_style_checkpoint

from partialstyle.errors import ModelMissingError
from partialstyle.style import fused_norm
from partialstyle.style.johnson import TransformerNet
from partialstyle.weights.load import load_weights


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_published_style_checkpoint(tmp_path_factory.mktemp("johnson") / "candy.pth")


def test_published_layout_loads_strictly_and_drops_only_legacy_stats(checkpoint):
    net = load_weights("johnson", checkpoint, "cpu")
    saved = torch.load(checkpoint, weights_only=True)
    loaded = net.state_dict()
    legacy = {k for k, _ in published_layout() if k.endswith(("running_mean", "running_var"))}
    assert len(legacy) == 30  # 5 top-level norms and 10 inside the residual blocks, two each
    assert set(loaded) == set(saved) - legacy
    for key, value in loaded.items():
        assert torch.equal(value, saved[key]), key


@pytest.mark.parametrize("size", [(64, 64), (37, 50), (5, 3)])
def test_any_size_maps_to_same_size_in_unit_range(checkpoint, size):
    net = load_weights("johnson", checkpoint, "cpu")
    image = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(image)
    assert out.shape == image.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.std() > 0.01  # an actual picture, not a clamped constant


def plain_network(checkpoint) -> TransformerNet:
    """The loaded weights in a TransformerNet on plain ops (no set_precision)."""
    net = TransformerNet().eval()
    net.load_state_dict(load_weights("johnson", checkpoint, "cpu").state_dict())
    return net


def test_forward_scales_to_the_checkpoints_pixel_range(checkpoint):
    net = plain_network(checkpoint)
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = (net.raw(image * 255) / 255).clamp(0, 1)
        assert torch.allclose(net(image), expected, atol=1e-6)


def test_missing_file_is_one_clear_line(tmp_path):
    with pytest.raises(ModelMissingError, match="does not exist") as info:
        load_weights("johnson", tmp_path / "nope.pth")
    assert "\n" not in str(info.value)


def test_foreign_file_is_rejected(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelMissingError, match="not a readable PyTorch checkpoint"):
        load_weights("johnson", junk)


def test_mismatched_checkpoint_names_the_problem(tmp_path, checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    state["conv1.conv2d.weight"] = torch.zeros(16, 3, 9, 9)
    del state["deconv3.conv2d.bias"]
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ModelMissingError) as info:
        load_weights("johnson", bad)
    message = str(info.value)
    assert "\n" not in message
    for part in ("deconv3.conv2d.bias", "extra.weight", "conv1.conv2d.weight"):
        assert part in message


@pytest.mark.parametrize(("precision", "size"), [("fp32", (36, 64)), ("bf16", (37, 50))])
def test_fast_path_equals_the_plain_network(checkpoint, precision, size):
    """Loaded networks run on the fast path (packed convs, fused norm); same pictures."""
    assert fused_norm.kernels(wait=True) is not None
    plain = plain_network(checkpoint)
    fast = load_weights("johnson", checkpoint, "cpu", precision=precision)
    assert fast.compute_dtype == (torch.float32 if precision == "fp32" else torch.bfloat16)
    image = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected, result = plain(image), fast(image)
    assert fast._fast is not None  # the fast path ran
    assert result.shape == expected.shape and result.dtype == expected.dtype
    assert expected.std() > 0.01
    if precision == "fp32":
        assert (result - expected).abs().max() < 1e-3
    else:  # bf16: on average under one level of the 8-bit frame it becomes
        assert (result - expected).abs().mean() < 1 / 255
