"""Runs the real OBS Studio headless: Xvfb, a private config, obs-websocket, our script.

One `ObsSession` is one OBS process with a throw-away XDG_CONFIG_HOME holding global.ini, a
640×360 30 fps profile and a scene collection whose scripts-tool module loads
obs_partialstyle.py, with a media source looping a still clip of a real person photo. The
source carries the filter, as a user's saved collection would, with keys bound to its hotkeys.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import obsws_python
from x11_close import close_windows

from partialstyle.obs import obsconfig
from partialstyle.obs.sample_clip import write_sample_clip

COLLECTION = "Test"
PROFILE = "Test"
WIDTH, HEIGHT, FPS = 640, 360, 30
CAMERA = "Camera"
MAIN_WINDOW_TITLE = "OBS "  # "OBS 29.0.2 (linux) - Profile: Test - Scenes: Test"
FILTER = "Partial Style"
# The comparisons with the library need deterministic masks: no smoothing across frames.
FILTER_SETTINGS = {
    "person_style": "multistyle:8",
    "background_style": "multistyle:19",
    "temporal_smoothing": 0.0,
}
# Keys Xvfb's keymap has: OBS reads a key missing from the X keymap as held down.
HOTKEY_KEYS = {
    "partialstyle_next_person_style": "OBS_KEY_F8",
    "partialstyle_previous_person_style": "OBS_KEY_F9",
    "partialstyle_next_background_style": "OBS_KEY_F10",
    "partialstyle_previous_background_style": "OBS_KEY_F11",
    "partialstyle_toggle": "OBS_KEY_F12",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Where X servers announce display n: fixed by the X11 convention (Xlib and Xvfb hard-code
# these paths), not a temporary directory of ours, so TMPDIR does not move them.
X11_ANNOUNCE_DIR = Path("/tmp")


def x_socket(number: int) -> Path:
    return X11_ANNOUNCE_DIR / ".X11-unix" / f"X{number}"


def free_display() -> int:
    """A display number no X server uses (no lock file, no socket)."""
    for number in range(60, 200):
        if not (X11_ANNOUNCE_DIR / f".X{number}-lock").exists() and not x_socket(number).exists():
            return number
    raise RuntimeError("no free X display number between :60 and :199")


def write_config(root: Path, port: int, clip: Path) -> Path:
    """A private OBS configuration under `root`; returns the XDG_CONFIG_HOME to use."""
    config = root / "config" / "obs-studio"
    (config / "basic" / "profiles" / PROFILE).mkdir(parents=True)
    (root / "recordings").mkdir()
    major, minor, patch = 29, 0, 2
    (config / "global.ini").write_text(
        "[General]\nFirstRun=true\n"
        f"LastVersion={(major << 24) | (minor << 16) | patch}\n"
        f"[Basic]\nProfile={PROFILE}\nProfileDir={PROFILE}\n"
        f"SceneCollection={COLLECTION}\nSceneCollectionFile={COLLECTION}\n"
        "ConfigOnNewProfile=false\n"
        "[OBSWebSocket]\nFirstLoad=false\nServerEnabled=true\n"
        f"ServerPort={port}\nAlertsEnabled=false\nAuthRequired=false\nServerPassword=\n"
    )
    (config / "basic" / "profiles" / PROFILE / "basic.ini").write_text(
        f"[General]\nName={PROFILE}\n"
        f"[Video]\nBaseCX={WIDTH}\nBaseCY={HEIGHT}\nOutputCX={WIDTH}\nOutputCY={HEIGHT}\n"
        f"FPSType=0\nFPSCommon={FPS}\n"
        # Recordings (the live test reads them back frame by frame): light x264 in mkv.
        "[Output]\nMode=Simple\n"
        f"[SimpleOutput]\nFilePath={root / 'recordings'}\nRecFormat=mkv\nRecQuality=Stream\n"
        "StreamEncoder=x264\nRecEncoder=x264\nPreset=ultrafast\nVBitrate=6000\n"
    )
    styled = obsconfig.filter_entry(FILTER, FILTER_SETTINGS)
    camera = obsconfig.media_source(CAMERA, clip, [styled], HOTKEY_KEYS)
    collection = obsconfig.scene_collection(COLLECTION, [camera], [obsconfig.script_path()])
    obsconfig.write_json(config / "basic" / "scenes" / f"{COLLECTION}.json", collection)
    return root / "config"


class ObsSession:
    """One headless OBS process and an obs-websocket client to it."""

    def __init__(self, root: Path):
        self.root = root
        self.clip = write_sample_clip(root / "person.avi", WIDTH, HEIGHT, FPS, sway=0)
        self.port = free_port()
        self.display = free_display()
        self.stats_file = root / "partialstyle-stats.json"
        self.log_file = root / "obs-stdout.txt"
        self.xdg = write_config(root, self.port, self.clip)
        self.xvfb = subprocess.Popen(
            ["Xvfb", f":{self.display}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.obs: subprocess.Popen | None = None
        self.client: obsws_python.ReqClient | None = None
        self.exit_log = ""

    def start(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not x_socket(self.display).exists():
            if time.monotonic() > deadline or self.xvfb.poll() is not None:
                raise RuntimeError(f"Xvfb did not start on :{self.display}")
            time.sleep(0.1)
        env = dict(
            os.environ,
            DISPLAY=f":{self.display}",
            XDG_CONFIG_HOME=str(self.xdg),
            PARTIALSTYLE_OBS_STATS=str(self.stats_file),
            PARTIALSTYLE_VENV=sys.prefix,
            LIBGL_ALWAYS_SOFTWARE="1",
        )
        command = [
            "obs", "--multi", "--collection", COLLECTION, "--profile", PROFILE,
            "--websocket_port", str(self.port),
        ]  # fmt: skip
        self.obs = subprocess.Popen(
            command,
            env=env,
            cwd=self.root,
            stdout=self.log_file.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while True:
            if self.obs.poll() is not None:
                raise RuntimeError(f"OBS exited with {self.obs.returncode}:\n{self.log()[-3000:]}")
            try:
                self.client = obsws_python.ReqClient(
                    host="127.0.0.1", port=self.port, password="", timeout=30
                )
                break
            except (ConnectionError, OSError) as error:
                if time.monotonic() > deadline:
                    log = self.log()[-3000:]
                    raise RuntimeError(f"obs-websocket did not answer:\n{log}") from error
                time.sleep(0.5)

    def collection_file(self) -> Path:
        return self.xdg / "obs-studio" / "basic" / "scenes" / f"{COLLECTION}.json"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self, timeout: float = 60.0) -> int:
        """Close OBS's main window as a user would; returns the exit code. Kills only on a hang.

        Not SIGINT: OBS 29's SIGINT handler closes the window from inside the signal handler,
        which now and then hangs or crashes OBS itself (see x11_close).
        """
        if self.client is not None:
            self.client.disconnect()
            self.client = None
        code = 0
        if self.obs is not None and self.obs.poll() is None:
            if not close_windows(f":{self.display}", MAIN_WINDOW_TITLE):
                self.obs.send_signal(signal.SIGINT)  # no main window (yet): the only way left
            try:
                code = self.obs.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.obs.pid, signal.SIGKILL)
                self.obs.wait()
                code = -9
        elif self.obs is not None:
            code = self.obs.returncode
        if self.xvfb.poll() is None:
            self.xvfb.terminate()
            self.xvfb.wait(10)
        self.exit_log = self.log()
        return code

    # -- helpers for tests ------------------------------------------------------------------

    def screenshot(self, source: str = CAMERA, width: int = WIDTH, height: int = HEIGHT):
        """The source as rendered through its filters, RGB uint8 (lossless PNG)."""
        for attempt in range(3):  # OBS cannot render a source that is changing size (702)
            try:
                reply = self.client.get_source_screenshot(source, "png", width, height, -1)
                break
            except obsws_python.error.OBSSDKRequestError as error:
                if error.code != 702 or attempt == 2:
                    raise
                time.sleep(0.2)
        data = base64.b64decode(reply.image_data.split(",", 1)[1])
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def stop_recording(self) -> Path:
        """Stop OBS's recording; returns its file once OBS has finished writing it."""
        client = self.client
        reply = client.stop_record()
        path = Path(getattr(reply, "output_path", "") or "")
        if not path.is_file():
            path = max((self.root / "recordings").glob("*.mkv"), key=lambda p: p.stat().st_mtime)
        self.wait_for(lambda: not client.get_record_status().output_active, 10, what="record end")
        return path

    def filter_stats(self) -> dict:
        try:
            return json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return {}

    def wait_for(self, condition, timeout: float, interval: float = 0.2, what: str = ""):
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(interval)


def obs_available() -> str | None:
    """Why OBS cannot run here, or None when it can."""
    for program in ("obs", "Xvfb"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install obs-studio xvfb)"
    return None


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a recording, RGB uint8."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames
