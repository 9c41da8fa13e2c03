"""Shared fixtures: real photos and the real default models."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

# In CI a skip is a failure unless tests/skip_policy.py expects its reason.
from skip_policy import (  # noqa: F401
    pytest_make_collect_report,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

from partialstyle import weights


@pytest.fixture(scope="session")
def default_models() -> None:
    """The default models, prepared (fetched and converted) if this machine lacks them."""
    weights.prepare(log=lambda line: None)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real portrait photo, 512×512 RGB."""
    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def astronaut_wide(astronaut: np.ndarray) -> np.ndarray:
    """The portrait in a 16:9 webcam-like frame (640×360), background extended by reflection."""
    import cv2

    person = cv2.resize(astronaut, (360, 360), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.pad(person, ((0, 0), (140, 140), (0, 0)), mode="reflect"))
