"""Shared fixtures: real photos and the real default models."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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


@pytest.fixture()
def tmpfs(tmp_path: Path):
    """Mounts small tmpfs folders (a full or read-only disk), unmounted after the test."""
    mounted = []

    def mount(size_kb: int, read_only: bool = False) -> Path:
        if os.geteuid() != 0:
            pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        options = f"size={size_kb}k" + (",ro" if read_only else "")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=True)
