"""OBS Studio's configuration files: where they are and how scene collections look.

Used by `partialstyle obs setup` and `obs demo` and by the OBS test harness. Layout as read by
OBS 29-32: <config>/global.ini names the current scene collection ([Basic]
SceneCollectionFile); collections are basic/scenes/<file>.json, whose "modules" →
"scripts-tool" list holds the scripts OBS loads with that collection.
"""

from __future__ import annotations

import configparser
import json
import os
import sys
from pathlib import Path
from typing import Any

FILTER_ID = "partialstyle_filter"  # the same as partialstyle.obs.filter.SOURCE_ID
SCRIPT_NAME = "obs_partialstyle.py"


def script_path() -> Path:
    """obs_partialstyle.py of this checkout or installation."""
    return Path(__file__).resolve().parent.parent.parent / SCRIPT_NAME


def config_dir() -> Path:
    """OBS's configuration folder for this user (Flatpak's if only that one exists)."""
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "obs-studio"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "obs-studio"
    native = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "obs-studio"
    flatpak = Path.home() / ".var" / "app" / "com.obsproject.Studio" / "config" / "obs-studio"
    return flatpak if flatpak.is_dir() and not native.is_dir() else native


def read_ini(path: Path) -> configparser.ConfigParser:
    """OBS writes keys in CamelCase and sometimes a UTF-8 BOM; keep both intact."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment]
    if path.is_file():
        parser.read_string(path.read_text(encoding="utf-8-sig"))
    return parser


def current_collection_file(config: Path) -> Path | None:
    """The JSON file of the scene collection OBS opens next, or None if OBS never ran."""
    ini = config / "user.ini" if (config / "user.ini").is_file() else config / "global.ini"
    name = read_ini(ini).get("Basic", "SceneCollectionFile", fallback=None)
    return config / "basic" / "scenes" / f"{name}.json" if name else None


def filter_entry(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": FILTER_ID,
        "versioned_id": FILTER_ID,
        "name": name,
        "enabled": True,
        "settings": settings,
    }


def hotkey_bindings(keys: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """A source's "hotkeys" entry: hotkey name → its key ("OBS_KEY_F8"), as OBS saves it."""
    return {hotkey: [{"key": key}] for hotkey, key in keys.items()}


def media_source(
    name: str,
    path: Path,
    filters: list[dict] = (),  # type: ignore[assignment]
    hotkeys: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A looping local-file media source (OBS's ffmpeg_source); `hotkeys` binds keys to
    hotkeys registered on it (the filter's hotkeys live on the source it filters)."""
    return {
        "id": "ffmpeg_source",
        "versioned_id": "ffmpeg_source",
        "name": name,
        "settings": {
            "is_local_file": True,
            "local_file": str(path),
            "looping": True,
            "restart_on_activate": False,
            "hw_decode": False,
        },
        "filters": list(filters),
        "hotkeys": hotkey_bindings(hotkeys or {}),
    }


def webcam_source(name: str, device: str, filters: list[dict] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """A V4L2 webcam source (Linux)."""
    return {
        "id": "v4l2_input",
        "versioned_id": "v4l2_input",
        "name": name,
        "settings": {"device_id": device},
        "filters": list(filters),
    }


def scene_collection(
    name: str, sources: list[dict], scripts: list[Path], scene: str = "Scene"
) -> dict[str, Any]:
    """A collection with one scene showing `sources` (first on top) and `scripts` loaded."""
    items = [
        {
            "name": source["name"],
            "id": index + 1,
            "visible": True,
            "locked": False,
            "pos": {"x": 0.0, "y": 0.0},
            "scale": {"x": 1.0, "y": 1.0},
            "rot": 0.0,
            "align": 5,
            "bounds_type": 0,
        }
        for index, source in enumerate(reversed(sources))
    ]
    scene_source = {
        "id": "scene",
        "versioned_id": "scene",
        "name": scene,
        "settings": {"id_counter": len(items), "items": items},
    }
    return {
        "name": name,
        "current_scene": scene,
        "current_program_scene": scene,
        "scene_order": [{"name": scene}],
        "sources": [scene_source, *sources],
        "modules": {"scripts-tool": [{"path": str(path), "settings": {}} for path in scripts]},
    }


def add_script(collection: dict[str, Any], script: Path, settings: dict | None = None) -> bool:
    """Add `script` to a collection's scripts-tool list; False if it is already there."""
    scripts = collection.setdefault("modules", {}).setdefault("scripts-tool", [])
    if any(Path(entry.get("path", "")).name == script.name for entry in scripts):
        return False
    scripts.append({"path": str(script), "settings": settings or {}})
    return True


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4))
