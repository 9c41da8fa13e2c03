"""`partialstyle obs setup` and `partialstyle obs demo`: put the filter into a user's OBS.

setup adds obs_partialstyle.py to the scene collection OBS opens next (OBS must be closed,
since it rewrites its files on exit), after backing up every file it changes. demo writes a
separate "Partial Style Demo" collection, a webcam (or a sample clip) with the filter on it,
and starts OBS with it.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from partialstyle.errors import PartialStyleError
from partialstyle.obs import obsconfig

DEMO_COLLECTION = "Partial Style Demo"
DEMO_FILE = "Partial_Style_Demo"
DEMO_SETTINGS = {"person_style": "multistyle:8", "background_style": "multistyle:19"}


def obs_running() -> bool:
    """True if an OBS process of this user is running (Linux: /proc; else pgrep/tasklist)."""
    if sys.platform.startswith("linux"):
        for comm in glob.glob("/proc/[0-9]*/comm"):
            try:
                if Path(comm).read_text().strip() == "obs":
                    return True
            except OSError:
                continue
        return False
    if sys.platform == "win32":
        listing = subprocess.run(["tasklist"], capture_output=True, text=True).stdout
        return "obs64.exe" in listing or "obs32.exe" in listing
    return subprocess.run(["pgrep", "-x", "OBS|obs"], capture_output=True).returncode == 0


def backup(path: Path) -> Path:
    """Copy `path` beside itself with a timestamp; returns the copy."""
    copy = path.with_name(f"{path.name}.partialstyle-backup-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.copy2(path, copy)
    return copy


def script_settings(script: Path) -> dict[str, str]:
    """The script's settings: the environment folder, unless it is the .venv beside the script."""
    if (script.parent / ".venv").resolve() == Path(sys.prefix).resolve():
        return {}
    return {"venv": sys.prefix} if sys.prefix != sys.base_prefix else {}


def setup(config: Path | None = None, out: Callable[[str], None] = print) -> Path:
    """Add the script to the current scene collection; returns the collection file changed."""
    config = config or obsconfig.config_dir()
    script = obsconfig.script_path()
    if not script.is_file():
        raise PartialStyleError(f"{script} is missing; reinstall partialstyle")
    if obs_running():
        raise PartialStyleError("OBS is running; close it first (it rewrites its files on exit)")
    collection_file = obsconfig.current_collection_file(config)
    if collection_file is None or not collection_file.is_file():
        raise PartialStyleError(
            f"found no OBS scene collection in {config}; start OBS once, close it, and run "
            "`partialstyle obs setup` again"
        )
    collection = json.loads(collection_file.read_text(encoding="utf-8-sig"))
    if not obsconfig.add_script(collection, script, script_settings(script)):
        out(f"{script.name} is already in scene collection {collection_file}; nothing to do.")
        return collection_file
    saved = backup(collection_file)
    obsconfig.write_json(collection_file, collection)
    out(f"Added {script} to OBS scene collection '{collection.get('name', '?')}'.")
    out(f"  changed: {collection_file}")
    out(f"  backup:  {saved}")
    out("Start OBS, right-click a video source → Filters → + → Partial Style Transfer.")
    out(f"To undo: close OBS and copy the backup back:  cp '{saved}' '{collection_file}'")
    out("  (or remove the script in OBS: Tools → Scripts → select it → −)")
    return collection_file


def webcam_device() -> str | None:
    devices = sorted(glob.glob("/dev/video*")) if sys.platform.startswith("linux") else []
    return devices[0] if devices else None


def write_demo(config: Path, clip_dir: Path, out: Callable[[str], None] = print) -> Path:
    """Write the demo scene collection; returns its file."""
    from partialstyle.obs.sample_clip import write_sample_clip

    filters = [obsconfig.filter_entry("Partial Style Transfer", dict(DEMO_SETTINGS))]
    device = webcam_device()
    if device is not None:
        source = obsconfig.webcam_source("Webcam", device, filters)
        out(f"Demo source: the webcam {device}")
    else:
        clip = write_sample_clip(clip_dir / "partialstyle-sample.mp4", sway=12)
        source = obsconfig.media_source("Sample person", clip, filters)
        out(f"No webcam found; demo source: the sample clip {clip}")
    script = obsconfig.script_path()
    collection = obsconfig.scene_collection(DEMO_COLLECTION, [source], [])
    obsconfig.add_script(collection, script, script_settings(script))
    path = config / "basic" / "scenes" / f"{DEMO_FILE}.json"
    if path.is_file():
        out(f"Replacing the earlier demo collection (backup {backup(path)})")
    obsconfig.write_json(path, collection)
    return path


def demo(config: Path | None = None, out: Callable[[str], None] = print) -> int:
    """Write the demo collection and run OBS with it until OBS exits; returns its exit code."""
    config = config or obsconfig.config_dir()
    obs = shutil.which("obs") or shutil.which("obs64")
    if obs is None:
        raise PartialStyleError(
            "OBS Studio is not installed (Debian/Ubuntu: apt install obs-studio)"
        )
    if obs_running():
        raise PartialStyleError("OBS is running; close it first, then run the demo again")
    path = write_demo(config, config / "partialstyle", out)
    out(f"Wrote {path}. Starting OBS with the '{DEMO_COLLECTION}' scene collection…")
    out("OBS keeps it as the current collection: switch back in the Scene Collection menu.")
    return subprocess.call([obs, "--collection", DEMO_COLLECTION], env=dict(os.environ))
