"""The filter's figures: rates averaged over a window, the log line that reports them."""

from __future__ import annotations

import pytest

from partialstyle.obs import stats
from partialstyle.obs.pacing import StylePacer


def test_rates_average_the_counts_over_the_window():
    samples = [(float(t), {"results": 15 * t, "stylizations": 2 * t}) for t in range(61)]
    rates = stats.counter_rates(samples, 30.0)
    assert rates == {"results": pytest.approx(15.0), "stylizations": pytest.approx(2.0)}
    # A burst in the last second does not make the 30-second figure: 21 refreshes in 1 s
    # after 29 quiet seconds is 21/30 per second, not 21.
    burst = [(float(t), {"stylizations": 0}) for t in range(30)] + [(30.0, {"stylizations": 21})]
    assert stats.counter_rates(burst, 30.0)["stylizations"] == pytest.approx(0.7)
    assert stats.counter_rates(burst[:1], 30.0) == {"stylizations": 0.0}
    assert stats.counter_rates([], 30.0) == {}
    # A counter that started again (a new inference process) counts from zero.
    restarted = [(0.0, {"stylizations": 500}), (10.0, {"stylizations": 20})]
    assert stats.counter_rates(restarted, 30.0)["stylizations"] == pytest.approx(2.0)


def test_render_stats_keep_enough_samples_for_the_log_window():
    recorded = stats.RenderStats()
    for second in range(100):
        recorded.sample(float(second), stylizations=3 * second)
    assert recorded.rates(stats.LOG_EVERY)["stylizations"] == pytest.approx(3.0)


def test_the_log_line_cannot_show_more_refreshes_than_styled_frames_by_rounding():
    summary = {
        "render_ms_mean": 1.5,
        "render_ms_p95": 2.5,
        "render_ms_max": 9.0,
        "inference_ms_mean": 120.0,
        "holding_back": None,
    }
    line = stats.log_line("'Camera' / 'Style'", summary, {"results": 17.9, "stylizations": 0.7})
    assert "17.9 styled frames/s (style refreshed 0.7 times/s)" in line
    assert f"averages over {stats.LOG_EVERY:.0f} s" in line and "holding back" not in line
    summary["holding_back"] = "OBS missed frames, so style runs at least 0.2 s apart"
    assert stats.log_line("x", summary, {}).endswith("; holding back for OBS")


def test_holding_back_means_a_pause_above_the_users_cap_or_a_frame_stride():
    pacer = StylePacer(floor=0.2)
    assert not pacer.holding_back and pacer.describe() is None  # the user's own cap
    pacer.update(0, 1.0)
    pacer.update(10, 1.0)
    assert pacer.holding_back and "0.4 s apart" in pacer.describe()
    pacer = StylePacer()
    pacer.stride = 2
    assert pacer.describe() == "OBS missed frames, so only 1 in 2 frames is sent for styling"
