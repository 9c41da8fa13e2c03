"""Facts about the machine for `partialstyle doctor` and the installer."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys


def obs_embedded_python() -> str | None:
    """The Python version ("3.11") that the installed OBS links, or None if unknown.

    Linux builds of OBS link libpython at build time, so `ldd` on the obs binary names it.
    """
    obs = shutil.which("obs")
    if obs is None or shutil.which("ldd") is None:
        return None
    try:
        listing = subprocess.run(["ldd", obs], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"libpython(\d+\.\d+)", listing)
    return found.group(1) if found else None


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def obs_version() -> str | None:
    obs = shutil.which("obs")
    if obs is None:
        return None
    try:
        output = subprocess.run([obs, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"(\d+\.\d+\.\d+)", output.stdout + output.stderr)
    return found.group(1) if found else None
