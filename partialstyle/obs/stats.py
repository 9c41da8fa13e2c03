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
        self.step_ms: dict[str, deque[float]] = {}  # the render path's steps, for profiles

    def add_step(self, name: str, seconds: float) -> None:
        """Time one step of the render callback (readback, stage, upload, draw)."""
        self.step_ms.setdefault(name, deque(maxlen=self.render_ms.maxlen)).append(seconds * 1000.0)

    def add_render(self, seconds: float) -> None:
        self.render_ms.append(seconds * 1000.0)
        self.frames += 1

    def add_result(self) -> None:
        self.result_times.append(time.monotonic())

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
