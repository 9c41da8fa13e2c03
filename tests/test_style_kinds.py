"""Johnson networks, arbitrary pictures as styles, style morphing and flicker reduction,
through the whole pipeline."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from johnson_format import write_published_style_checkpoint

from partialstyle.config import PipelineConfig
from partialstyle.errors import ModelMissingError
from partialstyle.pipeline import Pipeline
from partialstyle.plan import RegionStyle, StylePlan
from partialstyle.stabilize import OutputStabilizer
from partialstyle.style import fused_norm
from partialstyle.style.spec import StyleSpec
from partialstyle.weights.model_cache import load_johnson

pytestmark = pytest.mark.usefixtures("default_models")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    paths = {}
    for name in ("coffee", "chelsea", "rocket"):
        paths[name] = folder / f"{name}.png"
        cv2.imwrite(str(paths[name]), getattr(skimage.data, name)()[..., ::-1])
    return paths


@pytest.fixture(scope="module")
def johnson_checkpoint(tmp_path_factory) -> Path:
    """A network in the published fast_neural_style format (seeded weights: the real files
    cannot be downloaded here)."""
    return write_published_style_checkpoint(tmp_path_factory.mktemp("johnson") / "test.pth")


@pytest.fixture(scope="module")
def frame(astronaut) -> np.ndarray:
    return np.ascontiguousarray(astronaut[::2, ::2])


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=-1)


def _run(frame, person: str, background: str = "none", **config) -> tuple[np.ndarray, np.ndarray]:
    pipeline = Pipeline(PipelineConfig(**config), StylePlan.from_specs(person, background))
    return pipeline.process(frame), pipeline.person_mask(frame)


def test_arbitrary_picture_styles_the_person_only(frame, pictures):
    out, mask = _run(frame, f"arbitrary:{pictures['coffee']}")
    other, _ = _run(frame, f"arbitrary:{pictures['rocket']}")
    difference = _difference(out, frame)
    assert difference[mask == 0].max() == 0
    assert difference[mask > 0.99].mean() > 15
    assert _difference(out, other)[mask > 0.99].mean() > 10  # the picture matters


def test_arbitrary_strength_moves_the_style_vector(frame, pictures):
    spec = f"arbitrary:{pictures['coffee']}"
    full, _ = _run(frame, spec, spec)
    plan = StylePlan(
        RegionStyle(StyleSpec.parse(spec), 0.3), RegionStyle(StyleSpec.parse(spec), 0.3)
    )
    weak = Pipeline(plan=plan).process(frame)
    # Closer to the original than full strength, yet restyled (not a pixel mix).
    assert _difference(weak, frame).mean() < _difference(full, frame).mean()
    assert _difference(weak, frame).mean() > 3


def test_person_and_background_with_different_kinds(frame, pictures):
    out, mask = _run(frame, "multistyle:19", f"arbitrary:{pictures['chelsea']}")
    # The person's pass is normalised over the person alone whatever paints the background
    # (one style everywhere would normalise over the whole frame instead).
    only_multistyle, _ = _run(frame, "multistyle:19")
    person = mask > 0.99
    assert _difference(out, only_multistyle)[person].mean() < 8
    assert _difference(out, only_multistyle)[mask == 0].mean() > 15


def test_johnson_network_on_the_person_crop(frame, johnson_checkpoint):
    spec = f"johnson:{johnson_checkpoint}"
    out, mask = _run(frame, spec)
    assert _difference(out, frame)[mask == 0].max() == 0
    assert _difference(out, frame)[mask > 0.99].mean() > 10
    # The person covers under 60% of the frame, so the network ran on a crop around them.
    rows, columns = np.nonzero(mask > 0.01)
    top, left = max(0, rows.min() - 16), max(0, columns.min() - 16)
    bottom, right = rows.max() + 17, columns.max() + 17
    network = load_johnson(str(johnson_checkpoint), torch.device("cpu"))
    crop = torch.from_numpy(frame[top:bottom, left:right]).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        expected = (network(crop)[0].permute(1, 2, 0).numpy() * 255).round()
    inside = mask[top:bottom, left:right] > 0.999
    got = out[top:bottom, left:right].astype(np.float32)
    assert np.abs(got - expected)[inside].mean() < 1.5


def test_johnson_name_missing_says_how_to_fetch(frame):
    with pytest.raises(ModelMissingError, match="partialstyle models fetch johnson"):
        _run(frame, "johnson:no-such-style")


def test_preserve_colors_for_every_kind(frame, pictures, johnson_checkpoint):
    def chroma(image):
        return cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(np.float32)

    for spec in (f"arbitrary:{pictures['coffee']}", f"johnson:{johnson_checkpoint}"):
        style = StyleSpec.parse(spec)
        kept = Pipeline(plan=StylePlan(RegionStyle(style, 1, True), RegionStyle(style, 1, True)))
        plain = Pipeline(plan=StylePlan(RegionStyle(style), RegionStyle(style)))
        kept_error = np.abs(chroma(kept.process(frame)) - chroma(frame)).mean()
        plain_error = np.abs(chroma(plain.process(frame)) - chroma(frame)).mean()
        assert kept_error < 0.5 * plain_error, spec


def test_style_morph_fades_between_styles(frame):
    old, new = (
        StylePlan.from_specs("multistyle:1", "multistyle:1"),
        StylePlan.from_specs("multistyle:17", "multistyle:17"),
    )
    pipeline = Pipeline(PipelineConfig(morph_seconds=1.0), old)
    start = pipeline.process(frame, timestamp=10.0)
    pipeline.configure(plan=new)
    # The morph starts with the first frame that sees the new plan.
    assert np.array_equal(pipeline.process(frame, timestamp=10.0), start)
    halfway = pipeline.process(frame, timestamp=10.5)
    done = pipeline.process(frame, timestamp=11.2)
    target = Pipeline(plan=new).process(frame)
    assert np.array_equal(done, target)
    to_start, to_target = _difference(halfway, start).mean(), _difference(halfway, target).mean()
    between = _difference(start, target).mean()
    assert 0.15 * between < to_start < 0.85 * between
    assert 0.15 * between < to_target < 0.85 * between


def test_style_morph_across_kinds_blends_outputs(frame, pictures):
    pipeline = Pipeline(PipelineConfig(morph_seconds=2.0), StylePlan.from_specs("none", "none"))
    assert np.array_equal(pipeline.process(frame, timestamp=0.0), frame)
    spec = f"arbitrary:{pictures['coffee']}"
    pipeline.configure(plan=StylePlan.from_specs(spec, spec))
    pipeline.process(frame, timestamp=1.0)
    fading = pipeline.process(frame, timestamp=2.0)
    target = Pipeline(plan=StylePlan.from_specs(spec, spec)).process(frame)
    expected = (frame.astype(np.float32) + target) / 2  # smoothstep(0.5) = 0.5
    assert np.abs(fading - expected).mean() < 1.0


def test_stabilizer_reduces_flicker_on_static_content(astronaut_wide):
    rng = np.random.default_rng(0)
    noisy = [
        np.clip(astronaut_wide + rng.normal(0, 3, astronaut_wide.shape), 0, 255).astype(np.uint8)
        for _ in range(8)
    ]

    def flicker(stabilize: float) -> float:
        pipeline = Pipeline(
            PipelineConfig(process_height=180, stabilize=stabilize),
            StylePlan.from_specs("multistyle:19", "multistyle:25"),
        )
        outputs = [pipeline.process(frame).astype(np.float32) for frame in noisy]
        return float(
            np.mean([np.abs(b - a).mean() for a, b in zip(outputs[:-1], outputs[1:], strict=True)])
        )

    assert flicker(0.8) < 0.5 * flicker(0.0)


def test_stabilizer_lets_a_new_style_through_at_once(astronaut_wide):
    plan_a = StylePlan.from_specs("multistyle:19", "multistyle:19")
    plan_b = StylePlan.from_specs("multistyle:17", "multistyle:17")
    pipeline = Pipeline(PipelineConfig(process_height=180, stabilize=0.9), plan_a)
    for _ in range(3):
        pipeline.process(astronaut_wide)
    pipeline.configure(plan=plan_b)
    switched = pipeline.process(astronaut_wide)
    fresh = Pipeline(PipelineConfig(process_height=180), plan_b).process(astronaut_wide)
    assert np.array_equal(switched, fresh)  # no trace of the old style on a still picture


def test_stabilizer_kernels_equal_the_torch_ops():
    """The stabiliser's compiled passes (change, blend) give what its torch ops give, on the
    layouts the pipeline hands over (the frame as a view of its pixels, a planar layer) and
    on a planar frame."""
    assert fused_norm.kernels(wait=True) is not None
    generator = torch.Generator().manual_seed(12)
    frames = [torch.rand(40, 60, 3, generator=generator).permute(2, 0, 1) for _ in range(3)]
    frames[0] = frames[0].contiguous()  # planar beside pixel views: the general loop too
    frames[2] = frames[1] + 0.001 * frames[2]  # a still third frame: mostly kept
    layers = [torch.rand(4, 40, 60, generator=generator) for _ in range(3)]

    def run() -> list[torch.Tensor]:
        stabilizer = OutputStabilizer()
        return [stabilizer(frame, layer, 0.7) for frame, layer in zip(frames, layers, strict=True)]

    made = run()
    with fused_norm.disabled():
        expected = run()
    for one, other in zip(made, expected, strict=True):
        assert (one - other).abs().max() <= 1e-6
    assert (made[2] - layers[2]).abs().mean() > 0.05  # the still frame did blend
