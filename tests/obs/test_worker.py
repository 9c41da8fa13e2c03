"""The newest-frame-wins worker thread, with a real (numpy) processor on a real thread."""

from __future__ import annotations

import threading
import time

import numpy as np

from partialstyle.obs.worker import KEEP_SUPERSEDED_AFTER, FrameWorker


class Inverter:
    """Inverts frames; slow on purpose, and fails while settings say so."""

    def __init__(self, settings):
        self.settings = settings
        self.seen: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = self.closed = False

    def start(self):
        self.started = True

    def configure(self, settings):
        self.settings = settings

    def close(self):
        self.closed = True
        self.gate.set()

    def process(self, frame):
        self.gate.wait(5)
        if self.settings.get("fail"):
            raise RuntimeError("model exploded")
        self.seen.append(int(frame[0, 0, 0]))
        return 255 - frame


def frame(value: int) -> np.ndarray:
    return np.full((4, 6, 4), value, np.uint8)


def wait(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_results_and_newest_frame_wins():
    made = []
    worker = FrameWorker(lambda settings: made.append(Inverter(settings)) or made[-1], {})
    try:
        wait(lambda: worker.state == "ready")
        assert worker.latest() is None and not worker.busy
        processor = made[0]
        processor.gate.clear()  # hold the worker inside process()
        worker.submit(frame(1))
        wait(lambda: worker.busy)
        for value in (2, 3, 4):  # arrive while busy: only the newest survives
            worker.submit(frame(value))
        assert worker.busy
        processor.gate.set()
        wait(lambda: worker.results == 2)
        assert processor.seen == [1, 4]
        assert worker.latest().number == 2
        assert worker.latest().image[0, 0, 0] == 255 - 4
    finally:
        worker.stop()
    assert not worker.alive
    assert made[0].started and made[0].closed


def test_settings_reach_a_running_processor_at_once():
    made = []
    worker = FrameWorker(lambda settings: made.append(Inverter(settings)) or made[-1], {"a": 1})
    try:
        wait(lambda: worker.state == "ready")
        made[0].gate.clear()
        worker.submit(frame(1))
        wait(lambda: worker.busy)
        worker.configure({"a": 2})  # while a frame is in progress
        assert made[0].settings == {"a": 2}
        made[0].gate.set()
    finally:
        worker.stop()


def test_a_frame_made_with_old_settings_is_dropped():
    made = []
    worker = FrameWorker(lambda settings: made.append(Inverter(settings)) or made[-1], {})
    try:
        wait(lambda: worker.state == "ready")
        made[0].gate.clear()
        worker.submit(frame(1))
        wait(lambda: worker.busy)
        worker.configure({"b": 1})
        made[0].gate.set()
        wait(lambda: made[0].seen == [1] and not worker.busy)
        assert worker.latest() is None and worker.results == 0
        worker.submit(frame(2))
        wait(lambda: worker.results == 1)
        assert worker.latest().image[0, 0, 0] == 255 - 2
    finally:
        worker.stop()


def test_a_stream_of_settings_changes_still_gets_results():
    """Settings changing during every frame (a controller sending them many times a second)
    would drop every result; once the last result is older than KEEP_SUPERSEDED_AFTER, one
    made with superseded settings is shown rather than none."""
    made = []
    worker = FrameWorker(lambda settings: made.append(Inverter(settings)) or made[-1], {})
    try:
        wait(lambda: worker.state == "ready")
        worker.submit(frame(1))
        wait(lambda: worker.results == 1)
        for value, pause, shown in ((2, 0.0, 1), (3, KEEP_SUPERSEDED_AFTER + 0.1, 2)):
            made[0].gate.clear()
            worker.submit(frame(value))
            wait(lambda: worker.busy)
            time.sleep(pause)
            worker.configure({"b": value})
            made[0].gate.set()
            wait(lambda value=value: made[0].seen[-1] == value and not worker.busy)
            assert worker.results == shown
        assert worker.latest().image[0, 0, 0] == 255 - 3
    finally:
        worker.stop()


def test_stop_ends_a_frame_in_progress_quietly():
    errors, made = [], []

    class Stuck(Inverter):
        def process(self, frame):
            self.gate.wait(30)
            raise RuntimeError("closed")

    worker = FrameWorker(lambda s: made.append(Stuck(s)) or made[-1], {}, on_error=errors.append)
    wait(lambda: worker.state == "ready")
    made[0].gate.clear()
    worker.submit(frame(1))
    wait(lambda: worker.busy)
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < 2.0 and not worker.alive
    assert errors == []


def test_failure_is_reported_once_then_settings_change_recovers():
    errors = []
    worker = FrameWorker(Inverter, {"fail": True}, on_error=errors.append)
    try:
        wait(lambda: worker.state == "ready")
        for _ in range(3):
            worker.submit(frame(7))
            time.sleep(0.05)
        wait(lambda: errors)
        time.sleep(0.1)
        assert errors == ["model exploded"] and worker.latest() is None
        worker.configure({"fail": False})
        worker.submit(frame(9))
        wait(lambda: worker.latest() is not None)
        assert worker.error is None and worker.latest().image[0, 0, 0] == 246
    finally:
        worker.stop()


def test_a_failing_factory_is_retried_when_settings_change():
    errors = []

    def factory(settings):
        if settings.get("broken"):
            raise ValueError("person style: unknown multistyle name 'x'")
        return Inverter(settings)

    worker = FrameWorker(factory, {"broken": True}, on_error=errors.append)
    try:
        wait(lambda: worker.state == "failed")
        assert worker.processor is None
        worker.configure({"broken": False})
        wait(lambda: worker.state == "ready")
        assert errors == ["person style: unknown multistyle name 'x'"]
    finally:
        worker.stop()
    assert not worker.alive


def test_a_recovered_failure_is_reported_without_dropping_results():
    """A processor that recovers by itself (the remote one restarting its process) tells
    the worker through `report`: the notice reaches the log, the worker stays ready."""
    errors, made = [], []

    class Recovering(Inverter):
        report = None

        def process(self, frame):
            self.report(f"restarted before frame {int(frame[0, 0, 0])}")
            return super().process(frame)

    worker = FrameWorker(lambda s: made.append(Recovering(s)) or made[-1], {}, errors.append)
    try:
        wait(lambda: worker.state == "ready")
        worker.submit(frame(5))
        wait(lambda: worker.results == 1)
        assert errors == ["restarted before frame 5"]
        assert worker.state == "ready" and worker.error is None
        assert worker.latest().image[0, 0, 0] == 250
    finally:
        worker.stop()


def test_recovering_lasts_from_the_notice_to_the_next_result():
    """The filter holds the last result longer while a frame is merely slow, but not while
    the processor restarts after a failure: `recovering` tells the two apart."""
    inside, go_on = threading.Event(), threading.Event()

    class Restarting(Inverter):
        report = None

        def process(self, frame):
            self.report("the inference process exited; restarting it")
            inside.set()
            go_on.wait(10)
            return super().process(frame)

    worker = FrameWorker(lambda s: Restarting(s), {}, lambda message: None)
    try:
        wait(lambda: worker.state == "ready")
        assert not worker.recovering
        worker.submit(frame(5))
        assert inside.wait(10)
        assert worker.busy and worker.recovering
        go_on.set()
        wait(lambda: worker.results == 1)
        assert not worker.recovering
    finally:
        go_on.set()
        worker.stop()
