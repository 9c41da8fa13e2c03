"""The inference child process, driven the way the filter drives it (no OBS needed).

Real processes, real models: the child must give the library's own result, take new settings
on the next frame, survive a crash, and never outlive its parent or leave shared memory behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from partialstyle.obs import settings
from partialstyle.obs.frame_slots import slot_folder
from partialstyle.obs.remote import RemoteProcessor, check_environment, venv_python
from partialstyle.obs.sample_clip import sample_frame

pytestmark = pytest.mark.slow

PYTHON = venv_python(Path(sys.prefix))
STYLED = {"person_style": "multistyle:8", "background_style": "multistyle:19"}
# Frame-exact comparisons: no mask smoothing, style fade or stabilizing across frames.
EXACT = {**STYLED, "temporal_smoothing": 0.0, "morph_seconds": 0.0, "stabilize": 0.0}


def rgba(width: int = 320, height: int = 180) -> np.ndarray:
    frame = sample_frame(width, height)
    return np.dstack([frame, np.full((height, width), 255, np.uint8)])


def reference(values: dict, frame: np.ndarray) -> np.ndarray:
    from partialstyle.pipeline import Pipeline

    return Pipeline(*settings.to_pipeline(values)).process(frame)


def gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie is gone for our purposes only once reaped; ask /proc for its state.
        status = Path(f"/proc/{pid}/status")
        if status.exists() and "State:\tZ" in status.read_text():
            return True
        time.sleep(0.05)
    return False


def my_slots() -> list[str]:
    return [p.name for p in slot_folder().glob(f"partialstyle-{os.getpid()}-*")]


def test_child_matches_the_pipeline_and_takes_settings_at_once(default_models):
    frame = rgba()
    processor = RemoteProcessor(PYTHON, EXACT)
    try:
        processor.start()
        assert np.array_equal(processor.process(frame), reference(EXACT, frame))
        changed = {**EXACT, "person_style": "multistyle:20"}
        processor.configure(changed)
        assert np.array_equal(processor.process(frame), reference(changed, frame))
        small = rgba(160, 90)  # a new size: new slots, the old files are removed
        assert np.array_equal(processor.process(small), reference(changed, small))
        assert len(my_slots()) == 2
        pid = processor.pid
    finally:
        started = time.monotonic()
        processor.close()
    assert time.monotonic() - started < 5.0
    assert gone(pid, 1.0) and my_slots() == []


def test_a_style_change_is_not_held_back_by_stabilizing(default_models):
    """Stabilizing keeps the last look where the picture is still; after a style change the
    child must not hold on to the old look: the new style shows on the next frame."""
    frame = rgba()
    steady = {**EXACT, "stabilize": 0.9, "background_style": "multistyle:3"}
    changed = {**steady, "background_style": "multistyle:12"}
    processor = RemoteProcessor(PYTHON, steady)
    try:
        processor.start()
        for _ in range(2):
            assert np.array_equal(processor.process(frame), reference(steady, frame))
        processor.configure(changed)
        assert np.array_equal(processor.process(frame), reference(changed, frame))
    finally:
        processor.close()


def test_a_crashed_child_is_restarted_and_bad_settings_are_one_line(default_models):
    processor = RemoteProcessor(PYTHON, EXACT)
    try:
        processor.start()
        first = processor.pid
        os.kill(first, signal.SIGKILL)
        assert gone(first, 5.0)
        frame = rgba()
        assert np.array_equal(processor.process(frame), reference(EXACT, frame))
        assert processor.pid != first
        processor.configure({**EXACT, "background_style": "multistyle:99"})
        with pytest.raises(RuntimeError) as failure:
            processor.process(frame)
        message = str(failure.value)
        assert "background style" in message and "\n" not in message
        processor.configure(EXACT)  # fixed settings work again in the same child
        assert np.array_equal(processor.process(frame), reference(EXACT, frame))
    finally:
        processor.close()


def test_the_child_exits_when_its_parent_dies(tmp_path, default_models):
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from pathlib import Path
                from partialstyle.obs.remote import RemoteProcessor
                processor = RemoteProcessor(Path({str(PYTHON)!r}), {EXACT!r})
                processor.start()
                print(processor.pid, flush=True)
                time.sleep(60)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(parent.stdout.readline())
    finally:
        parent.kill()  # no chance to clean up: the child must notice by itself
        parent.wait()
    assert gone(child, 5.0)
    leftovers = list(slot_folder().glob(f"partialstyle-{parent.pid}-*"))
    assert leftovers == []


def test_environment_check_reports_device_and_models(default_models):
    found = check_environment(PYTHON)
    assert found["device"] in ("cpu", "cuda", "mps")
    assert found["missing"] == []
    assert found["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
