"""Starting, checking and stopping the inference process (`partialstyle.obs.inference_server`).

It runs with the project environment's own interpreter, at a lower CPU priority, with none of
OBS's Python variables; every process started here is ended when OBS's Python exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import weakref
from pathlib import Path

from partialstyle.obs import messages

SERVER_MODULE = "partialstyle.obs.inference_server"
QUIT_TIMEOUT = 3.0
# Windows has no nice values; this creation flag is its equivalent of nice 10.
BELOW_NORMAL_PRIORITY_CLASS = 0x00004000


def venv_python(venv: Path) -> Path:
    """The interpreter of a virtual environment (bin/python or Scripts/python.exe)."""
    for candidate in (venv / "bin" / "python", venv / "Scripts" / "python.exe"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{venv} has no bin/python or Scripts/python.exe")


def child_environment() -> dict[str, str]:
    """OBS's environment minus what would point the child at OBS's own Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# Every child still running, so that Python's exit (OBS quitting) can end them.
_children: weakref.WeakSet[subprocess.Popen] = weakref.WeakSet()


def start_server(python: Path, arguments: list[str]) -> subprocess.Popen:
    flags = BELOW_NORMAL_PRIORITY_CLASS if sys.platform == "win32" else 0
    process = subprocess.Popen(
        [str(python), "-m", SERVER_MODULE, *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_environment(),
        creationflags=flags,
    )
    _children.add(process)
    return process


def stop_process(process: subprocess.Popen, grace: float = QUIT_TIMEOUT) -> None:
    """Close its stdin (the child's cue to quit), then terminate, then kill; always reaped."""
    with contextlib.suppress(OSError, ValueError):
        process.stdin.close()
    for action in (None, process.terminate, process.kill):
        if action is not None:
            with contextlib.suppress(OSError):
                action()
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()  # after SIGKILL this returns at once


@atexit.register
def _stop_children() -> None:
    for process in list(_children):
        if process.poll() is None:
            stop_process(process, 1.0)


def check_environment(python: Path, timeout: float = 180.0) -> messages.Environment:
    """Run the server's --check in `python`: device, missing models, Python version."""
    process = start_server(python, ["--check"])
    try:
        output, errors = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(process, 0.5)
        return messages.Environment(error=f"no answer from {python} in {timeout:.0f} s")
    for line in output.splitlines():
        found = messages.decode(line)
        if isinstance(found, messages.Environment):
            return found
    # Nothing printed: the interpreter failed before answering; a traceback ends in the error.
    tail = errors.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    return messages.Environment(error=f"{python} failed: {tail[0]}")
