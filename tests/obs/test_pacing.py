"""The style pacer: backs off when OBS misses frames, comes back when it is quiet."""

from __future__ import annotations

from partialstyle.obs.pacing import FIRST_PAUSE, MAX_PAUSE, QUIET_SECONDS, StylePacer


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
    pacer = StylePacer(floor=0.5)
    assert pacer.update(0, 1.0) == 0.5
    assert pacer.update(10, 1.0) == 1.0
    assert min(pacer.update(10, 1.0) for _ in range(100)) == 0.5
