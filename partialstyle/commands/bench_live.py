"""What the live path shows and costs: the OBS filter's scheduling, measured without OBS.

- Cost of one frame on one thread (what OBS's default leaves the filter), at 640×360 and
  1280×720 (360-line processing): a carried frame (flow, carry, blend), the same with
  segmentation, and one style run.
- What a viewer sees: clips of a real photo sliding 2, 4 and 8 px a frame and turning, played
  at 30 fps through `RealtimeStylizer` (the filter's policy, style thread beside), person in a
  style and background `none`. Per output frame, the person region against the library
  styling the same source frame (mean |difference| over the eroded person, 0–255: median and
  90th percentile), the share within the quality bound (18), distinct source frames per
  second reaching the output, how many frames the output trails the source, keyframe age.
- Temporal consistency (Lai et al. 2018, "warping error"): the mean squared difference
  between consecutive output frames after moving the earlier one by the clip's true motion
  (known: the person slides, the wall stands), over the pixels visible in both, ×1000 on a
  0–1 scale; for styling every frame and for the live path. Lower is steadier.
"""

from __future__ import annotations

import time
from dataclasses import replace

import cv2
import numpy as np
import torch

from partialstyle.live import LiveStylizer
from partialstyle.live.realtime import RealtimeStylizer
from partialstyle.obs.sample_clip import sample_frame, sliding_shifts
from partialstyle.obs.settings import to_pipeline
from partialstyle.pipeline import Pipeline

LIVE_SETTINGS = {"person_style": "multistyle:19", "background_style": "none"}
SPEEDS = (2, 4, 8)
FPS = 30
WITHIN = 18.0  # the quality bound, as in the real-OBS test
_ERODE = np.ones((9, 9), np.uint8)


def _config(device: torch.device):
    config, plan = to_pipeline(LIVE_SETTINGS)
    return replace(config, device=str(device), temporal_smoothing=0.0, threads=1), plan


def _timed(function, repeats: int) -> float:
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return 1000.0 * (time.perf_counter() - started) / repeats


def frame_costs(device: torch.device, width: int, height: int, repeats: int = 20) -> dict:
    """ms on one thread: a carried frame without and with segmentation, and a style run."""
    config, plan = _config(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        first, moved = sample_frame(width, height, 0), sample_frame(width, height, 6)
        stylizer = LiveStylizer(Pipeline(config, plan), style_every=10**9)
        stylizer.process(first, 0.0)
        stylizer.segment_every = 10**9  # the masks of the keyframe's frame, moved
        carried = _timed(lambda: stylizer.process(moved, 0.01), repeats)
        stylizer.segment_every = 1
        segmented = _timed(lambda: stylizer.process(moved, 0.01), repeats)
        pipeline = stylizer.pipeline
        analysis = pipeline.analyse(moved)
        style = _timed(lambda: pipeline.style_layer(analysis), max(3, repeats // 4))
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(-1)
    return {
        "carried_ms": round(carried, 2),
        "carried_segmented_ms": round(segmented, 2),
        "style_run_ms": round(style, 1),
    }


def _person_regions(clip: list[np.ndarray]) -> list[np.ndarray]:
    wall = sample_frame(640, 360, 6400).astype(np.int16)
    return [
        cv2.erode((np.abs(frame.astype(np.int16) - wall).max(-1) > 12).astype(np.uint8), _ERODE) > 0
        for frame in clip
    ]


def warping_error(
    outputs: list[np.ndarray], sources: list[int], shifts: list[int], regions: list[np.ndarray]
) -> float:
    """Lai et al.'s warping error of a displayed sequence: output k against output k − 1
    moved by the true motion between the source frames they show (person pixels slide by the
    shift difference, the wall stays), over pixels inside the person in both or far from it
    in both; mean squared difference on a 0–1 scale, ×1000."""
    errors = []
    for k in range(1, len(outputs)):
        now, before = sources[k], sources[k - 1]
        step = shifts[now] - shifts[before]
        moved = np.roll(outputs[k - 1], step, axis=1).astype(np.float32)
        person_now, person_before = regions[now], np.roll(regions[before], step, axis=1)
        near = cv2.dilate((regions[now] | regions[before]).astype(np.uint8), _ERODE) > 0
        wall = ~near
        previous = np.where(wall[..., None], outputs[k - 1], moved)
        valid = (person_now & person_before) | wall
        difference = (outputs[k].astype(np.float32) - previous) / 255.0
        errors.append(float((difference[valid] ** 2).mean()))
    return round(1000.0 * float(np.mean(errors)), 3)


def _region_error(image: np.ndarray, reference: np.ndarray, region: np.ndarray) -> float:
    return float(np.abs(image.astype(np.float32) - reference)[region].mean())


def played(device: torch.device, speed: int, frames: int) -> dict:
    """One sliding clip played in real time, and styled every frame, compared."""
    config, plan = _config(device)
    shifts = sliding_shifts(frames, speed)
    clip = [sample_frame(640, 360, shift) for shift in shifts]
    regions = _person_regions(clip)
    every = Pipeline(config, plan)
    for frame in clip:  # the stabilizer's history, as a looping source has it
        every.process(frame)
    reference = [every.process(frame) for frame in clip]
    player = RealtimeStylizer(LiveStylizer(Pipeline(config, plan)), FPS)
    try:
        outputs = [player.process(frame) for frame in clip]
    finally:
        player.close()
    record = player.record
    shown = record.shown
    errors = [
        _region_error(out, reference[source], regions[source])
        for out, source in zip(outputs, shown, strict=True)
    ]
    # The floor of this comparison: the previous frame's own styling moved by the true
    # motion, against styling the frame itself (the networks are not shift-invariant).
    exact = [
        _region_error(
            np.roll(reference[k - 1], shifts[k] - shifts[k - 1], axis=1), reference[k], regions[k]
        )
        for k in range(1, frames)
    ]
    within = [k for k, error in enumerate(errors) if error <= WITHIN]
    fresh = {shown[k] for k in within}  # distinct source frames shown within the bound
    seconds = frames / FPS
    ages = [age for age in record.keyframe_ages if age is not None]
    return {
        "person_error_median": round(float(np.median(errors)), 2),
        "person_error_p90": round(float(np.percentile(errors, 90)), 2),
        "exact_carry_error_median": round(float(np.median(exact)), 2),
        "exact_carry_error_p90": round(float(np.percentile(exact, 90)), 2),
        "within_bound_share": round(len(within) / len(errors), 3),
        "fresh_within_bound_fps": round(len(fresh) / seconds, 1),
        "distinct_source_fps": round(len(set(shown)) / seconds, 1),
        "lag_frames_median": float(np.median([k - s for k, s in enumerate(shown)])),
        "keyframe_age_frames_median": round(float(np.median(ages)), 1),
        "warping_error_live": warping_error(outputs, shown, shifts, regions),
        "warping_error_every_frame": warping_error(reference, list(range(frames)), shifts, regions),
    }


def live_benchmark(device: torch.device, quick: bool = False) -> dict:
    results = {
        "frame_640x360": frame_costs(device, 640, 360, 10 if quick else 20),
        "frame_1280x720": frame_costs(device, 1280, 720, 10 if quick else 20),
    }
    for speed in (4,) if quick else SPEEDS:
        results[f"sliding_{speed}px"] = played(device, speed, 60 if quick else 120)
    return results


def print_live(results: dict) -> None:
    print("\nlive path, one thread (ms): carried frame / with segmentation / one style run")
    for size in ("640x360", "1280x720"):
        row = results[f"frame_{size}"]
        print(
            f"  {size:10} {row['carried_ms']:7.2f} {row['carried_segmented_ms']:7.2f} "
            f"{row['style_run_ms']:7.1f}"
        )
    print(
        "live path at 30 fps, person vs styling each frame (median/p90, 0-255), fresh frames/s"
        " within the bound, lag, keyframe age (frames), warping error live/every frame;"
        " exact carry: the floor of the comparison (median/p90)"
    )
    for name, row in results.items():
        if name.startswith("sliding_"):
            print(
                f"  {name:12} {row['person_error_median']:6.2f} {row['person_error_p90']:6.2f}"
                f"  {row['fresh_within_bound_fps']:5.1f}/s  lag {row['lag_frames_median']:4.1f}"
                f"  age {row['keyframe_age_frames_median']:4.1f}  warp "
                f"{row['warping_error_live']:.3f}/{row['warping_error_every_frame']:.3f}"
                f"  exact carry {row['exact_carry_error_median']:.1f}/"
                f"{row['exact_carry_error_p90']:.1f}"
            )
