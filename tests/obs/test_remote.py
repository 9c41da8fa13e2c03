"""The shared inference process, driven the way the filters drive it (no OBS needed).

Real processes, real models: every client must get the library's own result for its own
settings, take new settings on the next frame, survive a crash of the process, keep working
when another client fails, and the process must end with its last client (or its parent)
and leave no shared memory behind.

Results are compared with a tolerance (mean difference under one level), and both sides use
the plain torch ops for the region normalisation: the fused kernel is built in the background
on first use, so whether a frame meets it depends on timing (its own accuracy is tested in
tests/test_region_norm.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from partialstyle.obs import messages, settings
from partialstyle.obs.frame_slots import slot_folder
from partialstyle.obs.inference_server import Service
from partialstyle.obs.launch import check_environment, venv_python
from partialstyle.obs.remote import InferenceService, RemoteProcessor
from partialstyle.obs.sample_clip import sample_frame

pytestmark = pytest.mark.slow

PYTHON = venv_python(Path(sys.prefix))
STYLED = {"person_style": "multistyle:8", "background_style": "multistyle:19"}
# Frame-exact comparisons: no mask smoothing, style fade or stabilizing across frames.
EXACT = {**STYLED, "temporal_smoothing": 0.0, "morph_seconds": 0.0, "stabilize": 0.0}
OTHER = {**EXACT, "person_style": "multistyle:1", "background_style": "multistyle:2"}
BAD = {**EXACT, "background_style": "multistyle:99"}


def rgba(width: int = 320, height: int = 180) -> np.ndarray:
    frame = sample_frame(width, height)
    return np.dstack([frame, np.full((height, width), 255, np.uint8)])


@pytest.fixture(autouse=True)
def plain_normalisation(monkeypatch):
    """The inference processes started by the test use the plain ops (see above)."""
    monkeypatch.setenv("PARTIALSTYLE_FUSED_NORM", "0")


def reference(values: dict, frame: np.ndarray) -> np.ndarray:
    from partialstyle.pipeline import Pipeline
    from partialstyle.style import fused_norm

    with fused_norm.disabled():
        return Pipeline(*settings.to_pipeline(values)).process(frame)


def difference(image: np.ndarray, expected: np.ndarray) -> float:
    """Mean absolute difference in levels (0-255)."""
    return float(np.abs(image.astype(np.float32) - expected.astype(np.float32)).mean())


def assert_matches(image: np.ndarray, values: dict, frame: np.ndarray) -> None:
    assert image.shape == frame.shape
    assert difference(image, reference(values, frame)) < 1.0


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


@pytest.fixture
def service() -> InferenceService:
    """A service of the test's own, so a test never meets another test's process."""
    return InferenceService(PYTHON)


def test_child_matches_the_pipeline_and_takes_settings_at_once(service, default_models):
    frame = rgba()
    processor = RemoteProcessor(PYTHON, EXACT, service=service)
    try:
        processor.start()
        assert_matches(processor.process(frame), EXACT, frame)
        changed = {**EXACT, "person_style": "multistyle:20"}
        processor.configure(changed)
        assert_matches(processor.process(frame), changed, frame)
        small = rgba(160, 90)  # a new size: new slots, the old files are removed
        assert_matches(processor.process(small), changed, small)
        assert len(my_slots()) == 2
        pid = processor.pid
    finally:
        started = time.monotonic()
        processor.close()
    assert time.monotonic() - started < 5.0
    assert gone(pid, 1.0) and my_slots() == []


def test_a_style_change_is_not_held_back_by_stabilizing(service, default_models):
    """Stabilizing keeps the last look where the picture is still; after a style change the
    child must not hold on to the old look: the new style shows on the next frame."""
    frame = rgba()
    steady = {**EXACT, "stabilize": 0.9, "background_style": "multistyle:3"}
    changed = {**steady, "background_style": "multistyle:12"}
    processor = RemoteProcessor(PYTHON, steady, service=service)
    try:
        processor.start()
        for _ in range(2):
            assert_matches(processor.process(frame), steady, frame)
        processor.configure(changed)
        assert_matches(processor.process(frame), changed, frame)
    finally:
        processor.close()


def test_a_crashed_child_is_restarted_and_bad_settings_are_one_line(service, default_models):
    processor = RemoteProcessor(PYTHON, EXACT, service=service)
    notices: list[str] = []
    processor.report = notices.append
    try:
        processor.start()
        first = processor.pid
        os.kill(first, signal.SIGKILL)
        assert gone(first, 5.0)
        frame = rgba()
        assert_matches(processor.process(frame), EXACT, frame)
        assert processor.pid != first
        assert len(notices) == 1 and "exited" in notices[0] and "\n" not in notices[0]
        processor.configure(BAD)
        with pytest.raises(RuntimeError) as failure:
            processor.process(frame)
        message = str(failure.value)
        assert "background style" in message and "\n" not in message
        processor.configure(EXACT)  # fixed settings work again in the same child
        assert_matches(processor.process(frame), EXACT, frame)
    finally:
        processor.close()


def test_two_clients_share_one_process_each_with_its_own_settings(service, default_models):
    frame, small = rgba(), rgba(160, 90)
    first = RemoteProcessor(PYTHON, EXACT, service=service)
    second = RemoteProcessor(PYTHON, OTHER, service=service)
    try:
        first.start()
        second.start()
        assert first.pid == second.pid == service.pid
        # Interleaved, at different sizes: each client has its own slots and state.
        for _ in range(2):
            assert_matches(first.process(frame), EXACT, frame)
            assert_matches(second.process(small), OTHER, small)
        assert difference(first.process(frame), reference(OTHER, frame)) > 10.0
        assert len(my_slots()) == 4
        changed = {**OTHER, "background_style": "multistyle:12"}
        second.configure(changed)  # only the second client's look changes
        assert_matches(second.process(small), changed, small)
        assert_matches(first.process(frame), EXACT, frame)
        pid = service.pid
        first.close()
        assert not gone(pid, 0.5)  # the second client still uses it
        assert_matches(second.process(small), changed, small)
        assert len(my_slots()) == 2
    finally:
        first.close()
        second.close()
    assert gone(pid, 5.0) and my_slots() == [] and service.pid is None


def test_clients_feeding_frames_in_a_loop_get_equal_shares(service, default_models):
    """Two sources sending frames as fast as they are answered: neither starves (the
    service takes the clients' frames in turn)."""
    frame = rgba()
    clients = [RemoteProcessor(PYTHON, values, service=service) for values in (EXACT, OTHER)]
    counts = [0, 0]
    stop = threading.Event()

    def feed(index: int) -> None:
        while not stop.is_set():
            clients[index].process(frame)
            counts[index] += 1

    try:
        for client in clients:
            client.start()
        threads = [threading.Thread(target=feed, args=(index,)) for index in (0, 1)]
        for thread in threads:
            thread.start()
        time.sleep(4.0)
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        for client in clients:
            client.close()
    assert min(counts) >= 3 and min(counts) > 0.6 * max(counts), counts


def test_one_clients_bad_settings_leave_the_other_working(service, default_models):
    frame = rgba()
    good = RemoteProcessor(PYTHON, EXACT, service=service)
    bad = RemoteProcessor(PYTHON, BAD, service=service)
    try:
        good.start()
        with pytest.raises(RuntimeError, match="background style"):
            bad.start()  # its first settings fail: it cannot start, the service stays
        assert_matches(good.process(frame), EXACT, frame)
        bad.configure(OTHER)
        bad.start()
        assert_matches(bad.process(frame), OTHER, frame)
        bad.configure(BAD)  # broken later: its frames fail, the other's do not
        with pytest.raises(RuntimeError, match="background style"):
            bad.process(frame)
        assert_matches(good.process(frame), EXACT, frame)
        assert bad.pid == good.pid
    finally:
        bad.close()
        good.close()


def test_both_clients_recover_when_the_process_is_killed(service, default_models):
    frame = rgba()
    clients = [RemoteProcessor(PYTHON, values, service=service) for values in (EXACT, OTHER)]
    notices: list[str] = []
    for client in clients:
        client.report = notices.append
        client.start()
    try:
        killed = service.pid
        os.kill(killed, signal.SIGKILL)
        results: dict[int, np.ndarray] = {}

        def one_frame(index: int) -> None:
            results[index] = clients[index].process(frame)

        threads = [threading.Thread(target=one_frame, args=(index,)) for index in (0, 1)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        recovery = time.monotonic() - started
        assert_matches(results[0], EXACT, frame)
        assert_matches(results[1], OTHER, frame)
        assert clients[0].pid == clients[1].pid == service.pid != killed
        assert gone(killed, 1.0)
        assert len(notices) == 2  # one line per client
        print(f"both clients styled again {recovery:.1f} s after SIGKILL")
    finally:
        for client in clients:
            client.close()


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


def test_work_is_taken_in_turn_and_the_newest_of_each_client_wins():
    """The service's scheduling: round-robin over the clients with settings to build or a
    frame waiting; a newer frame or newer settings replace older ones still waiting."""
    sent: list[messages.Message] = []
    service = Service(send=sent.append)

    def frame(client: int, number: int) -> messages.Frame:
        return messages.Frame(client, number, "in", "out", 4, 4)

    def taken() -> tuple[int, object, object] | None:
        turn = service.next_turn()
        if turn is None:
            return None
        values = None if turn.values is None else turn.values["person_style"]
        return turn.session.client, values, None if turn.frame is None else turn.frame.id

    service.handle([messages.Settings(client, {"person_style": "a"}) for client in (1, 2, 3)])
    service.handle([messages.Settings(2, {"person_style": "b"}), frame(2, 1)])
    assert [taken(), taken(), taken(), taken()] == [
        (1, "a", None),
        (2, "b", 1),
        (3, "a", None),
        None,
    ]
    service.handle([frame(1, 1), frame(1, 2), frame(3, 1)])  # client 1 twice: 2 replaces 1
    assert [taken(), taken(), taken()] == [(1, None, 2), (3, None, 1), None]
    # A busy client sends again as soon as it has its answer; the others still get turns.
    service.handle([frame(1, 3), frame(2, 2)])
    assert taken() == (1, None, 3)
    service.handle([frame(1, 4)])
    assert [taken(), taken()] == [(2, None, 2), (1, None, 4)]
    service.busy.add(1)  # a thread works for client 1: its next frame waits
    service.handle([frame(1, 5), frame(3, 2)])
    assert [taken(), taken()] == [(3, None, 2), None]
    service.busy.clear()
    assert taken() == (1, None, 5)
    service.handle([messages.Bye(2), frame(2, 3)])  # a client that left gets an error
    assert 2 not in service.sessions and taken() is None
    assert sent == [messages.Error(2, "unknown client", 3)]


def test_environment_check_reports_device_and_models(default_models):
    found = check_environment(PYTHON)
    assert found.device in ("cpu", "cuda", "mps")
    assert found.missing == ()
    assert found.python == f"{sys.version_info.major}.{sys.version_info.minor}"
