"""Reliability of the filter in the real OBS under load and faults (issue 11), with numbers.

Script reloads while filters run, a source changing resolution, four filters on four sources,
a storm of obs-websocket settings changes, the shared inference process killed with SIGKILL,
and the memory of OBS plus the inference process over a long run. Each test writes its
numbers to soak-<name>.json in the OBS session's folder and prints them.

By default (CI) a short version runs in about two minutes; the full one (reload ×20, 1,000
settings changes in 60 s, a 10-minute memory run) takes about fifteen:

    PARTIALSTYLE_SOAK=full .venv/bin/python -m pytest -m soak tests/obs/test_obs_soak.py -s
"""

from __future__ import annotations

import base64
import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from obs_harness import CAMERA, FILTER, FPS, HEIGHT, WIDTH, ObsSession
from obsws_python.error import OBSSDKRequestError

from partialstyle.obs.sample_clip import write_sample_clip

pytestmark = [pytest.mark.obs, pytest.mark.soak]

KIND = "partialstyle_filter"
SCENE = "Scene"
SOAK_SETTINGS = {"person_style": "multistyle:8", "background_style": "multistyle:19"}
# Results counted by the filter reach the stats file once a second: a gap longer than this
# between two increases of the count is a stall.
STALL_SECONDS = 3.0
MAX_GROWTH_MB = 50.0
# What the four-filter test reports of each filter's own statistics.
FILTER_FIGURES = ("processed_fps", "render_ms_mean", "inference_ms_mean", "styles_per_second")


@dataclass(frozen=True)
class SoakPlan:
    """How hard each test pushes: the short plan for CI, the full one from the issue."""

    name: str
    reloads: int
    setting_changes: int
    settings_seconds: float
    memory_seconds: float
    four_filter_seconds: float
    # Skipped render frames allowed during the settings storm. The full run holds the
    # issue's 1% over 1,800 frames; the short one sees only 360, where a single burst of
    # four or five late frames (one busy second on the shared CI machine) is over 1%.
    storm_skipped_ratio: float


SHORT = SoakPlan("short", 5, 200, 12.0, 60.0, 15.0, 0.02)
FULL = SoakPlan("full", 20, 1000, 60.0, 600.0, 30.0, 0.01)
PLAN = FULL if os.environ.get("PARTIALSTYLE_SOAK") == "full" else SHORT


# -- measurements -------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError(f"process {pid} has no VmRSS")


def inference_pid(session: ObsSession, name: str = FILTER) -> int | None:
    return session.filter_stats().get(name, {}).get("inference_pid")


def memory(session: ObsSession) -> dict[str, float]:
    """RSS of OBS and of the (shared) inference process, MB."""
    obs = rss_mb(session.obs.pid)
    child = rss_mb(inference_pid(session))
    return {
        "obs_mb": round(obs, 1),
        "inference_mb": round(child, 1),
        "total_mb": round(obs + child, 1),
    }


def results(session: ObsSession, name: str = FILTER) -> int:
    return session.filter_stats().get(name, {}).get("results", 0)


def wait_for_results(session: ObsSession, count: int, name: str = FILTER, timeout=120.0) -> None:
    start = results(session, name)
    session.wait_for(
        lambda: results(session, name) >= start + count, timeout, what=f"{count} results of {name}"
    )


class RenderCounter:
    """OBS's rendered and skipped render frames between `__init__` and `finish`."""

    def __init__(self, session: ObsSession):
        self.client = session.client
        self.before = self.client.get_stats()

    def finish(self) -> dict:
        after = self.client.get_stats()
        total = after.render_total_frames - self.before.render_total_frames
        skipped = after.render_skipped_frames - self.before.render_skipped_frames
        return {
            "render_frames": total,
            "skipped_render_frames": skipped,
            "skipped_ratio": round(skipped / max(total, 1), 4),
        }


class ResultsTimeline:
    """Polls the stats file in a thread: when each filter's result count last went up."""

    def __init__(self, session: ObsSession, names: list[str]):
        self.session, self.names = session, names
        self.longest_gap = dict.fromkeys(names, 0.0)
        self.gained = dict.fromkeys(names, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ResultsTimeline:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        stats = self.session.filter_stats()
        first = {name: stats.get(name, {}).get("results", 0) for name in self.names}
        last_count, last_change = dict(first), dict.fromkeys(self.names, time.monotonic())
        while not self._stop.wait(0.1):
            stats, now = self.session.filter_stats(), time.monotonic()
            for name in self.names:
                count = stats.get(name, {}).get("results", last_count[name])
                if count > last_count[name]:
                    last_count[name], last_change[name] = count, now
                gap = now - last_change[name]
                self.longest_gap[name] = max(self.longest_gap[name], gap)
        for name in self.names:
            self.gained[name] = last_count[name] - first[name]

    def numbers(self) -> dict:
        return {
            name: {"results": self.gained[name], "longest_gap_s": round(self.longest_gap[name], 2)}
            for name in self.names
        }


def report(session: ObsSession, name: str, numbers: dict) -> None:
    """Keep a test's numbers beside the OBS log (soak-<name>.json) and print them."""
    numbers = {"plan": asdict(PLAN), "load_average": os.getloadavg(), **numbers}
    text = json.dumps(numbers, indent=1)
    (session.root / f"soak-{name}.json").write_text(text)
    print(f"soak {name}: {text}")


def obs_error_lines(session: ObsSession, since: int) -> list[str]:
    """Lines of the OBS log after character `since` where our callbacks failed."""
    return [line for line in session.log()[since:].splitlines() if " failed:" in line]


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def first_frame(clip: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(clip))
    ok, bgr = capture.read()
    capture.release()
    assert ok, clip
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def native_screenshot(session: ObsSession, source: str = CAMERA) -> np.ndarray:
    """The source through its filters at its own size, RGB."""
    request = {"sourceName": source, "imageFormat": "png"}
    reply = session.client.send("GetSourceScreenshot", request, raw=True)
    data = base64.b64decode(reply["imageData"].split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def soak(obs_session: ObsSession) -> Iterator[ObsSession]:
    """The shared session's camera filter with two styles; its settings restored afterwards."""
    client = obs_session.client
    original = client.get_source_filter(CAMERA, FILTER).filter_settings
    client.set_source_filter_enabled(CAMERA, FILTER, True)
    client.set_source_filter_settings(CAMERA, FILTER, SOAK_SETTINGS, False)
    wait_for_results(obs_session, 3, timeout=180)
    yield obs_session
    client.set_source_filter_settings(CAMERA, FILTER, original, False)


@contextmanager
def extra_sources(session: ObsSession, kinds: list[tuple[str, dict]]) -> Iterator[list[str]]:
    """Sources added to the program scene, each with its own filter (named like the source
    with " filter"), all removed afterwards. `kinds` are (input kind, input settings)."""
    client = session.client
    names: list[str] = []
    try:
        for index, (kind, input_settings) in enumerate(kinds, start=2):
            name = f"Soak {index}"
            client.create_input(SCENE, name, kind, input_settings, True)
            names.append(name)
            style = {"person_style": f"multistyle:{index}", "background_style": "multistyle:19"}
            client.create_source_filter(name, f"{name} filter", KIND, style)
        yield names
    finally:
        for name in names:
            client.remove_input(name)
        session.wait_for(
            lambda: not any(f"{name} filter" in session.filter_stats() for name in names),
            20,
            what="the extra filters destroyed",
        )


def media(session: ObsSession) -> tuple[str, dict]:
    return "ffmpeg_source", {
        "is_local_file": True,
        "local_file": str(session.clip),
        "looping": True,
    }


# -- the tests (file order: the long memory run comes last, after all the churn) ----------------


def test_script_reloads_while_filters_run(soak):
    """Reload ×N (Tools → Scripts → Reload, through its hotkey) with two filters running:
    every reload is taken, both filters keep producing results from the same inference
    process, OBS keeps running, none of our callbacks fails."""
    session, client = soak, soak.client
    log_start = len(session.log())
    with extra_sources(session, [media(session)]) as (second,):
        names = [FILTER, f"{second} filter"]
        for name in names:
            wait_for_results(session, 3, name, timeout=180)
        child = inference_pid(session)
        back_after: list[float] = []
        for reload in range(1, PLAN.reloads + 1):
            started = time.monotonic()
            client.trigger_hotkey_by_name("partialstyle_reload_script")
            session.wait_for(
                lambda reload=reload: session.log()[log_start:].count("script reloaded:") >= reload,
                30,
                what=f"reload {reload}",
            )
            for name in names:
                wait_for_results(session, 2, name, timeout=30)
            back_after.append(time.monotonic() - started)
        time.sleep(2.0)  # a stray second reload would show by now
        log = session.log()[log_start:]
        stats = session.filter_stats()
    numbers = {
        "reloads": PLAN.reloads,
        "reloads_logged": log.count("script reloaded:"),
        "filters": len(names),
        "seconds_to_two_new_results_median": round(statistics.median(back_after), 2),
        "seconds_to_two_new_results_max": round(max(back_after), 2),
        "inference_pid_unchanged": all(stats[n]["inference_pid"] == child for n in names),
        "callback_failures": obs_error_lines(session, log_start),
    }
    report(session, "reload", numbers)
    assert session.obs.poll() is None
    assert numbers["reloads_logged"] == PLAN.reloads
    assert numbers["inference_pid_unchanged"]
    assert all(stats[n]["error"] is None and stats[n]["state"] == "ready" for n in names)
    assert not numbers["callback_failures"]


def test_source_resolution_changes_mid_stream(soak):
    """The camera's clip switches 640×360 → 480×270 → 640×360 while the filter runs: styled
    frames at the new size within seconds each time, no error."""
    session, client = soak, soak.client
    small = write_sample_clip(session.root / "soak-small.avi", 480, 270, FPS, sway=0)
    plain = {(270, 480): first_frame(small), (HEIGHT, WIDTH): first_frame(session.clip)}
    counter = RenderCounter(session)
    seconds = {}
    try:
        steps = (
            ("to_480x270_s", small, (270, 480)),
            ("back_to_640x360_s", session.clip, (HEIGHT, WIDTH)),
        )
        for label, clip, size in steps:
            started = time.monotonic()
            client.set_input_settings(CAMERA, {"local_file": str(clip)}, True)

            def styled_at(size: tuple[int, int] = size) -> bool:
                try:
                    shot = native_screenshot(session)
                except OBSSDKRequestError as error:
                    # While the media source opens the new clip it may have no size, and OBS
                    # cannot render it (702); a later poll sees the new clip.
                    if error.code != 702:
                        raise
                    return False
                return shot.shape[:2] == size and mean_difference(shot, plain[size]) > 20

            session.wait_for(styled_at, 30, interval=0.05, what=f"styled {label}")
            seconds[label] = round(time.monotonic() - started, 2)
    finally:
        client.set_input_settings(CAMERA, {"local_file": str(session.clip)}, True)
    wait_for_results(session, 2)
    numbers = {**seconds, **counter.finish(), "error": session.filter_stats()[FILTER]["error"]}
    report(session, "resolution", numbers)
    assert numbers["error"] is None
    # The issue sets no limit here; 10 s (and skipped frames only reported) because a busy
    # shared machine took 5.6 s and skipped a quarter of the frames while it switched.
    assert max(seconds.values()) <= 10.0


def test_four_filters_on_four_sources(soak, astronaut_wide):
    """Four filters (two media sources, an image, the camera) at once: each produces results,
    all from one inference process; memory and skipped render frames with 1 and 4 filters."""
    session = soak
    photo = session.root / "soak-photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut_wide, cv2.COLOR_RGB2BGR))
    one = memory(session)
    one_window = RenderCounter(session)
    time.sleep(PLAN.four_filter_seconds / 2)
    one_render = one_window.finish()
    kinds = [media(session), media(session), ("image_source", {"file": str(photo)})]
    with extra_sources(session, kinds) as added:
        names = [FILTER, *(f"{name} filter" for name in added)]
        for name in names:
            wait_for_results(session, 3, name, timeout=240)
        time.sleep(3.0)  # past the first uncapped frames
        window = RenderCounter(session)
        with ResultsTimeline(session, names) as timeline:
            time.sleep(PLAN.four_filter_seconds)
        four_render = window.finish()
        four = memory(session)
        stats = session.filter_stats()
    pids = {stats[name]["inference_pid"] for name in names}
    numbers = {
        "filters": len(names),
        "window_s": PLAN.four_filter_seconds,
        "inference_processes": len(pids),
        "per_filter": {
            name: {
                **timeline.numbers()[name],
                **{key: round(stats[name][key], 2) for key in FILTER_FIGURES},
            }
            for name in names
        },
        "memory_one_filter": one,
        "memory_four_filters": four,
        "render_one_filter": one_render,
        "render_four_filters": four_render,
    }
    report(session, "four-filters", numbers)
    assert numbers["inference_processes"] == 1
    assert all(timeline.gained[name] > 0 for name in names)
    # Models are loaded once: three more clients cost far less than one more process
    # (each process of its own was 700–730 MB, issue 11).
    assert four["inference_mb"] - one["inference_mb"] < 300
    wait_for_results(session, 2)  # the camera's filter keeps the shared process


def test_settings_storm_over_websocket(soak):
    """N SetSourceFilterSettings in T seconds, person style alternating: every request is
    answered promptly, results keep coming (no stall), ≤ 1% skipped render frames."""
    session, client = soak, soak.client
    styles = ("multistyle:8", "multistyle:20")
    interval = PLAN.settings_seconds / PLAN.setting_changes
    latencies: list[float] = []
    counter = RenderCounter(session)
    with ResultsTimeline(session, [FILTER]) as timeline:
        started = time.monotonic()
        for change in range(PLAN.setting_changes):
            time.sleep(max(0.0, started + change * interval - time.monotonic()))
            sent = time.perf_counter()
            client.set_source_filter_settings(
                CAMERA, FILTER, {"person_style": styles[change % 2]}, True
            )
            latencies.append(time.perf_counter() - sent)
        elapsed = time.monotonic() - started
    render = counter.finish()
    client.set_source_filter_settings(CAMERA, FILTER, SOAK_SETTINGS, False)
    wait_for_results(session, 2, timeout=30)
    latencies.sort()
    numbers = {
        "changes": PLAN.setting_changes,
        "seconds": round(elapsed, 2),
        "request_ms_median": round(1000 * statistics.median(latencies), 1),
        "request_ms_p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
        "request_ms_max": round(1000 * latencies[-1], 1),
        **timeline.numbers()[FILTER],
        **render,
        "error": session.filter_stats()[FILTER]["error"],
    }
    report(session, "settings-storm", numbers)
    assert elapsed <= PLAN.settings_seconds + 2.0  # the websocket kept pace
    assert numbers["request_ms_max"] < 1000
    assert numbers["results"] > 0 and numbers["longest_gap_s"] <= STALL_SECONDS
    assert numbers["skipped_ratio"] <= PLAN.storm_skipped_ratio
    assert numbers["error"] is None


def test_inference_process_killed(soak):
    """SIGKILL to the shared inference process with two filters running: the sources show
    through unstyled, each filter logs one line, and both recover by themselves."""
    session = soak
    with extra_sources(session, [media(session)]) as (second,):
        names = [FILTER, f"{second} filter"]
        for name in names:
            wait_for_results(session, 3, name, timeout=180)
        plain = first_frame(session.clip)
        child = inference_pid(session)
        assert all(inference_pid(session, name) == child for name in names)
        log_start = len(session.log())
        counter = RenderCounter(session)
        os.kill(child, signal.SIGKILL)
        killed = time.monotonic()
        session.wait_for(
            lambda: mean_difference(native_screenshot(session), plain) < 4,
            10,
            interval=0.05,
            what="the camera shown unstyled",
        )
        passed_through = time.monotonic() - killed
        session.wait_for(
            lambda: mean_difference(native_screenshot(session), plain) > 20,
            120,
            interval=0.1,
            what="styled frames again",
        )
        styled_again = time.monotonic() - killed
        recovered = {}
        for name in names:
            session.wait_for(
                lambda name=name: (
                    inference_pid(session, name) not in (None, child)
                    and session.filter_stats()[name]["state"] == "ready"
                ),
                60,
                what=f"{name} on a new process",
            )
            wait_for_results(session, 2, name, timeout=60)
            recovered[name] = round(time.monotonic() - killed, 2)
        render = counter.finish()
        time.sleep(1.5)  # the Script Log timer hands errors to the log twice a second
        log = session.log()[log_start:].splitlines()
        new_pids = {inference_pid(session, name) for name in names}
        stats = session.filter_stats()
    notices = {
        name: [line for line in log if f"'{name}'" in line and "inference process" in line]
        for name in names
    }
    numbers = {
        "seconds_to_unstyled": round(passed_through, 2),
        "seconds_to_styled_again": round(styled_again, 2),
        "seconds_to_results_per_filter": recovered,
        "log_lines_per_filter": {name: len(lines) for name, lines in notices.items()},
        "log_lines": [line for lines in notices.values() for line in lines],
        "new_inference_processes": len(new_pids),
        **render,
    }
    report(session, "sigkill", numbers)
    assert all(len(lines) == 1 for lines in notices.values())
    assert len(new_pids) == 1 and child not in new_pids
    assert all(stats[name]["error"] is None for name in names)
    # Unstyled within the filter's staleness limit (1 s) plus screenshot polling.
    assert passed_through <= 3.0
    # A new process imports torch and loads the models: seconds on an idle machine; the
    # shared 2-core CI machine gets a generous limit.
    assert max(recovered.values()) <= 60.0


def test_memory_over_a_long_run(soak):
    """RSS of OBS plus the inference process over the run (short: 60 s, full: 10 minutes)
    with the filter styling every frame: growth ≤ 50 MB; results keep coming."""
    session = soak
    wait_for_results(session, 3)
    time.sleep(10.0)  # allocations of the first frames after the earlier tests settle
    child = inference_pid(session)
    samples: list[dict] = []
    counter = RenderCounter(session)
    with ResultsTimeline(session, [FILTER]) as timeline:
        started = time.monotonic()
        while True:
            samples.append({"t": round(time.monotonic() - started, 1), **memory(session)})
            if time.monotonic() - started >= PLAN.memory_seconds:
                break
            time.sleep(min(5.0, PLAN.memory_seconds / 12))
    render = counter.finish()

    def settled(part: list[dict], key: str) -> float:
        return statistics.mean(sample[key] for sample in part)

    head, tail = samples[:3], samples[-3:]
    numbers = {
        "seconds": samples[-1]["t"],
        "growth_total_mb": round(settled(tail, "total_mb") - settled(head, "total_mb"), 1),
        "growth_obs_mb": round(settled(tail, "obs_mb") - settled(head, "obs_mb"), 1),
        "growth_inference_mb": round(
            settled(tail, "inference_mb") - settled(head, "inference_mb"), 1
        ),
        "start": samples[0],
        "end": samples[-1],
        "same_inference_process": inference_pid(session) == child,
        **timeline.numbers()[FILTER],
        **render,
        "samples": samples,
    }
    report(session, "memory", numbers)
    assert numbers["same_inference_process"]
    assert numbers["growth_total_mb"] <= MAX_GROWTH_MB
    assert numbers["results"] > 0 and numbers["longest_gap_s"] <= STALL_SECONDS
