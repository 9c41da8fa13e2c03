"""Last of the real-OBS tests (file order): OBS shuts down cleanly with the filter running."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.obs


def test_clean_shutdown_without_leaks(obs_session):
    code = obs_session.stop()
    log = obs_session.exit_log
    errors = [line for line in log.splitlines() if "[partialstyle]" in line and "error" in line]
    assert code == 0, log[-3000:]
    assert "Number of memory leaks: 0" in log
    assert not errors, errors
