"""Where the fused style kernel (``fused_norm``) is built, and whether a build is running.

The kernel is compiled once, by ``install/install.sh``, into the project environment itself
(``<environment>/partialstyle-kernels``), and loaded from there by whoever runs it: another
user, a service account or a sandboxed OBS does not compile it again into their own home.
Only when that folder lacks the kernel for this CPU and torch (a new CPU, a torch upgrade)
and cannot be written is a per-user folder used instead.

A running build leaves a marker file in the folder it builds into, naming its process and
when it started, so OBS's process (which never imports torch) can show that the filter is
preparing and for how long. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

DIR_VARIABLE = "PARTIALSTYLE_KERNEL_DIR"  # overrides the environment's folder (packagers)
FOLDER = "partialstyle-kernels"
MARKER = "building.json"
# What a first build costs, as users are told (2 min 20 s measured on a busy 2-core machine).
BUILD_TAKES = "usually 1-3 minutes"


def environment_dir(prefix: Path | None = None) -> Path:
    """The folder inside the project environment (`prefix`, default: this interpreter's)."""
    override = os.environ.get(DIR_VARIABLE)
    if override:
        return Path(override).expanduser()
    return Path(sys.prefix if prefix is None else prefix) / FOLDER


def user_dir() -> Path:
    """The per-user fallback folder, for an environment the user cannot write to."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "partialstyle" / "kernels"


def search_dirs(prefix: Path | None = None) -> tuple[Path, ...]:
    """Where a built kernel is looked for, in order."""
    return (environment_dir(prefix), user_dir())


def writable_dir(prefix: Path | None = None) -> Path | None:
    """The first folder a build may write to (created if missing), or None."""
    for folder in search_dirs(prefix):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
    return None


def mark_building(folder: Path, pid: int) -> Path:
    """Write the marker of a build by process `pid` into `folder`; returns its path."""
    marker = folder / MARKER
    temporary = marker.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"pid": pid, "started": time.time()}))
    os.replace(temporary, marker)
    return marker


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def build_running(prefix: Path | None = None, now: float | None = None) -> float | None:
    """Seconds since a still-running build started (in any search folder), else None.

    A marker whose process has gone (a build that was killed) does not count.
    """
    for folder in search_dirs(prefix):
        try:
            found = json.loads((folder / MARKER).read_text())
            pid, started = int(found["pid"]), float(found["started"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            return max(0.0, (time.time() if now is None else now) - started)
    return None
