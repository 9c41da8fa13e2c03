"""The whole pipeline on real models and real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from partialstyle import compose
from partialstyle.config import PipelineConfig
from partialstyle.frames import to_image
from partialstyle.pipeline import Pipeline
from partialstyle.plan import RegionStyle, StylePlan
from partialstyle.segment.regions import choose_segmenter
from partialstyle.style import fused_norm
from partialstyle.style.spec import StyleSpec
from partialstyle.weights.model_cache import default_cache

pytestmark = pytest.mark.usefixtures("default_models")


def _pipeline(person="multistyle:19", background="none", **config) -> Pipeline:
    return Pipeline(PipelineConfig(**config), StylePlan.from_specs(person, background))


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a[..., :3].astype(np.int16) - b[..., :3].astype(np.int16)).mean(axis=-1)


def test_person_styled_background_untouched(astronaut):
    pipeline = _pipeline("multistyle:19", "none")
    out = pipeline.process(astronaut)
    mask = pipeline.person_mask(astronaut)
    difference = _difference(out, astronaut)
    background, person = mask == 0.0, mask > 0.99
    assert background.mean() > 0.2 and person.mean() > 0.2  # the photo has both
    assert difference[background].max() == 0  # background pixels are exactly the original
    # Near the edge the style fades out with the mask: at most mask·255 levels of change.
    edge = (mask > 0) & (mask < 0.05)
    assert (difference[edge] <= mask[edge] * 255 + 1).all()
    assert difference[person].mean() > 25  # people clearly restyled


def test_two_styles_land_in_their_regions(astronaut):
    a, b = "multistyle:19", "multistyle:17"
    both = _pipeline(a, b).process(astronaut)
    mask = _pipeline(a, b).person_mask(astronaut)
    only_a = _pipeline(a, a).process(astronaut)
    only_b = _pipeline(b, b).process(astronaut)
    person, background = mask > 0.99, mask < 0.01
    # Each region looks like its own style's full-frame result, far from the other style.
    assert _difference(both, only_a)[person].mean() < 0.5 * _difference(both, only_b)[person].mean()
    assert (
        _difference(both, only_b)[background].mean()
        < 0.5 * _difference(both, only_a)[background].mean()
    )


def test_alpha_is_untouched_and_shape_kept(astronaut):
    rgba = np.dstack([astronaut, np.arange(512 * 512, dtype=np.uint32).reshape(512, 512) % 251])
    rgba = rgba.astype(np.uint8)
    out = _pipeline(process_height=256).process(rgba)
    assert out.shape == rgba.shape and out.dtype == np.uint8
    assert np.array_equal(out[..., 3], rgba[..., 3])


@pytest.mark.parametrize("height, width", [(32, 32), (33, 47), (47, 33), (101, 333)])
def test_odd_and_tiny_frames(astronaut, height, width):
    import cv2

    frame = cv2.resize(astronaut, (width, height), interpolation=cv2.INTER_AREA)
    out = _pipeline("multistyle:3", "multistyle:7").process(frame)
    assert out.shape == frame.shape
    assert _difference(out, frame).mean() > 5


def test_4k_frame_at_live_processing_height(astronaut):
    import cv2

    frame = cv2.resize(astronaut, (2160, 2160))
    frame = np.ascontiguousarray(np.pad(frame, ((0, 0), (840, 840), (0, 0)), mode="edge"))
    assert frame.shape == (2160, 3840, 3)
    out = _pipeline(process_height=360).process(frame)
    assert out.shape == frame.shape


@pytest.mark.parametrize(
    "frame, words",
    [
        (np.zeros((31, 64, 3), np.uint8), "outside"),
        (np.zeros((2161, 3841, 3), np.uint8), "outside"),
        (np.zeros((64, 64), np.uint8), "H×W×3"),
        (np.zeros((64, 64, 2), np.uint8), "H×W×3"),
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_bad_frames_get_clear_errors(frame, words):
    with pytest.raises(ValueError, match=words):
        _pipeline().process(frame)


def test_strength_zero_is_identity_and_half_is_between(astronaut):
    frame = astronaut[::2, ::2].copy()
    spec = StyleSpec.parse("multistyle:5")
    full = Pipeline(plan=StylePlan(RegionStyle(spec), RegionStyle(spec))).process(frame)
    half = Pipeline(plan=StylePlan(RegionStyle(spec, 0.5), RegionStyle(spec, 0.5))).process(frame)
    zero = Pipeline(plan=StylePlan(RegionStyle(spec, 0.0), RegionStyle(spec, 0.0))).process(frame)
    assert np.array_equal(zero, frame)
    expected = (frame.astype(np.float32) + full) / 2
    assert np.abs(half - expected).max() <= 1.0


def test_preserve_colors_keeps_chroma(astronaut):
    import cv2

    frame = astronaut[::2, ::2].copy()
    spec = StyleSpec.parse("multistyle:17")
    kept = Pipeline(plan=StylePlan(RegionStyle(spec, 1.0, True), RegionStyle(spec, 1.0, True)))
    plain = Pipeline(plan=StylePlan(RegionStyle(spec), RegionStyle(spec)))

    def chroma(image):
        return cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(np.float32)

    kept_error = np.abs(chroma(kept.process(frame)) - chroma(frame)).mean()
    plain_error = np.abs(chroma(plain.process(frame)) - chroma(frame)).mean()
    assert kept_error < 0.3 * plain_error


def test_live_switch_uses_new_plan_without_reloading(astronaut_wide):
    pipeline = _pipeline("multistyle:1", "multistyle:2", process_height=180)
    first = pipeline.process(astronaut_wide)
    loaded = default_cache.loaded()
    pipeline.configure(plan=StylePlan.from_specs("multistyle:20", "multistyle:2"))
    second = pipeline.process(astronaut_wide)
    assert _difference(first, second).mean() > 5
    assert all(default_cache.loaded()[key] is model for key, model in loaded.items())


def test_temporal_smoothing_follows_slowly(astronaut_wide):
    pipeline = _pipeline(temporal_smoothing=0.8, process_height=180)
    person = pipeline.person_mask(astronaut_wide)
    empty = np.zeros_like(astronaut_wide)
    after_one_empty = pipeline.person_mask(empty)
    # 80% of the previous mask carries over into the frame that has nobody in it.
    assert after_one_empty.mean() > 0.5 * person.mean()
    pipeline.reset()
    assert pipeline.person_mask(empty).mean() < 0.05 * person.mean()


def test_auto_segmenter_follows_frame_shape():
    assert choose_segmenter("auto", 360, 640) == "selfie-landscape"
    assert choose_segmenter("auto", 512, 512) == "selfie"
    assert choose_segmenter("selfie", 360, 640) == "selfie"


def test_show_mask_tints_people(astronaut):
    # One style everywhere needs no mask, but the debug view still shows where people are.
    pipeline = Pipeline(
        PipelineConfig(show_mask=True), StylePlan.from_specs("multistyle:1", "multistyle:1")
    )
    shown = pipeline.process(astronaut)
    mask = pipeline.person_mask(astronaut)
    red_excess = shown[..., 0].astype(int) - shown[..., 1].astype(int)
    assert red_excess[mask > 0.99].mean() > red_excess[mask < 0.01].mean() + 20


@pytest.mark.parametrize(
    ("kind", "background", "strength"),
    [
        ("multistyle", "none", 1.0),
        ("multistyle", "multistyle:mosaic", 1.0),
        ("multistyle", "multistyle:mosaic", 0.6),
        ("arbitrary", "none", 1.0),
        ("arbitrary", "chelsea", 1.0),
    ],
)
def test_layer_from_the_networks_last_pass_equals_the_premultiplied_image(
    astronaut, monkeypatch, tmp_path, kind, background, strength
):
    """Where every region's look shares one pass of the 26-style or the arbitrary network,
    the style layer comes from that pass's last step, the stylized image never written: bit
    for bit the layer compositing makes of the image (one region, two, part strength)."""
    from partialstyle.style.kinds.arbitrary import ArbitraryKind
    from partialstyle.style.kinds.multistyle import MultiStyleKind

    if kind == "arbitrary":
        pictures = {}
        for name in ("coffee", "chelsea"):
            pictures[name] = tmp_path / f"{name}.png"
            cv2.imwrite(str(pictures[name]), getattr(skimage.data, name)()[..., ::-1])
        person = f"arbitrary:{pictures['coffee']}"
        background = f"arbitrary:{pictures[background]}" if background != "none" else background
    else:
        person = "multistyle:19"
    plan = StylePlan.from_specs(person, background, strength)
    pipeline = Pipeline(PipelineConfig(process_height=128), plan)
    analysis = pipeline.analyse(astronaut)
    made = []
    kind_class = ArbitraryKind if kind == "arbitrary" else MultiStyleKind
    forward_layer = kind_class.forward_layer

    def recorded(self, run, networks, shown_with):
        layer = forward_layer(self, run, networks, shown_with)
        made.append(layer)
        return layer

    monkeypatch.setattr(kind_class, "forward_layer", recorded)
    layer = pipeline.style_layer(analysis)
    assert len(made) == 1 and made[0] is layer  # the network's pass made it
    monkeypatch.setattr(kind_class, "forward_layer", lambda *args: None)
    expected = pipeline.style_layer(analysis)
    assert layer.shape == expected.shape == (4, *analysis.small.shape[-2:])
    assert torch.equal(layer, expected)


@pytest.mark.parametrize("layout", ["pixels", "planes", "every second column"])
def test_layer_colors_kernel_equals_the_torch_ops(layout):
    """The compiled one-pass layer_colors gives exactly what its torch definition gives: the
    colour under partial and full coverage, the frame's own where nothing is styled, from a
    frame's pixel view (the pipeline's), planes, or any strides; rows styled throughout (the
    kernel does not read the frame for them) and rows with unstyled pixels."""
    assert fused_norm.kernels(wait=True) is not None
    generator = torch.Generator().manual_seed(3)
    small = torch.rand(30, 80, 3, generator=generator).permute(2, 0, 1)  # a frame's view
    if layout == "planes":
        small = small.contiguous()
    elif layout == "every second column":
        small = small[:, :, ::2]
    mask = torch.rand(30, 40, generator=generator)
    mask[:8], mask[8:12] = 0.0, 1.0
    mask[20, 5] = 0.0  # one unstyled pixel in a styled row
    styled = torch.rand(3, 30, 40, generator=generator)
    layer = compose.premultiplied_layer(small, [(styled, mask)])
    small = small[:, :, :40]
    color, coverage = compose.layer_colors(layer, small)
    with fused_norm.disabled():
        expected_color, expected_coverage = compose.layer_colors(layer, small)
    assert color.dtype == np.uint8 and color.shape == (30, 40, 3)
    assert np.array_equal(color, expected_color)
    assert np.array_equal(coverage, expected_coverage)


@pytest.mark.parametrize("layout", ["pixels", "planes", "every second column"])
@pytest.mark.parametrize("regions", [1, 2, 3])
def test_premultiplied_layer_kernel_equals_the_torch_ops(layout, regions):
    """One stylized image shown in several regions becomes the premultiplied layer in one
    compiled pass: bit for bit the torch sum, product and copy, whatever the image's layout
    (the networks leave it pixel-interleaved)."""
    assert fused_norm.kernels(wait=True) is not None
    generator = torch.Generator().manual_seed(5)
    styled = torch.rand(30, 80, 3, generator=generator).permute(2, 0, 1)
    if layout == "planes":
        styled = styled.contiguous()
    styled = styled[:, :, ::2] if layout == "every second column" else styled[:, :, :40]
    masks = torch.rand(regions, 30, 40, generator=generator).unbind(0)
    small = torch.rand(3, 30, 40, generator=generator)
    parts = [(styled, mask) for mask in masks]
    layer = compose.premultiplied_layer(small, parts)
    with fused_norm.disabled():
        expected = compose.premultiplied_layer(small, parts)
    assert layer.shape == (4, 30, 40) and torch.equal(layer, expected)


@pytest.mark.parametrize("layout", ["rgb", "rgba", "every second column"])
def test_frame_to_image_kernel_equals_the_torch_ops(astronaut, layout):
    """A frame's uint8 pixels become the float image in one compiled pass: bit for bit the
    torch cast and division, from RGB frames, RGB views of RGBA ones and strided views."""
    assert fused_norm.kernels(wait=True) is not None
    pixels = torch.from_numpy(astronaut)
    if layout == "rgba":
        pixels = torch.cat([pixels, pixels[..., :1]], dim=2)[..., :3]
    elif layout == "every second column":
        pixels = pixels[:, ::2]
    image = to_image(pixels)
    with fused_norm.disabled():
        expected = to_image(pixels)
    assert image.shape == (3, *pixels.shape[:2]) and torch.equal(image, expected)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("frame_size", [(300, 400), (563, 1000)])
def test_blend_kernels_equal_the_opencv_blend(astronaut, channels, frame_size):
    """The uint8 blend is one compiled pass, at the frame's own size (the live path) and
    scaling a processing-size layer up on the way: OpenCV's resizes and blend within one
    level of rounding, pixels no coverage reaches exactly the frame's, full coverage exactly
    the styled colour, alpha kept."""
    assert fused_norm.kernels(wait=True) is not None
    generator = np.random.default_rng(6)
    frame = cv2.resize(astronaut, frame_size[::-1], interpolation=cv2.INTER_AREA)
    if channels == 4:
        frame = np.dstack([frame, generator.integers(0, 256, frame.shape[:2], dtype=np.uint8)])
    color = np.ascontiguousarray(astronaut[100:400, 50:450, ::-1])
    coverage = generator.random(color.shape[:2], dtype=np.float32) * 1.4 - 0.2  # clamped
    coverage[:, :80], coverage[:, 80:120], coverage[:40] = 0.0, 1.0, 0.0
    fast = compose.blend_styled(frame, color, coverage)
    with fused_norm.disabled():
        expected = compose.blend_styled(frame, color, coverage)
    assert fast.shape == frame.shape and fast.dtype == np.uint8
    assert np.abs(fast.astype(int) - expected).max() <= 1
    clipped = np.clip(coverage, 0.0, 1.0)
    scaled = cv2.resize(clipped, frame_size[::-1], interpolation=cv2.INTER_LINEAR)
    untouched = scaled <= 0.0
    assert untouched.mean() > 0.2 and np.array_equal(fast[untouched], frame[untouched])
    if frame_size == coverage.shape:
        assert np.array_equal(fast[40:, 80:120, :3], color[40:, 80:120])
    if channels == 4:
        assert np.array_equal(fast[..., 3], frame[..., 3])


@pytest.mark.parametrize("background", ["none", "multistyle:mosaic"])
@pytest.mark.parametrize(("process_height", "channels"), [(128, 4), (512, 4), (128, 3), (512, 3)])
def test_uint8_compositing_matches_the_float_path(astronaut, background, process_height, channels):
    """On the CPU with bilinear upsampling the full-resolution pass is one compiled pass in
    uint8 on the frame itself (or OpenCV's uint8 resize of the colour, where a layer to be
    scaled up covers the whole frame); the float pass (GPUs, guided upsampling, the mask
    view) is its reference: the same picture within one level of rounding, the layer scaled
    up (128) or not (512), pixels no region styles exactly the frame's, alpha kept."""
    pipeline = _pipeline("multistyle:19", background, process_height=process_height)
    alpha = np.arange(astronaut.size // 3, dtype=np.uint8).reshape(512, 512)
    frame = np.dstack([astronaut, alpha]) if channels == 4 else astronaut
    analysis = pipeline.analyse(frame)
    layer = pipeline.style_layer(analysis)
    fast = pipeline.compose(analysis, layer)
    with torch.inference_mode():  # (it clamps the layer's coverage in place at one size)
        reference = compose.compose_frame(
            frame, analysis.original, analysis.small, layer, "bilinear"
        )
    assert fast.shape == frame.shape and np.array_equal(fast[..., 3:], frame[..., 3:])
    difference = np.abs(fast[..., :3].astype(int) - reference[..., :3])
    # (A layer covering the frame is scaled as uint8 colour: rounded once more, ~0.2 on average.)
    assert difference.max() <= 1 and difference.mean() < 0.25
    if background == "none":
        coverage = cv2.resize(layer[3].numpy(), (512, 512), interpolation=cv2.INTER_LINEAR)
        untouched = coverage == 0.0
        assert untouched.mean() > 0.2 and np.array_equal(fast[untouched], frame[untouched])
