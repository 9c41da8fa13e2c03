"""The filter inside the real OBS Studio, driven through obs-websocket.

The tests share one OBS session and run in file order. The camera source comes with the
filter from the scene collection; the source loops a still clip, so every frame is comparable
with what the library's own Pipeline makes of the same frame.

With PARTIALSTYLE_WRITE_README_IMAGES=1 the tests also save small JPEGs of what OBS shows to
tests/readme/ (the README's pictures).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import obsws_python
import pytest
from obs_harness import (
    CAMERA,
    FILTER,
    FILTER_SETTINGS,
    FPS,
    HEIGHT,
    HOTKEY_KEYS,
    WIDTH,
    ObsSession,
    read_video,
)

from partialstyle.obs import settings as filter_settings
from partialstyle.obs.sample_clip import write_sample_clip

pytestmark = pytest.mark.obs

KIND = "partialstyle_filter"
EXACT = FILTER_SETTINGS
README_IMAGES = Path(__file__).resolve().parent.parent / "readme"
README_IMAGE_LIMIT = 80_000  # bytes


def pipeline_for(values: dict):
    from partialstyle.pipeline import Pipeline

    config, plan = filter_settings.to_pipeline(values)
    return Pipeline(config, plan)


def region_error(image: np.ndarray, reference: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute difference (0-255) over the pixels where `region` is True."""
    difference = np.abs(image.astype(np.float32) - reference.astype(np.float32)).mean(axis=-1)
    return float(difference[region].mean())


def save(session: ObsSession, **images: np.ndarray) -> None:
    """Keep images beside the OBS log, for looking at a failure."""
    for name, image in images.items():
        cv2.imwrite(str(session.root / f"{name}.png"), np.ascontiguousarray(image[..., ::-1]))


def readme_image(name: str, *images: np.ndarray, width: int = 320) -> None:
    """Save `images` side by side, each scaled to `width`, as tests/readme/<name>.jpg.

    Only with PARTIALSTYLE_WRITE_README_IMAGES=1; the JPEG must stay small enough to commit.
    """
    if os.environ.get("PARTIALSTYLE_WRITE_README_IMAGES") != "1":
        return
    scaled = [
        cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1])), cv2.INTER_AREA)
        for image in images
    ]
    path = README_IMAGES / f"{name}.jpg"
    picture = np.ascontiguousarray(np.hstack(scaled)[..., ::-1])
    cv2.imwrite(str(path), picture, [cv2.IMWRITE_JPEG_QUALITY, 82])
    assert path.stat().st_size < README_IMAGE_LIMIT, f"{path} is too big to commit"


def process_info(pid: int) -> dict:
    """Command line, parent and nice value of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return {
        "command": [part.decode() for part in command if part],
        "parent": int(fields[1]),
        "nice": int(fields[16]),
    }


def pid_gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" in status.read_text()  # a zombie waits only for its reaper
    except OSError:
        return True


def results(session: ObsSession, name: str = FILTER) -> int:
    return session.filter_stats().get(name, {}).get("results", 0)


def wait_for_new_results(session: ObsSession, count: int = 2, name: str = FILTER) -> None:
    start = results(session, name)
    session.wait_for(
        lambda: results(session, name) >= start + count, 90, what=f"{count} new results"
    )


def input_frame(session: ObsSession, source: str = CAMERA, name: str = FILTER, **size):
    """The source without the filter (disabled for the screenshot, then enabled again)."""
    session.client.set_source_filter_enabled(source, name, False)
    time.sleep(0.3)
    frame = session.screenshot(source, **size)
    session.client.set_source_filter_enabled(source, name, True)
    return frame


@pytest.fixture(autouse=True)
def filter_as_the_session_has_it(obs_session: ObsSession):
    """Each test leaves the filter as it found it (enabled, the session's settings), even when
    it fails midway: one failure must not show up again as the next tests' failures."""
    yield
    client = obs_session.client
    client.set_source_filter_settings(CAMERA, FILTER, EXACT)
    client.set_source_filter_enabled(CAMERA, FILTER, True)


@pytest.fixture(scope="module")
def styled(obs_session: ObsSession) -> dict:
    """The filter on the camera with two styles; the input frame, mask and references."""
    wait_for_new_results(obs_session, 1)
    frame = input_frame(obs_session)
    pipeline = pipeline_for(EXACT)
    mask = pipeline.person_mask(frame)
    return {"frame": frame, "mask": mask, "expected": pipeline.process(frame)}


def test_filter_loads_from_the_collection_and_infers_outside_obs(obs_session, styled):
    reply = obs_session.client.get_source_filter(CAMERA, FILTER)
    assert reply.filter_kind == KIND and reply.filter_enabled
    assert reply.filter_settings["background_style"] == "multistyle:19"
    stats = obs_session.filter_stats()[FILTER]
    assert stats["state"] == "ready" and stats["error"] is None
    child = process_info(stats["inference_pid"])
    assert child["parent"] == obs_session.obs.pid
    python, *arguments = child["command"]
    assert Path(python).parent.resolve() == (Path(sys.prefix) / "bin").resolve()  # our venv
    assert arguments[:2] == ["-m", "partialstyle.obs.inference_server"]
    assert child["nice"] == 10
    obs_libraries = Path(f"/proc/{obs_session.obs.pid}/maps").read_text()
    assert "libpython3" in obs_libraries and "libtorch" not in obs_libraries


def test_person_and_background_carry_their_own_styles(obs_session, styled):
    wait_for_new_results(obs_session)
    shot = obs_session.screenshot()
    person, background = styled["mask"] > 0.9, styled["mask"] < 0.1
    assert person.mean() > 0.1 and background.mean() > 0.2  # a real person in a real scene
    frame = styled["frame"]
    person_everywhere = pipeline_for({**EXACT, "background_style": EXACT["person_style"]})
    background_everywhere = pipeline_for({**EXACT, "person_style": EXACT["background_style"]})
    wrong_person = background_everywhere.process(frame)
    wrong_background = person_everywhere.process(frame)
    save(obs_session, frame=frame, shot=shot, expected=styled["expected"])
    readme_image("obs-before-after", frame, shot)
    for region, wrong in ((person, wrong_person), (background, wrong_background)):
        right_error = region_error(shot, styled["expected"], region)
        assert right_error < 12.0
        assert right_error < 0.5 * region_error(shot, wrong, region)
        assert region_error(shot, frame, region) > 3 * right_error  # styled, not passed through


@contextlib.contextmanager
def polling_screenshots(session, per_second: float = 4.0):
    """A second websocket client taking screenshots of the source, as stream tools and
    dashboards do; on software rendering each one holds OBS's graphics thread for a while,
    so OBS renders late and the filter's pacing backs off."""
    client = obsws_python.ReqClient(host="127.0.0.1", port=session.port, password="", timeout=30)
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(1.0 / per_second):
            with contextlib.suppress(Exception):
                client.get_source_screenshot(CAMERA, "png", WIDTH, HEIGHT, -1)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        client.disconnect()


@pytest.mark.parametrize("polled", [False, True], ids=["quiet", "screenshots-polled"])
def test_switching_a_style_shows_within_a_second(obs_session, styled, polled):
    """The new style is in OBS's output within 1 s of the request (fade included; asserted
    at 2 s for the shared CI machine), read from OBS's own recording, also while another
    client polls screenshots 4 times a second (backing off for OBS must never delay a change
    the user asked for)."""
    frame, person = styled["frame"], styled["mask"] > 0.9
    expected_new = pipeline_for({**EXACT, "person_style": "multistyle:20"}).process(frame)
    old = styled["expected"]
    client = obs_session.client
    polling = polling_screenshots(obs_session) if polled else contextlib.nullcontext()
    with polling:
        time.sleep(3.0 if polled else 0.0)  # long enough for the pacing to back off
        client.start_record()
        recording = time.monotonic()
        time.sleep(1.5)
        switch_at = time.monotonic() - recording
        client.set_source_filter_settings(CAMERA, FILTER, {"person_style": "multistyle:20"})
        time.sleep(3.0)
        frames = read_video(obs_session.stop_recording())
    new_style = [
        region_error(shot, expected_new, person) < 0.5 * region_error(shot, old, person)
        for shot in frames
    ]
    assert True in new_style, f"the new style never showed in {len(frames)} recorded frames"
    first = new_style.index(True)
    assert first > FPS // 2, "the recording showed the new style before it was asked for"
    elapsed = first / FPS - switch_at
    name = "switch-polled.json" if polled else "switch.json"
    (obs_session.root / name).write_text(json.dumps({"seconds": elapsed}))
    print(f"style switch visible after {elapsed:.2f} s (screenshots polled: {polled})")
    if not polled:
        readme_image("obs-style-switch", styled["expected"], frames[-1])
    assert elapsed <= 2.0


def test_hotkeys_cycle_styles_and_toggle_the_effect(obs_session, styled):
    """The filter's own hotkeys: listed, pressed through the keys the scene collection binds
    to them (so bindings load with the collection), and triggered by name.

    Each bound key is pressed once: libobs lets go of an injected key press only when its
    hotkey thread next polls the keyboard, and drops a second press of the same key that
    comes before that (seen: a third of quick double presses lost). A repeat goes by name.
    """
    client = obs_session.client

    def setting(key: str):
        return client.get_source_filter(CAMERA, FILTER).filter_settings[key]

    def enabled() -> bool:
        return client.get_source_filter(CAMERA, FILTER).filter_enabled

    def press(hotkey: str) -> None:
        client.trigger_hotkey_by_key_sequence(HOTKEY_KEYS[hotkey], False, False, False, False)

    assert set(HOTKEY_KEYS) <= set(client.get_hotkey_list().hotkeys)
    steps = (
        ("partialstyle_next_background_style", "background_style", "multistyle:20"),
        ("partialstyle_previous_background_style", "background_style", "multistyle:19"),
        ("partialstyle_previous_person_style", "person_style", "multistyle:7"),
        ("partialstyle_next_person_style", "person_style", "multistyle:8"),
    )
    for hotkey, key, value in steps:
        press(hotkey)
        obs_session.wait_for(lambda key=key, value=value: setting(key) == value, 10, what=hotkey)
    press("partialstyle_toggle")
    obs_session.wait_for(lambda: not enabled(), 10, what="the filter switched off")
    client.trigger_hotkey_by_name("partialstyle_toggle")
    obs_session.wait_for(enabled, 10, what="the filter switched on")
    client.trigger_hotkey_by_name("partialstyle_next_person_style")
    obs_session.wait_for(lambda: setting("person_style") == "multistyle:9", 10)
    client.trigger_hotkey_by_name("partialstyle_previous_person_style")
    obs_session.wait_for(lambda: setting("person_style") == "multistyle:8", 10)
    time.sleep(1.0)  # nothing arrives late
    assert enabled() and setting("background_style") == "multistyle:19"
    assert setting("person_style") == "multistyle:8"


def test_disabled_filter_passes_through_and_comes_back(obs_session, styled):
    frame = styled["frame"]
    obs_session.client.set_source_filter_enabled(CAMERA, FILTER, False)
    time.sleep(0.3)
    assert np.abs(obs_session.screenshot().astype(int) - frame).mean() < 2.0
    obs_session.client.set_source_filter_enabled(CAMERA, FILTER, True)
    obs_session.wait_for(
        lambda: np.abs(obs_session.screenshot().astype(int) - frame).mean() > 20,
        2,
        interval=0.05,
        what="the styled frame after re-enabling",
    )


def test_source_resolution_change(obs_session, styled):
    small = write_sample_clip(obs_session.root / "person-small.avi", 480, 270, FPS, sway=0)
    client = obs_session.client
    client.set_input_settings(CAMERA, {"local_file": str(small)}, True)
    try:
        size = {"width": 480, "height": 270}
        obs_session.wait_for(
            lambda: obs_session.screenshot(**size).shape[:2] == (270, 480), 10, what="480x270"
        )
        wait_for_new_results(obs_session)
        plain = input_frame(obs_session, **size)
        obs_session.wait_for(
            lambda: np.abs(obs_session.screenshot(**size).astype(int) - plain).mean() > 20,
            10,
            what="styled 480x270 frames",
        )
    finally:
        client.set_input_settings(CAMERA, {"local_file": str(obs_session.clip)}, True)
    wait_for_new_results(obs_session)
    assert obs_session.filter_stats()[FILTER]["error"] is None


def test_two_instances_on_two_sources(obs_session, styled):
    client = obs_session.client
    second = "Camera 2"
    client.create_input("Scene", second, "ffmpeg_source", {
        "is_local_file": True, "local_file": str(obs_session.clip), "looping": True,
    }, True)  # fmt: skip
    try:
        other = {"person_style": "multistyle:1", "background_style": "multistyle:2"}
        client.create_source_filter(second, "Other style", KIND, other)
        wait_for_new_results(obs_session, 2, name="Other style")
        wait_for_new_results(obs_session, 1)
        first, second_shot = obs_session.screenshot(), obs_session.screenshot(second)
        frame = styled["frame"]
        assert np.abs(second_shot.astype(int) - frame).mean() > 20  # styled
        assert np.abs(second_shot.astype(int) - first).mean() > 20  # in its own styles
        assert region_error(first, styled["expected"], styled["mask"] < 0.1) < 12.0
        child = obs_session.filter_stats()["Other style"]["inference_pid"]
        assert child == obs_session.filter_stats()[FILTER]["inference_pid"]  # one, shared
    finally:
        client.remove_input(second)
    obs_session.wait_for(
        lambda: "Other style" not in obs_session.filter_stats(), 10, what="the filter destroyed"
    )
    wait_for_new_results(obs_session, 2)  # the first filter keeps the shared process
    assert obs_session.filter_stats()[FILTER]["inference_pid"] == child and not pid_gone(child)


def test_two_people_each_in_their_own_style(obs_session, styled):
    """Issue 4 in OBS: a clip of two people apart, person1_style and person2_style differ;
    each person (and the background) matches the library's output for the same frame and
    plan, and not the output with the two people's styles swapped."""
    client = obs_session.client
    source, name = "Two people", "Per person"
    clip = write_sample_clip(obs_session.root / "two.avi", WIDTH, HEIGHT, FPS, sway=0, people=2)
    chosen = {
        "person1_style": "multistyle:8",
        "person2_style": "multistyle:20",
        "background_style": "multistyle:19",
        "temporal_smoothing": 0.0,
        "stabilize": 0.0,  # each shot is one frame's result, as the library's is
    }
    swapped = {**chosen, "person1_style": "multistyle:20", "person2_style": "multistyle:8"}
    client.create_input("Scene", source, "ffmpeg_source", {
        "is_local_file": True, "local_file": str(clip), "looping": True,
    }, True)  # fmt: skip
    try:
        client.create_source_filter(source, name, KIND, chosen)
        wait_for_new_results(obs_session, 3, name=name)
        frame = input_frame(obs_session, source, name)
        wait_for_new_results(obs_session, 3, name=name)
        shot = obs_session.screenshot(source)
        child = obs_session.filter_stats()[name]["inference_pid"]
    finally:
        client.remove_input(source)
    reference = pipeline_for(chosen)
    mask = reference.person_mask(frame)
    expected, wrong = reference.process(frame), pipeline_for(swapped).process(frame)
    other_background = pipeline_for({**chosen, "background_style": "multistyle:3"}).process(frame)
    save(obs_session, two_frame=frame, two_shot=shot, two_expected=expected)
    readme_image("obs-two-people", frame, shot)
    columns = np.arange(WIDTH)[None, :]
    first, second = (mask > 0.9) & (columns < WIDTH // 2), (mask > 0.9) & (columns >= WIDTH // 2)
    background = mask < 0.1
    assert first.mean() > 0.1 and second.mean() > 0.1 and background.mean() > 0.2
    for region in (first, second):
        right_error = region_error(shot, expected, region)
        assert right_error < 12.0
        assert right_error < 0.5 * region_error(shot, wrong, region)
    right_error = region_error(shot, expected, background)
    assert right_error < 12.0
    assert right_error < 0.5 * region_error(shot, other_background, background)
    assert region_error(shot, frame, background) > 3 * right_error
    assert not pid_gone(child)  # shared with the camera's filter, which still runs


def test_default_settings_keep_obs_rendering_on_time(obs_session, styled, record_property):
    """≤1% of render frames skipped on a 640×360 30 fps canvas, with the default settings."""
    client = obs_session.client
    client.set_source_filter_settings(CAMERA, FILTER, {}, False)  # back to the defaults
    assert client.get_source_filter(CAMERA, FILTER).filter_settings == {}
    wait_for_new_results(obs_session, 3)
    time.sleep(3.0)  # past the uncapped frames that follow a settings change: steady state

    def measure(seconds: float) -> dict:
        before = client.get_stats()
        time.sleep(seconds)
        after = client.get_stats()
        total = after.render_total_frames - before.render_total_frames
        skipped = after.render_skipped_frames - before.render_skipped_frames
        return {
            "render_frames": total,
            "skipped_frames": skipped,
            "skipped_ratio": skipped / max(total, 1),
            "obs_average_frame_render_ms": after.average_frame_render_time,
            "active_fps": after.active_fps,
        }

    with_filter = measure(30.0)
    filter_stats = obs_session.filter_stats()[FILTER]
    client.set_source_filter_enabled(CAMERA, FILTER, False)
    time.sleep(1.0)
    without_filter = measure(10.0)
    client.set_source_filter_enabled(CAMERA, FILTER, True)
    numbers = {
        "canvas": f"{WIDTH}x{HEIGHT}@{FPS}",
        "with_filter": with_filter,
        "without_filter": without_filter,
        "filter": filter_stats,
    }
    print(json.dumps(numbers, indent=1))
    (obs_session.root / "performance.json").write_text(json.dumps(numbers, indent=1))
    for key, value in numbers.items():
        record_property(key, value)
    assert filter_stats["processed_fps"] > 0.5
    assert with_filter["render_frames"] >= 0.9 * 30 * FPS
    assert with_filter["skipped_ratio"] <= 0.01


def test_script_reload_keeps_filters_working(obs_session, styled):
    client = obs_session.client
    client.set_source_filter_settings(CAMERA, FILTER, EXACT, False)
    client.trigger_hotkey_by_name("partialstyle_reload_script")
    obs_session.wait_for(
        lambda: "script reloaded: new callbacks for 1 existing filter(s)" in obs_session.log(),
        20,
        what="the script reload",
    )
    wait_for_new_results(obs_session)
    shot = obs_session.screenshot()
    assert region_error(shot, styled["expected"], styled["mask"] < 0.1) < 12.0
    # Settings still reach the running filter after the reload.
    client.set_source_filter_settings(CAMERA, FILTER, {"show_mask": True})
    obs_session.wait_for(
        lambda: region_error(obs_session.screenshot(), shot, styled["mask"] > 0.9) > 10,
        5,
        what="the mask view",
    )
    readme_image("obs-show-mask", obs_session.screenshot())
    client.set_source_filter_settings(CAMERA, FILTER, {"show_mask": False})
