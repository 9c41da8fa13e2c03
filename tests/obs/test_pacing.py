"""The style pacer: backs off when OBS misses frames, comes back when it is quiet."""

from __future__ import annotations

from partialstyle.obs.pacing import (
    FIRST_PAUSE,
    MAX_PAUSE,
    MAX_STRIDE,
    QUIET_SECONDS,
    STRIDE_FROM_PAUSE,
    StylePacer,
)


def test_missed_frames_double_the_pause_up_to_the_limit():
    pacer = StylePacer()
    assert pacer.update(100, 1.0) == 0.0  # the first count is only a starting point
    assert pacer.update(100, 1.0) == 0.0
    assert pacer.update(103, 1.0) == FIRST_PAUSE
    assert pacer.update(104, 1.0) == 2 * FIRST_PAUSE
    for total in range(105, 120):
        pause = pacer.update(total, 1.0)
    assert pause == MAX_PAUSE


def test_a_quiet_while_shrinks_the_pause_to_none():
    pacer = StylePacer()
    pacer.update(0, 1.0)
    pacer.update(5, 1.0)
    pauses = [pacer.update(5, 1.0) for _ in range(int(20 * QUIET_SECONDS))]
    assert pauses[0] == FIRST_PAUSE
    assert pauses == sorted(pauses, reverse=True)
    assert pauses[-1] == 0.0


def test_the_users_cap_is_a_floor():
    pacer = StylePacer(floor=0.2)
    assert pacer.update(0, 1.0) == 0.2
    assert pacer.update(10, 1.0) == 0.4
    assert min(pacer.update(10, 1.0) for _ in range(100)) == 0.2


def test_frames_are_skipped_only_once_the_pause_is_long_and_come_back_first():
    pacer = StylePacer()
    pacer.update(0, 1.0)
    total = 0
    while pacer.pause < STRIDE_FROM_PAUSE:  # short pauses: every frame still read back
        total += 1
        pacer.update(total, 1.0)
        assert pacer.stride == 1
    for _ in range(10):
        total += 1
        pacer.update(total, 1.0)
    assert pacer.stride == MAX_STRIDE
    pause = pacer.pause
    for _ in range(int(QUIET_SECONDS) * (MAX_STRIDE - 1)):
        pacer.update(total, 1.0)
    assert pacer.stride == 1 and pacer.pause == pause  # the stride relaxes first
    pacer.update(total, QUIET_SECONDS)
    assert pacer.pause < pause
