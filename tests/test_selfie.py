"""The torch selfie segmenter against MediaPipe's own masks, plus conversion and input handling.

References in tests/fixtures/selfie/ were recorded from MediaPipe 0.10.14 by
tests/fixtures/make_selfie_references.py.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import tflite
import torch
from safetensors.torch import load_file, save_file

from partialstyle.errors import ModelMissingError, PartialStyleError
from partialstyle.frames import shrink_uint8
from partialstyle.segment.mediapipe_resize import (
    _gathered,
    _remapped_planes,
    mediapipe_input,
    stretch_matrix,
)
from partialstyle.segment.selfie import (
    VARIANTS,
    SelfieSegmenter,
    segment_person,
    tf_same_padding,
)
from partialstyle.segment.selfie_onnx import OnnxRuntimeSelfie, _exported
from partialstyle.weights.convert_selfie import convert_selfie
from partialstyle.weights.files import model_path
from partialstyle.weights.load import load_weights
from partialstyle.weights.prepare import package_wheel, source_file

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "selfie"
REFERENCES = json.loads((FIXTURES / "cases.json").read_text())


@pytest.fixture(scope="module")
def selfie_sources(default_models: None) -> dict[str, Path]:
    """The two original .tflite files, as the model store extracted them from MediaPipe's wheel."""
    return {variant: source_file(variant) for variant in VARIANTS}


@pytest.fixture(scope="module")
def selfie_weights(default_models: None) -> dict[str, Path]:
    """Our converted weights, from the model store."""
    return {variant: model_path(variant) for variant in VARIANTS}


@pytest.fixture(scope="module")
def models(selfie_weights: dict[str, Path]) -> dict[str, torch.nn.Module]:
    return {variant: load_weights(variant, path) for variant, path in selfie_weights.items()}


def photo(name: str) -> np.ndarray:
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image


def pattern(height: int, width: int) -> np.ndarray:
    """The synthetic image make_selfie_references.py hashed its resize references on."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    return ((x * 7 + y * 13 + c * 101 + (x * y) % 251) % 256).astype(np.uint8)


def iou_at_half(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


@pytest.mark.parametrize(
    "case", REFERENCES["cases"], ids=[f"{c['name']}-{c['variant']}" for c in REFERENCES["cases"]]
)
def test_mask_matches_mediapipe(case: dict, models: dict[str, SelfieSegmenter]) -> None:
    image = photo(case["photo"])[slice(*case["rows"]), slice(*case["cols"])]
    reference = cv2.imread(str(FIXTURES / case["file"]), cv2.IMREAD_UNCHANGED) / 65535.0
    mask = segment_person(models[case["variant"]], torch.from_numpy(np.ascontiguousarray(image)))
    mask = mask.cpu().double().numpy()
    assert mask.shape == reference.shape == tuple(case["shape"])
    difference = np.abs(mask - reference)
    print(
        f"{case['name']} {case['variant']}: IoU {iou_at_half(mask, reference):.6f} "
        f"MAD {difference.mean():.2e} max {difference.max():.2e}"
    )
    assert iou_at_half(mask, reference) >= 0.98
    assert difference.mean() <= 0.02
    # Measured max is ~2e-4 (XNNPACK's float kernels vs torch's); a wrong resize or padding: >0.05.
    assert difference.max() <= 2e-3


@pytest.mark.parametrize(
    "ref", REFERENCES["resize"], ids=[f"{r['image']}->{r['size']}" for r in REFERENCES["resize"]]
)
def test_resize_is_bit_exact(ref: dict) -> None:
    image = torch.from_numpy(pattern(*ref["image"]))
    tensor = mediapipe_input(image, tuple(ref["size"]))
    assert tensor.shape == (1, 3, *ref["size"]) and tensor.dtype == torch.float32
    levels = torch.round(tensor[0].permute(1, 2, 0) * 255).to(torch.uint8)
    assert torch.equal(
        levels.float() * torch.tensor(1 / 255, dtype=torch.float32), tensor[0].permute(1, 2, 0)
    )
    assert hashlib.sha256(levels.contiguous().numpy().tobytes()).hexdigest() == ref["sha256"]


@pytest.mark.parametrize("image_size", [(360, 640), (33, 47), (1, 1), (1001, 7), (720, 1280)])
def test_resize_tables_match_opencv(image_size: tuple[int, int]) -> None:
    """MediaPipe's step is OpenCV's warpPerspective. Other devices gather with tables, the CPU
    remaps with maps made once: both give its levels."""
    image = torch.from_numpy(pattern(*image_size))
    for h, w in VARIANTS.values():
        warped = cv2.warpPerspective(
            image.numpy(),
            stretch_matrix(image_size, (h, w)),
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        ).reshape(h, w, 3)
        assert np.array_equal(_remapped_planes(image, (h, w)), warped.transpose(2, 0, 1))
        assert np.array_equal(_gathered(image, (h, w)).numpy(), warped)


def test_rgba_frames_resize_like_their_colour_channels() -> None:
    """OBS hands over RGBA: the colour channels (a strided view) resize on whole pixels, to
    exactly what the same colours as a dense H x W x 3 frame give."""
    rgba = torch.from_numpy(
        np.dstack([pattern(361, 641), np.full((361, 641), 7, np.uint8)])
    ).contiguous()
    view, dense = rgba[..., :3], rgba[..., :3].contiguous()
    for size in VARIANTS.values():
        assert torch.equal(mediapipe_input(view, size), mediapipe_input(dense, size))
    assert torch.equal(shrink_uint8(view, (180, 320)), shrink_uint8(dense, (180, 320)))


def test_resize_of_exact_half_is_decimation() -> None:
    image = torch.from_numpy(photo("astronaut"))
    tensor = mediapipe_input(image, (256, 256))
    expected = image[::2, ::2].permute(2, 0, 1).float() * torch.tensor(1 / 255)
    assert torch.equal(tensor[0], expected)


def test_resize_rejects_wrong_images() -> None:
    with pytest.raises(ValueError, match="uint8"):
        mediapipe_input(torch.zeros(10, 10, 3), (256, 256))
    with pytest.raises(ValueError, match="H x W x 3"):
        mediapipe_input(torch.zeros(10, 10, 4, dtype=torch.uint8), (256, 256))


def test_tf_same_padding() -> None:
    assert tf_same_padding(256, 3, 2) == (0, 1)
    assert tf_same_padding(32, 5, 2) == (1, 2)
    assert tf_same_padding(9, 5, 1) == (2, 2)
    assert tf_same_padding(16, 1, 1) == (0, 0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_shape_and_range(variant: str, models: dict[str, SelfieSegmenter]) -> None:
    model = models[variant]
    assert model.variant == variant and model.input_size == VARIANTS[variant]
    x = torch.rand(2, 3, *model.input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = model(x)
        single = model(x[1:])
    assert out.shape == (2, 1, *model.input_size)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out[1:], single, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="resize with mediapipe_input"):
        model(torch.rand(1, 3, 100, 100))


@pytest.mark.parametrize("height,width", [(33, 47), (1, 1), (2, 3), (1001, 7), (361, 641)])
def test_odd_and_tiny_frames(height: int, width: int, models: dict[str, SelfieSegmenter]) -> None:
    image = torch.from_numpy(pattern(height, width))
    for model in models.values():
        mask = segment_person(model, image)
        assert mask.shape == (height, width) and mask.dtype == torch.float32
        assert torch.isfinite(mask).all() and mask.min() >= 0 and mask.max() <= 1
        assert mask.is_inference()


def test_out_size_resizes_the_mask(models: dict[str, SelfieSegmenter]) -> None:
    image = torch.from_numpy(np.ascontiguousarray(photo("astronaut")[40:328]))
    model = models["selfie-landscape"]
    small = segment_person(model, image, out_size=(90, 160))
    full = segment_person(model, image)
    assert small.shape == (90, 160) and full.shape == (288, 512)
    # Same network output, two bilinear resizes: both should agree on the average person area.
    assert abs(small.mean().item() - full.mean().item()) < 0.01
    with pytest.raises(ValueError, match="uint8 RGB"):
        segment_person(model, image.float())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_conversion_is_deterministic(
    variant: str, selfie_sources: dict[str, Path], tmp_path: Path
) -> None:
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    convert_selfie(selfie_sources[variant], first)
    convert_selfie(selfie_sources[variant], second)
    assert first.read_bytes() == second.read_bytes()
    model = load_weights(variant, first)
    assert model.variant == variant
    assert sum(p.numel() for p in model.parameters()) > 100_000


def test_convert_rejects_other_tflite_models(tmp_path: Path, default_models: None) -> None:
    other = tmp_path / "face_detection_short_range.tflite"
    with zipfile.ZipFile(package_wheel("selfie")) as wheel:
        other.write_bytes(
            wheel.read("mediapipe/modules/face_detection/face_detection_short_range.tflite")
        )
    with pytest.raises(PartialStyleError, match="is not a MediaPipe selfie model"):
        convert_selfie(other, tmp_path / "out.safetensors")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(PartialStyleError, match="garbage.tflite"):
        convert_selfie(garbage, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def first_op(data: bytes, builtin: int) -> tflite.Operator:
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    ops = (graph.Operators(i) for i in range(graph.OperatorsLength()))
    return next(op for op in ops if model.OperatorCodes(op.OpcodeIndex()).BuiltinCode() == builtin)


def with_int32(data: bytes, position: int, expected: int, value: int) -> bytes:
    """A copy of the flatbuffer with the int32 at `position` changed from `expected` to `value`."""
    patched = bytearray(data)
    assert struct.unpack_from("<i", patched, position)[0] == expected
    struct.pack_into("<i", patched, position, value)
    return bytes(patched)


def test_convert_checks_the_graph_structure(
    selfie_sources: dict[str, Path], tmp_path: Path
) -> None:
    data = selfie_sources["selfie"].read_bytes()
    # The stem convolution, made stride 1 (Conv2DOptions field 1 is stride_w).
    stem = first_op(data, tflite.BuiltinOperator.CONV_2D).BuiltinOptions()
    options = tflite.Conv2DOptions()
    options.Init(stem.Bytes, stem.Pos)
    stride_w = options._tab.Pos + options._tab.Offset(6)
    # The first residual ADD, rewired to add its first input to itself.
    add = first_op(data, tflite.BuiltinOperator.ADD)
    second_input = add._tab.Vector(add._tab.Offset(6)) + 4
    for name, bad in {
        "stride": with_int32(data, stride_w, 2, 1),
        "wiring": with_int32(data, second_input, add.Inputs(1), add.Inputs(0)),
    }.items():
        source = tmp_path / f"{name}.tflite"
        source.write_bytes(bad)
        with pytest.raises(PartialStyleError, match="is not a MediaPipe selfie model") as error:
            convert_selfie(source, tmp_path / f"{name}.safetensors")
        print(error.value)


def test_missing_model_file_names_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "selfie.safetensors"
    with pytest.raises(ModelMissingError) as error:
        load_weights("selfie", missing)
    message = str(error.value)
    assert str(missing) in message and "partialstyle models prepare" in message
    assert "\n" not in message


def test_corrupt_model_file_is_one_clear_line(
    tmp_path: Path, selfie_weights: dict[str, Path]
) -> None:
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(selfie_weights["selfie"].read_bytes()[:5000])
    incompatible = tmp_path / "incompatible.safetensors"
    save_file({"stem.weight": torch.zeros(3)}, str(incompatible), metadata={"variant": "selfie"})
    no_variant = tmp_path / "no-variant.safetensors"
    save_file(load_file(str(selfie_weights["selfie"])), str(no_variant))
    for path in (corrupt, truncated, incompatible, no_variant):
        with pytest.raises(ModelMissingError) as error:
            load_weights("selfie", path)
        message = str(error.value)
        assert str(path) in message and "partialstyle models prepare" in message
        assert "\n" not in message


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_onnxruntime_form_matches_the_torch_network(
    variant: str, selfie_weights: dict[str, Path], models: dict[str, torch.nn.Module]
) -> None:
    """On the CPU the loader hands out the network run by onnxruntime; the torch network
    stays the reference it must match, whatever torch's thread count, at batch size 2."""
    fast = models[variant]
    assert isinstance(fast, OnnxRuntimeSelfie)
    reference = load_weights(variant, selfie_weights[variant], runtime="torch")
    assert isinstance(reference, SelfieSegmenter)
    image = torch.from_numpy(np.ascontiguousarray(photo("astronaut")))
    x = torch.cat([mediapipe_input(image, reference.input_size)] * 2)
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            with torch.inference_mode():
                expected, got = reference(x), fast(x)
            assert got.shape == expected.shape == (2, 1, *reference.input_size)
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ValueError, match="resize with mediapipe_input"):
        fast(torch.rand(1, 3, 100, 100))


def test_onnxruntime_graph_pads_in_its_convs(models: dict[str, torch.nn.Module]) -> None:
    """The graph onnxruntime runs has fixed shapes and TensorFlow's SAME padding inside its
    convs: no shape arithmetic and no Pad operators between the blocked convs (the
    matching test above checks that the folded pads compute the same masks)."""
    import onnx

    network = models["selfie-landscape"].network
    graph = onnx.load_from_string(_exported(network, 1))
    operators = {node.op_type for node in graph.graph.node}
    assert not operators & {"Pad", "Shape", "Gather", "ConstantOfShape"}, operators
    convs = [module for module in network.modules() if isinstance(module, torch.nn.Conv2d)]
    assert sum(node.op_type == "Conv" for node in graph.graph.node) == len(convs)
    asymmetric = [
        list(attribute.ints)
        for node in graph.graph.node
        for attribute in node.attribute
        if node.op_type == "Conv" and attribute.name == "pads"
        if attribute.ints[:2] != attribute.ints[2:]
    ]
    assert len(asymmetric) == 4  # the stride-2 layers' SAME padding: one more after
