"""The shared OBS session for the real-OBS tests (marked `obs`).

One OBS process serves most tests in tests/obs (starting OBS and the models takes a while);
test_zz_shutdown.py stops it, then test_zzz_start_stop.py runs OBS a few more times. Without
OBS the tests skip, except in CI (CI=true), where they fail: CI must install obs-studio and xvfb.
"""

from __future__ import annotations

import os

import pytest
from obs_harness import ObsSession, obs_available


@pytest.fixture(scope="session")
def obs_installed() -> None:
    """Skips without OBS and Xvfb; in CI fails instead."""
    missing = obs_available()
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"OBS tests need OBS in CI: {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="session")
def obs_session(tmp_path_factory, obs_installed, default_models) -> ObsSession:
    session = ObsSession(tmp_path_factory.mktemp("obs"))
    try:
        session.start()
    except Exception:
        session.stop()
        raise
    yield session
    session.stop()
