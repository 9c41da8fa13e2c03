"""Live output: a stylization carried onto newer frames by optical flow, within its bound
(real photos)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from partialstyle.config import PipelineConfig
from partialstyle.live import CarryBound, LiveStylizer
from partialstyle.live.carry import carry, round_trip_valid
from partialstyle.live.flow import FlowEstimator, Warp, flow_gray, flow_size
from partialstyle.live.plate import BackgroundPlate
from partialstyle.obs.sample_clip import sample_frame
from partialstyle.obs.settings import to_pipeline
from partialstyle.pipeline import Pipeline
from partialstyle.plan import StylePlan
from partialstyle.style import fused_norm

WIDTH, HEIGHT = 640, 360


def person_mask(frame: np.ndarray, wall: np.ndarray) -> np.ndarray:
    """The sample clip's true person mask: where the frame differs from the empty wall."""
    return (np.abs(frame.astype(np.int16) - wall).max(-1) > 12).astype(np.float32)


def small(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def carried(color, key_person, gray_key, gray_now, person_now, plate=None) -> np.ndarray:
    """`color` (styled on the key frame) carried onto the current frame."""
    flows = FlowEstimator()
    backward, forward = flows(gray_now, gray_key), flows(gray_key, gray_now)
    size = flow_size(*color.shape[:2])
    key_person = small(key_person, *size)
    to_key, to_key_small = Warp(backward, *color.shape[:2]), Warp(backward, *size)
    return carry(
        color, key_person, to_key, to_key_small, forward, person_now, gray_now, plate
    ).color


def differs_by_rounding(a: np.ndarray, b: np.ndarray) -> bool:
    """The live path blends in uint8, the pipeline in float: at most one level apart."""
    return int(np.abs(a.astype(int) - b).max()) <= 1


@pytest.fixture(scope="module")
def wall() -> np.ndarray:
    return sample_frame(WIDTH, HEIGHT, shift=10 * WIDTH)  # the person out of the picture


def test_a_pure_translation_is_reproduced(astronaut):
    """A view moved by (7, 3) pixels: the old frame's colours land where the new frame has
    them, except the strip that entered the view."""
    big = cv2.resize(astronaut, (WIDTH + 40, HEIGHT + 40), interpolation=cv2.INTER_AREA)
    before, after = big[:HEIGHT, :WIDTH], big[3 : HEIGHT + 3, 7 : WIDTH + 7]
    gray_before, gray_after = flow_gray(before), flow_gray(after)
    person = np.zeros(gray_after.shape, np.float32)
    moved = carried(before, np.zeros((HEIGHT, WIDTH), np.float32), gray_before, gray_after, person)
    inner = (slice(16, HEIGHT - 16), slice(16, WIDTH - 24))
    error = np.abs(moved[inner].astype(float) - after[inner]).mean()
    unmoved = np.abs(before[inner].astype(float) - after[inner]).mean()
    assert error < 4.0
    assert error < 0.2 * unmoved


@pytest.mark.parametrize(("small", "full"), [((180, 320), (360, 640)), ((45, 80), (361, 641))])
def test_warp_maps_from_the_kernel_equal_opencvs_conversion(astronaut, small, full):
    """The compiled kernel's fixed-point maps are OpenCV's (the scaled flow plus the pixel
    grid through cv2.convertMaps) to within one rounding of a 1/32-pixel step, in a few
    pixels at most, and so warp a picture alike."""
    assert fused_norm.kernels(wait=True) is not None, fused_norm.status()
    noise = np.random.default_rng(2).standard_normal((*small, 2)).astype(np.float32)
    flow = cv2.GaussianBlur(noise, (0, 0), 3) * 40.0  # smooth, several pixels long
    fast = Warp(flow, *full)
    with fused_norm.disabled():
        reference = Warp(flow, *full)

    def positions(maps):  # in 1/32 pixels
        whole, fraction = maps
        return np.stack(
            [whole[..., 0] * 32 + (fraction & 31), whole[..., 1] * 32 + (fraction >> 5)], -1
        ).astype(np.int64)

    difference = np.abs(positions(fast._maps) - positions(reference._maps))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    picture = cv2.resize(astronaut, full[::-1], interpolation=cv2.INTER_AREA)
    moved = np.abs(fast(picture).astype(int) - reference(picture))
    assert moved.max() <= 255 // 32 and moved.mean() < 1e-3  # a 1/32 step, in a few pixels
    assert np.array_equal(fast.flow, reference.flow)  # the scaled flow, made on request


def test_round_trip_check_in_one_pass_equals_the_numpy_ops():
    """The compiled forward-backward check samples along the warp's own maps: the same
    valid pixels as the remap and numpy passes, but for rounding at the very threshold."""
    assert fused_norm.kernels(wait=True) is not None, fused_norm.status()
    before, after = flow_gray(sample_frame(640, 360, 0)), flow_gray(sample_frame(640, 360, 12))
    estimate = FlowEstimator()
    backward, forward = estimate(after, before), estimate(before, after)
    warp = Warp(backward, *after.shape)
    fast = round_trip_valid(warp, forward)
    with fused_norm.disabled():
        reference = round_trip_valid(warp, forward)
    assert fast.dtype == bool and fast.shape == after.shape
    assert 0.01 < (~reference).mean() < 0.5  # the moving person fails the check somewhere
    assert (fast != reference).mean() < 1e-3


def test_what_the_person_uncovers_takes_the_wall_not_the_person(wall):
    """The person steps 30 pixels right. In the key, person pixels are red and wall pixels
    blue: after propagation the person is red where they now stand, and the wall they
    uncovered is blue (found by the round-trip check and filled from the wall around)."""
    before, after = sample_frame(WIDTH, HEIGHT, 0), sample_frame(WIDTH, HEIGHT, 30)
    person_before, person_after = person_mask(before, wall), person_mask(after, wall)
    coded = np.where(person_before[..., None] > 0.5, [255, 0, 0], [0, 0, 255]).astype(np.uint8)
    size = flow_size(HEIGHT, WIDTH)
    moved = carried(
        coded, person_before, flow_gray(before), flow_gray(after), small(person_after, *size)
    )
    red = (moved[..., 0] > 128) & (moved[..., 2] < 128)
    blue = (moved[..., 2] > 128) & (moved[..., 0] < 128)
    # Away from the edges (the mask is soft there): the person red, the wall blue.
    kernel = np.ones((9, 9), np.uint8)
    inside = cv2.erode(person_after, kernel) > 0.5
    uncovered = cv2.erode(((person_before > 0.5) & (person_after < 0.5)).astype(np.uint8), kernel)
    uncovered = uncovered > 0
    assert uncovered.sum() > 1000
    assert red[inside].mean() > 0.97
    assert blue[uncovered].mean() > 0.9


def test_the_uncovered_wall_comes_from_the_plate_while_it_looks_the_same(wall):
    """The person steps 30 pixels right, as above. An earlier keyframe saw the whole wall
    (the person stood out of the picture) and styled it green with stripes: the uncovered
    wall takes exactly that, strokes and all, instead of a local mean. Once the wall looks
    different from when the plate saw it (the lights went down), the local mean fills."""
    before, after = sample_frame(WIDTH, HEIGHT, 0), sample_frame(WIDTH, HEIGHT, 30)
    person_before, person_after = person_mask(before, wall), person_mask(after, wall)
    coded = np.where(person_before[..., None] > 0.5, [255, 0, 0], [0, 0, 255]).astype(np.uint8)
    size = flow_size(HEIGHT, WIDTH)
    styled_wall = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    styled_wall[..., 1] = 200
    styled_wall[::4, :, 1] = 90  # strokes a local mean would flatten
    everywhere = np.ones(size, bool)
    no_person = np.zeros(size, np.float32)
    kernel = np.ones((9, 9), np.uint8)
    uncovered = cv2.erode(((person_before > 0.5) & (person_after < 0.5)).astype(np.uint8), kernel)
    uncovered = uncovered > 0
    for lights, expected in ((1.0, styled_wall), (0.6, None)):
        seen = (flow_gray(wall) * lights).astype(np.uint8)
        plate = BackgroundPlate.empty(styled_wall.shape, seen.shape)
        plate = plate.updated(styled_wall, seen, no_person, everywhere)
        moved = carried(
            coded,
            person_before,
            flow_gray(before),
            flow_gray(after),
            small(person_after, *size),
            plate,
        )
        if expected is not None:
            assert np.array_equal(moved[uncovered], expected[uncovered])
        else:  # filled from the wall around, as without a plate
            blue = (moved[..., 2] > 128) & (moved[..., 0] < 128)
            assert blue[uncovered].mean() > 0.9


@pytest.fixture(scope="module")
def moving_clip() -> list[np.ndarray]:
    return [sample_frame(WIDTH, HEIGHT, shift) for shift in range(0, 48, 4)]


def live(style_every: int, plan: StylePlan, bound: CarryBound | None = None) -> LiveStylizer:
    return LiveStylizer(Pipeline(PipelineConfig(), plan), style_every=style_every, bound=bound)


def hold_the_style_thread(pipeline: Pipeline) -> tuple[threading.Event, threading.Event]:
    """Make the style thread's network runs wait inside until `release` is set (the frame
    thread's runs go through); `inside` is set once the style thread is held."""
    inside, release = threading.Event(), threading.Event()
    style_layer = pipeline.style_layer

    def held_in_the_style_thread(analysis):
        if threading.current_thread().name == "partialstyle-style":
            inside.set()
            release.wait(120)
        return style_layer(analysis)

    pipeline.style_layer = held_in_the_style_thread
    return inside, release


# A test machine may take seconds per style run: where the test is not about the age limit,
# it is lifted so that what the test watches happens.
NO_AGE_LIMIT = CarryBound(max_seconds=600.0)


def test_regions_styled_none_keep_the_current_frame_exactly(default_models, moving_clip):
    plan = StylePlan.from_specs("multistyle:8", "none")
    stylizer = live(4, plan)
    masks = Pipeline(PipelineConfig(), plan)
    for number, frame in enumerate(moving_clip):
        out = stylizer.process(frame)
        untouched = masks.person_mask(frame) == 0.0
        assert untouched.mean() > 0.3
        assert np.array_equal(out[untouched], frame[untouched]), f"frame {number}"
        assert np.abs(out.astype(int) - frame)[~untouched].mean() > 20  # the person styled
    assert 3 <= stylizer.stylizations < len(moving_clip)


def test_propagated_frames_follow_the_picture_better_than_held_ones(default_models, moving_clip):
    """Carried along, the stylization follows the moving person: compared with styling each
    frame (blurred, since brush strokes differ from run to run even where nothing moved), it
    is nearer than repeating the last styled frame, and more so as the person moves on."""
    plan = StylePlan.from_specs("multistyle:8", "multistyle:19")
    every = Pipeline(PipelineConfig(), plan)
    stylizer = live(4, plan)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image.astype(np.float32), (0, 0), 6)

    since = 0
    for number, frame in enumerate(moving_clip):
        runs = stylizer.stylizations
        out = stylizer.process(frame)
        reference = every.process(frame)
        if stylizer.stylizations > runs:  # styled in line: a plain run's picture
            assert differs_by_rounding(out, reference), f"frame {number}"
            held, since = out, 0
            continue
        since += 1
        moved = np.abs(blur(out) - blur(reference)).mean()
        repeated = np.abs(blur(held) - blur(reference)).mean()
        assert moved < (0.7 if since >= 3 else 0.95) * repeated, f"frame {number}"


def test_a_still_picture_gives_a_still_output(default_models, astronaut_wide):
    stylizer = live(3, StylePlan.from_specs("multistyle:8", "multistyle:19"))
    outputs = [stylizer.process(astronaut_wide) for _ in range(3)]
    assert np.array_equal(outputs[0], outputs[1]) and np.array_equal(outputs[1], outputs[2])


def test_a_style_change_shows_on_the_next_frame(default_models, astronaut_wide):
    stylizer = live(100, StylePlan.from_specs("multistyle:8", "none"))
    stylizer.process(astronaut_wide)
    new_plan = StylePlan.from_specs("multistyle:2", "multistyle:19")
    stylizer.pipeline.configure(plan=new_plan)
    expected = Pipeline(PipelineConfig(), new_plan).process(astronaut_wide)
    assert differs_by_rounding(stylizer.process(astronaut_wide), expected)


def test_the_background_thread_refreshes_the_style(default_models, moving_clip):
    stylizer = live(0, StylePlan.from_specs("multistyle:8", "none"))
    try:
        for _ in range(3):
            for frame in moving_clip:
                stylizer.process(frame)
        # On a busy machine give the style thread time.
        deadline, extra = time.monotonic() + 60, 0
        while stylizer.stylizations < 2 and time.monotonic() < deadline:
            stylizer.process(moving_clip[extra % len(moving_clip)])
            extra += 1
            time.sleep(0.05)
        assert stylizer.stylizations >= 2  # the first in line, then at least one beside
        assert stylizer.frames == 3 * len(moving_clip) + extra
    finally:
        stylizer.close()


def test_a_style_change_does_not_wait_for_the_style_thread(default_models, moving_clip):
    """A settings change is styled in line even while the style thread is inside a (slow)
    run of the networks, and that run's late, old-style result does not come back: in OBS
    on a busy CPU one run of the style thread can take seconds."""
    stylizer = live(0, StylePlan.from_specs("multistyle:8", "none"), NO_AGE_LIMIT)
    pipeline = stylizer.pipeline
    inside, release = hold_the_style_thread(pipeline)
    first, second, third = moving_clip[0], moving_clip[1], moving_clip[2]
    new_plan = StylePlan.from_specs("multistyle:2", "none")
    try:
        stylizer.process(first)  # in line: the first frame
        stylizer.process(second)  # carried; the style thread takes this frame
        assert inside.wait(60)
        pipeline.configure(plan=new_plan)
        done = []
        frame_thread = threading.Thread(target=lambda: done.append(stylizer.process(third)))
        frame_thread.start()
        frame_thread.join(60)
        assert done, "the new style waited for the style thread"
        release.set()
        old_style_done = stylizer.stylizations + 1  # the held run, finishing now
        deadline = time.monotonic() + 60
        while stylizer.stylizations < old_style_done and time.monotonic() < deadline:
            time.sleep(0.05)
        after = stylizer.process(third)
    finally:
        release.set()
        stylizer.close()
    expected = Pipeline(PipelineConfig(), new_plan).process(third)
    old = Pipeline(PipelineConfig(), StylePlan.from_specs("multistyle:8", "none")).process(third)
    assert differs_by_rounding(done[0], expected)
    assert (
        np.abs(after.astype(int) - expected).mean() < 0.2 * np.abs(after.astype(int) - old).mean()
    )


def test_video_style_every_carries_the_style_along(default_models, tmp_path, moving_clip, capsys):
    """`partialstyle video --style-every 4`: the live path from the command line, with the
    person styled on every frame and the wall (style none) kept."""
    from partialstyle.commands.cli import main
    from partialstyle.obs.sample_clip import write_clip

    clip = write_clip(tmp_path / "moving.avi", moving_clip, WIDTH, HEIGHT, 30)
    out = tmp_path / "styled.avi"
    command = ["video", str(clip), str(out), "--person-style", "multistyle:8"]
    assert main([*command, "--background-style", "none", "--style-every", "4", "--quiet"]) == 0
    capture = cv2.VideoCapture(str(out))
    frames = []
    while (read := capture.read())[0]:
        frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    assert len(frames) == len(moving_clip)
    for frame, source in zip(frames, moving_clip, strict=True):
        changed = np.abs(frame.astype(int) - source).mean(-1) > 30
        assert 0.1 < changed.mean() < 0.7  # the person styled, the wall not
    assert main([*command, "--style-every", "0"]) == 2
    assert "--style-every" in capsys.readouterr().err


# -- the bound ------------------------------------------------------------------------------


def person_error(out: np.ndarray, reference: np.ndarray, frame: np.ndarray, wall) -> float:
    """Mean |out − reference| (0–255) over the true person region, eroded so that the soft
    edge does not count: what the live path's quality bound is stated in."""
    inner = cv2.erode(person_mask(frame, wall), np.ones((9, 9), np.uint8)) > 0.5
    return float(np.abs(out.astype(np.float32) - reference)[inner].mean())


def sliding_clip(speed: int, count: int) -> list[np.ndarray]:
    """The sample person sliding sideways `speed` pixels a frame."""
    return [sample_frame(WIDTH, HEIGHT, speed * index - 40) for index in range(count)]


# The OBS filter's defaults (stabilize 0.5 among them: without it the style networks repaint
# their strokes differently after a shift of even one pixel, 15–20 levels apart), with
# deterministic masks.
LIVE_CONFIG = replace(
    to_pipeline({})[0], segmenter="selfie-landscape", temporal_smoothing=0.0, threads=None
)
PERSON_ONLY = StylePlan.from_specs("multistyle:19", "none")


@pytest.mark.parametrize("speed", [2, 6])
def test_carried_frames_stay_within_the_bound_on_a_known_translation(default_models, wall, speed):
    """The person slides `speed` pixels a frame: styled once, then carried until the bound
    says no more. Every carried frame matches the keyframe's styling moved by the true
    motion (≤ 12 levels over the person, eroded; 5–9 measured, from the flow's sub-pixel
    error on fine strokes), for the bound's whole length, and the
    faster the motion the sooner the style is refreshed. (Against styling each frame anew
    the figure is larger whatever the carry does: the networks repaint their strokes after
    a shift of one pixel; `partialstyle bench` reports that comparison.)"""
    clip = sliding_clip(speed, 24)
    stylizer = LiveStylizer(Pipeline(LIVE_CONFIG, PERSON_ONLY), style_every=1000)
    bound, errors, hows, styled = stylizer.bound, [], "", {}
    for number, frame in enumerate(clip):
        out = stylizer.process(frame)
        report = stylizer.report
        hows += report.how[0]
        if report.how == "styled":
            styled[number] = out
            continue
        assert report.motion <= bound.max_motion and report.filled <= bound.max_filled
        truth = np.roll(styled[report.keyframe], speed * (number - report.keyframe), axis=1)
        errors.append(person_error(out, truth, frame, wall))
    assert errors and max(errors) <= 12.0, errors
    # The bound in pixels (11% of 360 lines: 39.6): a run of carried frames spans about
    # that many pixels' worth of frames.
    pixels = int(bound.max_motion * clip[0].shape[0])
    longest = max(len(run) for run in hows.split("s"))
    assert pixels // speed - 2 <= longest <= pixels // speed + 1, hows


def test_blocked_style_networks_cost_frame_rate_not_quality(default_models, wall):
    """With the style thread stuck inside a run, frames past the bound wait for it (up to
    `max_wait`), then are styled in line: each output is still the person styled in place,
    never a keyframe carried past the bound."""
    bound = CarryBound(max_wait=0.2, max_seconds=600.0)
    stylizer = LiveStylizer(Pipeline(LIVE_CONFIG, PERSON_ONLY), bound=bound)
    pipeline, every = stylizer.pipeline, Pipeline(LIVE_CONFIG, PERSON_ONLY)
    inside, release = hold_the_style_thread(pipeline)
    reports, errors = [], []
    try:
        for frame in sliding_clip(6, 10):
            out = stylizer.process(frame)
            reports.append(stylizer.report)
            errors.append(person_error(out, every.process(frame), frame, wall))
    finally:
        release.set()
        stylizer.close()
    assert inside.is_set()  # the style thread took a frame and is stuck with it
    for report in reports:
        assert report.how != "carried" or report.motion <= bound.max_motion
    waited = [report for report in reports if report.waited]
    assert waited and all(report.how == "styled" for report in waited)
    assert max(errors) <= 18.0, errors


def test_video_realtime_shows_what_obs_would(default_models, tmp_path, capsys):
    """`partialstyle video --realtime`: the clip at its own pace through the live path with
    the style thread beside it; every output frame shows the person styled and the wall
    untouched, and the summary line says how many source frames reached the output."""
    from partialstyle.commands.cli import main
    from partialstyle.obs.sample_clip import write_clip

    clip = sliding_clip(3, 24)
    source = write_clip(tmp_path / "sliding.avi", clip, WIDTH, HEIGHT, 10)
    out = tmp_path / "live.avi"
    command = ["video", str(source), str(out), "--person-style", "multistyle:19"]
    assert main([*command, "--background-style", "none", "--realtime", "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "source frames/s shown" in summary
    capture = cv2.VideoCapture(str(out))
    frames = []
    while (read := capture.read())[0]:
        frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    assert len(frames) == len(clip)
    changed = [np.abs(f.astype(int) - s).mean(-1) > 30 for f, s in zip(frames, clip, strict=True)]
    styled = [0.05 < mask.mean() < 0.7 for mask in changed]  # the person, not the wall
    # Until the first result the source shows as it is (OBS too); from then on, styled.
    first = styled.index(True)
    assert first < len(clip) // 2 and all(styled[first:]), styled
