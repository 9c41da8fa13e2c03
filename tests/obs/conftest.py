"""The shared OBS session for the real-OBS tests (marked `obs`).

One OBS process serves every test in tests/obs (starting OBS and torch inside it takes a while);
test_zz_shutdown.py runs last and stops it. Without OBS the tests skip, except in CI (CI=true),
where they fail: CI must install obs-studio and xvfb.
"""

from __future__ import annotations

import os

import pytest
from obs_harness import ObsSession, obs_available


@pytest.fixture(scope="session")
def obs_session(tmp_path_factory, default_models) -> ObsSession:
    missing = obs_available()
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"OBS tests need OBS in CI: {missing}")
        pytest.skip(missing)
    session = ObsSession(tmp_path_factory.mktemp("obs"))
    try:
        session.start()
    except Exception:
        session.stop()
        raise
    yield session
    session.stop()
