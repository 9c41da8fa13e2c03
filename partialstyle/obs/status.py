"""The status line at the top of the filter's dialog, and keeping it current while it is open.

A status text has the state first (preparing, loading, waiting, running, an error, settings
that were not applied) and a last line starting with `MEASURED` with what changes all the time:
while running, what the filter does right now (frames styled per second, style refreshes per
second, how old the newest stylization is, whether it holds back to keep OBS on time); while
waiting, for how long.

OBS 29 draws a dialog's text once, when it builds the dialog, and has no call that redraws
one field: the filter's "update_properties" signal makes the Filters window rebuild the whole
dialog. So `refresh_open_dialogs`, called twice a second by the script's timer, asks for that
rebuild whenever the user is not in the middle of something a rebuild would cut short (see
`partialstyle.obs.ui_idle`): at once when the state changes, every `MEASURE_REFRESH_SECONDS`
for new figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from partialstyle.style.kernel_dir import BUILD_TAKES

MEASURED = "Measured"
MEASURE_REFRESH_SECONDS = 2.0
OBS_TEXT_INFO_NORMAL, OBS_TEXT_INFO_WARNING, OBS_TEXT_INFO_ERROR = 0, 1, 2


@dataclass(frozen=True)
class Figures:
    """What the filter does right now, averaged over the last few seconds."""

    styled_fps: float  # new styled frames drawn per second
    refreshes_per_second: float  # style-network runs per second
    keyframe_age: float | None  # frames since the stylization the newest frame carries
    render_ms: float  # OBS's render thread per frame, for the filter
    holding_back: str | None  # how the filter backs off for OBS, or None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def status_text(
    state: str,
    error: str | None,
    problems: tuple[str, ...],
    figures: Figures | None,
    *,
    preparing: float | None = None,
    loading_for: float | None = None,
    stale_style: float | None = None,
    clock: Callable[[], str] = lambda: time.strftime("%H:%M:%S"),
) -> str:
    """The dialog's status: the state, what was not applied, and (running) the figures.

    `preparing`: seconds a kernel build has been running; `loading_for`: seconds the models
    have been loading; `stale_style`: age in seconds of a stylization too old to draw.
    """
    if error:
        lines = [f"Error: {error} The source shows unstyled until this is fixed."]
    elif preparing is not None:
        lines = [
            "Preparing: building the style kernel for this CPU, once per installation "
            f"({BUILD_TAKES}). The source shows unstyled until it is ready.",
            f"{MEASURED} at {clock()}: building for {_duration(preparing)} so far.",
        ]
    elif state == "loading":
        lines = [
            "Loading torch and the models (usually 5-30 s). "
            "The source shows unstyled until they are ready."
        ]
        if loading_for is not None:
            lines.append(f"{MEASURED} at {clock()}: loading for {_duration(loading_for)}.")
    elif stale_style is not None:
        lines = [
            "Waiting for the style networks: the CPU is busy, and the newest style is "
            "too old to draw. The source shows unstyled until they catch up.",
            f"{MEASURED} at {clock()}: newest style {_duration(stale_style)} old.",
        ]
    elif problems:
        refused = sorted({problem.split(":", 1)[0] for problem in problems})
        lines = [f"Running, but not applied: {', '.join(refused)} (see below)."]
    else:
        lines = ["Running."]
    lines += problems
    waiting = preparing is not None or stale_style is not None or state == "loading"
    if not error and not waiting and figures is not None:
        lines.append(measured_line(figures, clock()))
    return "\n".join(lines)


def measured_line(figures: Figures, at: str) -> str:
    """The figures as one line (the part of the status that changes all the time)."""
    age = figures.keyframe_age
    style_age = "" if age is None else f", newest style {age:.0f} frames old"
    holding = (
        f" Holding back to keep OBS on time: {figures.holding_back}."
        if figures.holding_back
        else " Not holding back."
    )
    return (
        f"{MEASURED} at {at}: {figures.styled_fps:.1f} styled frames/s, style refreshed "
        f"{figures.refreshes_per_second:.1f} times/s{style_age}, {figures.render_ms:.2f} ms "
        f"per frame on OBS's render thread.{holding}"
    )


def status_state(text: str) -> str:
    """The part of a status text that counts as its state (no measurements)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith(MEASURED))


def status_info_type(text: str) -> int:
    if text.startswith("Error"):
        return OBS_TEXT_INFO_ERROR
    state = status_state(text)
    return OBS_TEXT_INFO_WARNING if state.startswith("Running, but") else OBS_TEXT_INFO_NORMAL


@dataclass
class Shown:
    """What an open dialog was last rebuilt with, and when."""

    state: str
    text: str
    at: float


def due_refresh(shown: Shown | None, text: str, now: float, idle: Callable[[], bool]) -> bool:
    """Whether a dialog showing `shown` should be rebuilt to show `text` now: when the user
    is not in the middle of something (`idle`), at once for a new state, for new figures at
    most every MEASURE_REFRESH_SECONDS."""
    if shown is None or text == shown.text:
        return False  # first sight: what the dialog was built with
    if status_state(text) == shown.state and now - shown.at < MEASURE_REFRESH_SECONDS:
        return False
    return idle()


def _update_properties(obs: Any, source: int) -> bool:
    """Signal the source's dialog to rebuild, holding a reference meanwhile: this runs on
    the script's timer while OBS may be destroying the filter on another thread (a source
    that is going away gives no reference and is left alone)."""
    held = obs.obs_source_get_ref(source)
    if not held:
        return False
    try:
        obs.obs_source_update_properties(held)
    finally:
        obs.obs_source_release(held)
    return True


def refresh_open_dialogs(
    shown: dict[int, Shown], idle: Callable[[], bool], now: float | None = None
) -> list[int]:
    """Ask every filter whose dialog should show a new status to rebuild it (OBS's Filters
    window does so for an open dialog and ignores the signal otherwise); returns their
    sources. `shown` keeps each filter's last status."""
    from partialstyle.obs import properties, source_info

    runtime = source_info.current()
    if runtime is None:
        return []
    now = time.monotonic() if now is None else now
    instances = dict(runtime.instances)
    for handle in list(shown):
        if handle not in instances:
            del shown[handle]
    rebuilt = []
    for handle, instance in instances.items():
        text = instance.status()
        previous = shown.get(handle)
        if previous is None or due_refresh(previous, text, now, idle):
            shown[handle] = Shown(status_state(text), text, now)
            if previous is not None and _update_properties(properties.lib(), instance.source):
                rebuilt.append(instance.source)
    return rebuilt
