"""Our hand-written libobs enum values equal the installed OBS's (read through obspython)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from partialstyle.obs import libobs

SCRIPTING = Path("/usr/lib/x86_64-linux-gnu/obs-scripting")
NAMES = [
    "OBS_SOURCE_TYPE_FILTER", "OBS_SOURCE_VIDEO", "OBS_SOURCE_SRGB", "OBS_SOURCE_ASYNC",
    "OBS_SOURCE_CUSTOM_DRAW", "GS_RGBA", "GS_ZS_NONE",
    "GS_CLEAR_COLOR", "GS_BLEND_ZERO", "GS_BLEND_ONE", "GS_BLEND_INVSRCALPHA", "GS_DYNAMIC",
    "OBS_EFFECT_DEFAULT", "OBS_COMBO_TYPE_EDITABLE", "OBS_COMBO_TYPE_LIST",
    "OBS_COMBO_FORMAT_STRING", "OBS_TEXT_DEFAULT", "OBS_TEXT_INFO", "OBS_GROUP_NORMAL",
    "OBS_PATH_FILE",
    "LOG_ERROR", "LOG_WARNING", "LOG_INFO", "OBS_INVALID_HOTKEY_ID",
]  # fmt: skip


def test_enum_values_match_obspython():
    if not (SCRIPTING / "obspython.py").is_file():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("OBS's Python scripting module is missing; CI must install obs-studio")
        pytest.skip("OBS Studio (Debian package layout) is not installed")
    code = (
        f"import sys, json; sys.path.append({str(SCRIPTING)!r}); import obspython as o; "
        f"print(json.dumps({{n: getattr(o, n) for n in {NAMES!r}}}))"
    )
    # obspython links the system libpython: ask the system python3 of the same minor.
    output = subprocess.run(
        ["/usr/bin/python3", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(output) == {name: getattr(libobs, name) for name in NAMES}
