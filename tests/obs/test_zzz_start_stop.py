"""OBS started and stopped again and again with the filter running: always a clean exit.

Runs after the shared session has ended (file order). A crash at exit showed up only in some
runs, so this repeats the cycle (PARTIALSTYLE_OBS_CYCLES times, default 3).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from obs_harness import FILTER, ObsSession

pytestmark = pytest.mark.obs

CYCLES = int(os.environ.get("PARTIALSTYLE_OBS_CYCLES", "3"))


@pytest.mark.parametrize("cycle", range(CYCLES))
def test_start_style_stop(cycle, tmp_path, obs_installed, default_models):
    session = ObsSession(tmp_path)
    try:
        session.start()
        session.wait_for(
            lambda: session.filter_stats().get(FILTER, {}).get("results", 0) >= 1,
            120,
            what="the first styled frame",
        )
        child = session.filter_stats()[FILTER]["inference_pid"]
    finally:
        code = session.stop()
    log = session.exit_log
    assert code == 0, log[-3000:]
    assert "Number of memory leaks: 0" in log
    assert not Path(f"/proc/{child}").exists()
