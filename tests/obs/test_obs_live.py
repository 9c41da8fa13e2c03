"""The filter is live in the real OBS: every frame the source shows comes out styled, in step.

A clip of the sample person swaying sideways, each frame tagged with its number (see
frame_tags), plays in the shared session's media source. OBS records its own output: first
with the filter off (which gives the recording's frame clock against the clip's), then on.
From the recording: how many fresh styled frames per second, how many frames the styled
output trails the newest source frame, whether the styled person sits where the person is.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from frame_tags import moving_frames, read_tag
from obs_harness import CAMERA, FILTER, FPS, HEIGHT, WIDTH, ObsSession, read_video

from partialstyle.obs.sample_clip import write_clip

pytestmark = pytest.mark.obs

COUNT = 120  # 4 s at 30 fps, a swing there and back
SWAY = 60  # pixels either side: up to 6 pixels of motion per frame
LIVE_SETTINGS = {"person_style": "multistyle:8", "background_style": "none"}
# Output pixels this far from the source frame they came from count as styled.
STYLED_LEVEL = 30


def record(session: ObsSession, off_seconds: float, on_seconds: float) -> tuple[Path, dict]:
    """Record the canvas with the filter off, then on; returns the file and OBS's frame
    statistics over the time the filter was on."""
    client = session.client
    client.set_source_filter_enabled(CAMERA, FILTER, False)
    client.start_record()
    time.sleep(off_seconds)
    client.set_source_filter_enabled(CAMERA, FILTER, True)
    time.sleep(1.0)  # the first results after enabling
    before = client.get_stats()
    time.sleep(on_seconds)
    after = client.get_stats()
    path = session.stop_recording()
    total = after.render_total_frames - before.render_total_frames
    skipped = after.render_skipped_frames - before.render_skipped_frames
    return path, {"render_frames": total, "skipped_render_frames": skipped}


def styled_person(image: np.ndarray, source: np.ndarray) -> bool:
    """Whether the filter styled the person: many pixels far from the source frame's."""
    changed = np.abs(image.astype(np.int16) - source.astype(np.int16)).mean(-1) > STYLED_LEVEL
    return int(changed[HEIGHT // 3 :].sum()) > 500


def analyse(recorded: list[np.ndarray], clip: list[np.ndarray]) -> dict:
    tags = [read_tag(frame) for frame in recorded]
    styled = [
        tag is not None and styled_person(frame, clip[tag])
        for frame, tag in zip(recorded, tags, strict=True)
    ]
    assert True in styled, f"no styled frame in the recording ({len(recorded)} frames)"
    first_styled = styled.index(True)
    # The clock: with the filter off, the recording shows the clip's current frame.
    offsets = [(tag - k) % COUNT for k, tag in enumerate(tags[:first_styled]) if tag is not None]
    assert offsets, (
        f"no tagged frame before the first styled one (frame {first_styled} of "
        f"{len(recorded)}; tags read in {sum(t is not None for t in tags)} frames)"
    )
    offset = int(np.bincount(offsets).argmax())
    start = first_styled + FPS  # one second after the first styled frame
    window = range(start, len(recorded))
    lags, fresh = [], 0
    for k in window:
        tag = tags[k]
        if tag is None or not styled[k]:
            continue
        lags.append((k + offset - tag) % COUNT)
        if tag != tags[k - 1]:
            fresh += 1
    seconds = len(window) / FPS
    return {
        "seconds": round(seconds, 2),
        "styled_share": round(sum(styled[start:]) / len(window), 3),
        "fresh_styled_fps": round(fresh / seconds, 2),
        "lag_frames_median": float(np.median(lags)),
        "lag_frames_p90": float(np.percentile(lags, 90)),
    }


def test_output_follows_a_moving_person_frame_by_frame(obs_session, record_property):
    """Every source frame comes out styled and in step: fresh styled frames at ≥ 15 per
    second, trailing the source by ≤ 3 frames (median), ≤ 1% skipped render frames are the
    targets (asserted with a margin, see below). Where the styled person sits is
    checked by the propagation's own tests (tests/test_live.py)."""
    session, client = obs_session, obs_session.client
    clip = moving_frames(COUNT, WIDTH, HEIGHT, SWAY)
    path = write_clip(session.root / "moving.avi", clip, WIDTH, HEIGHT, FPS)
    still = client.get_input_settings(CAMERA).input_settings["local_file"]
    client.set_input_settings(CAMERA, {"local_file": str(path)}, True)
    client.set_source_filter_settings(CAMERA, FILTER, LIVE_SETTINGS, False)
    try:
        # The media source has switched to the tagged clip (its frames carry numbers) ...
        session.wait_for(
            lambda: read_tag(session.screenshot()) is not None, 30, what="the tagged clip playing"
        )
        # ... and the filter styles it (the statistics are per second: wait for a fresh one).
        results = session.filter_stats().get(FILTER, {}).get("results", 0)
        session.wait_for(
            lambda: (
                session.filter_stats().get(FILTER, {}).get("results", 0) > results + 10
                and session.filter_stats()[FILTER].get("processed_fps", 0) > 5
            ),
            60,
            what="styled frames from the moving clip",
        )
        video, obs_numbers = record(session, off_seconds=3.0, on_seconds=8.0)
        numbers = analyse(read_video(video), clip)
        numbers.update(obs_numbers)
        numbers["filter"] = session.filter_stats().get(FILTER, {})
    finally:
        client.set_input_settings(CAMERA, {"local_file": still}, True)
    print(json.dumps(numbers, indent=1))
    (session.root / "live.json").write_text(json.dumps(numbers, indent=1))
    for key, value in numbers.items():
        record_property(key, value)
    # The targets (≥ 15 fresh frames/s, ≤ 3 frames behind, ≤ 1% skipped) are benchmark
    # figures, reported in the README from this test's output; the assertions hold a margin
    # for the shared CI machine and still fail clearly when the output is not live (before
    # the live path: 1.5–2 fresh frames/s, 16 frames behind).
    assert numbers["styled_share"] > 0.95
    assert numbers["fresh_styled_fps"] >= 10
    assert numbers["lag_frames_median"] <= 4
    assert numbers["skipped_render_frames"] <= 0.03 * max(numbers["render_frames"], 1)
