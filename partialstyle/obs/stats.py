"""How much the filter costs OBS: render-thread time per frame and processed frames per second.

Each filter instance keeps a `RenderStats`; the worker thread reports them to the OBS log every
`LOG_EVERY` seconds and, when the environment variable PARTIALSTYLE_OBS_STATS names a file,
writes all instances' numbers there as JSON (what the tests and benchmarks read).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from pathlib import Path

LOG_EVERY = 30.0
STATS_FILE_VARIABLE = "PARTIALSTYLE_OBS_STATS"


class RenderStats:
    """Durations of the render callback and timestamps of finished results."""

    def __init__(self, window: int = 600):
        self.render_ms: deque[float] = deque(maxlen=window)
        self.result_times: deque[float] = deque(maxlen=window)
        self.frames = 0
        self.readbacks = 0
        self.results = 0  # results drawn so far (new styled frames shown)
        self.counters: deque[tuple[float, dict[str, int]]] = deque(maxlen=int(2 * LOG_EVERY) + 8)
        self.step_ms: dict[str, deque[float]] = {}  # the render path's steps, for profiles

    def add_step(self, name: str, seconds: float) -> None:
        """Time one step of the render callback (readback, stage, upload, draw)."""
        self.step_ms.setdefault(name, deque(maxlen=self.render_ms.maxlen)).append(seconds * 1000.0)

    def add_render(self, seconds: float) -> None:
        self.render_ms.append(seconds * 1000.0)
        self.frames += 1

    def add_result(self) -> None:
        self.result_times.append(time.monotonic())
        self.results += 1

    def sample(self, now: float, **counts: int) -> None:
        """Record running counts (e.g. stylizations) once per report, for `rates`."""
        self.counters.append((now, dict(counts)))

    def rates(self, window: float) -> dict[str, float]:
        """Each sampled count's increase per second over the last `window` seconds."""
        return counter_rates(list(self.counters), window)

    def summary(self) -> dict[str, float]:
        """Mean/p95/max render ms over the recent window and processed fps over ~10 s."""
        render = sorted(self.render_ms)
        now = time.monotonic()
        recent = [t for t in self.result_times if now - t <= 10.0]
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
        return {
            "render_frames": self.frames,
            "readbacks": self.readbacks,
            "render_ms_mean": sum(render) / len(render) if render else 0.0,
            "render_ms_p95": render[int(0.95 * (len(render) - 1))] if render else 0.0,
            "render_ms_max": render[-1] if render else 0.0,
            "processed_fps": fps,
            **{
                f"{name}_ms_mean": sum(times) / len(times)
                for name, times in self.step_ms.items()
                if times
            },
        }


def counter_rates(samples: list[tuple[float, dict[str, int]]], window: float) -> dict[str, float]:
    """Per-second increase of each count between the oldest sample at most `window` seconds
    before the newest one and the newest one; 0 with fewer than two samples. A count that
    went down (a restarted counter) counts from zero."""
    if len(samples) < 2:
        return {name: 0.0 for name in (samples[-1][1] if samples else {})}
    newest_time, newest = samples[-1]
    oldest_time, oldest = next(
        (when, counts) for when, counts in samples if newest_time - when <= window + 1e-9
    )
    seconds = newest_time - oldest_time
    rates = {}
    for name, count in newest.items():
        before = oldest.get(name, 0)
        increase = count - before if count >= before else count
        rates[name] = increase / seconds if seconds > 0 else 0.0
    return rates


def log_line(label: str, summary: dict, rates: dict[str, float]) -> str:
    """A filter's line in the OBS log; `rates` (per second) are averaged over LOG_EVERY."""
    return (
        f"{label}: render thread {summary['render_ms_mean']:.2f} ms/frame "
        f"(p95 {summary['render_ms_p95']:.2f}, max {summary['render_ms_max']:.2f}), "
        f"{rates.get('results', 0.0):.1f} styled frames/s "
        f"(style refreshed {rates.get('stylizations', 0.0):.1f} times/s), "
        + (
            f"keyframe age {summary['keyframe_age']:.1f} frames, "
            if summary.get("keyframe_age") is not None
            else ""
        )
        + f"inference {summary['inference_ms_mean']:.0f} ms per frame; "
        f"averages over {LOG_EVERY:.0f} s"
        + ("; holding back for OBS" if summary.get("holding_back") else "")
    )


_file_lock = threading.Lock()
_file_entries: dict[str, dict] = {}


def publish(name: str, entry: dict | None) -> None:
    """Write this instance's entry (None removes it) to the PARTIALSTYLE_OBS_STATS file."""
    target = os.environ.get(STATS_FILE_VARIABLE)
    if not target:
        return
    with _file_lock:
        if entry is None:
            _file_entries.pop(name, None)
        else:
            _file_entries[name] = entry
        path = Path(target)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps(_file_entries, indent=1, sort_keys=True))
        os.replace(temporary, path)
