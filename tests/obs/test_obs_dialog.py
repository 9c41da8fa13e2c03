"""What the filter tells the user inside the real OBS: unusable styles and errors, and a
status in its open dialog that keeps up with what the filter does.

Runs in the shared OBS session before test_obs_filter.py and leaves the filter's settings as
it found them. The dialog's fields (style lists, one-line typed styles, pictures) were
checked by hand under Xvfb; their logic is tested without OBS in test_dialog.py.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from obs_harness import CAMERA, FILTER, FILTER_SETTINGS, ObsSession
from x11_close import close_windows

pytestmark = pytest.mark.obs

SOURCE_AND_FILTER = f"'{CAMERA}' / '{FILTER}'"
SCRIPT_LOG_PREFIX = "[Python: obs_partialstyle.py]"  # lines that went through script_log


def stats(session: ObsSession) -> dict:
    return session.filter_stats().get(FILTER, {})


def wait_for_results(session: ObsSession, count: int) -> None:
    start = stats(session).get("results", 0)
    session.wait_for(
        lambda: stats(session).get("results", 0) >= start + count, 90, what=f"{count} results"
    )


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def lines_with(session: ObsSession, text: str) -> list[str]:
    return [line for line in session.log().splitlines() if text in line]


def test_unusable_styles_keep_the_last_good_one_and_errors_reach_the_script_log(
    obs_session, tmp_path
):
    client = obs_session.client
    wait_for_results(obs_session, 2)
    styled = obs_session.screenshot()
    client.set_source_filter_enabled(CAMERA, FILTER, False)
    time.sleep(0.5)
    unstyled = obs_session.screenshot()
    client.set_source_filter_enabled(CAMERA, FILTER, True)
    wait_for_results(obs_session, 2)

    typed = ("s", "st", "sta", "star", "multistyle:99")
    for text in typed:
        client.set_source_filter_settings(CAMERA, FILTER, {"person_style": text}, True)
        time.sleep(0.1)
    wait_for_results(obs_session, 3)
    assert stats(obs_session)["error"] is None
    shot = obs_session.screenshot()
    assert difference(shot, styled) < 0.25 * difference(shot, unstyled)  # still styled

    obs_session.wait_for(
        lambda: len(lines_with(obs_session, "Still showing")) >= len(typed), 5, what="warnings"
    )
    warnings = lines_with(obs_session, "Still showing")
    assert len(warnings) == len(typed)  # one each, none repeated per frame
    assert all(SOURCE_AND_FILTER in line and line.startswith("warning") for line in warnings)
    assert "'sta' is missing its kind" in warnings[2] and "id 99" in warnings[-1]

    # A style the dialog cannot check (the picture exists but is no picture) fails in the
    # inference process: one error line, through the Script Log, and it clears once fixed.
    not_a_picture = tmp_path / "notes.jpg"
    not_a_picture.write_text("not a picture")
    client.set_source_filter_settings(
        CAMERA, FILTER, {"person_style": f"arbitrary:{not_a_picture}"}, True
    )
    obs_session.wait_for(lambda: stats(obs_session).get("error"), 30, what="the error")
    obs_session.wait_for(
        lambda: lines_with(obs_session, str(not_a_picture)), 5, what="the error in the log"
    )
    (line,) = lines_with(obs_session, str(not_a_picture))
    assert line.startswith("error") and SCRIPT_LOG_PREFIX in line and SOURCE_AND_FILTER in line

    client.set_source_filter_settings(CAMERA, FILTER, FILTER_SETTINGS, True)
    obs_session.wait_for(lambda: stats(obs_session).get("error") is None, 30, what="recovery")
    wait_for_results(obs_session, 2)


def test_an_open_dialog_shows_what_the_filter_does_now(obs_session):
    """OBS draws a dialog's status once; the filter has OBS rebuild it every few seconds
    while it stays open (and nobody is editing), with the current figures."""
    wait_for_results(obs_session, 2)
    before = stats(obs_session).get("dialog_builds", 0)
    obs_session.client.open_input_filters_dialog(CAMERA)
    try:
        obs_session.wait_for(
            lambda: stats(obs_session).get("dialog_builds", 0) > before, 30, what="the dialog"
        )
        first = stats(obs_session)
        obs_session.wait_for(
            lambda: stats(obs_session)["dialog_builds"] >= first["dialog_builds"] + 2,
            30,
            what="two refreshes of the open dialog",
        )
        later = stats(obs_session)["dialog_status"]
    finally:
        close_windows(f":{obs_session.display}", "Filters for")
    measured = re.compile(r"Measured at (\d\d:\d\d:\d\d): [\d.]+ styled frames/s, style refreshed")
    first_time, later_time = (measured.search(text) for text in (first["dialog_status"], later))
    assert first_time and later_time, (first["dialog_status"], later)
    assert later_time.group(1) != first_time.group(1)
