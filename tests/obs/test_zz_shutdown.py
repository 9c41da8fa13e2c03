"""Last of the real-OBS tests (file order): OBS shuts down cleanly with the filter running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from obs_harness import CAMERA, FILTER, HOTKEY_KEYS

from partialstyle.obs.frame_slots import slot_folder

pytestmark = pytest.mark.obs


def test_clean_shutdown_without_leaks(obs_session):
    children = [
        entry["inference_pid"]
        for entry in obs_session.filter_stats().values()
        if entry.get("inference_pid")
    ]
    assert children, "the filter should be running"
    obs_pid = obs_session.obs.pid
    code = obs_session.stop()
    log = obs_session.exit_log
    errors = [line for line in log.splitlines() if "[partialstyle]" in line and "error" in line]
    assert code == 0, log[-3000:]
    assert "Number of memory leaks: 0" in log
    assert not errors, errors
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not list(slot_folder().glob(f"partialstyle-{obs_pid}-*"))


def test_hotkey_bindings_are_saved_with_the_scene_collection(obs_session):
    """OBS rewrote the collection on exit; the filter's key bindings are in it, with the
    source it filters (see partialstyle.obs.hotkeys)."""
    collection = json.loads(obs_session.collection_file().read_text())
    camera = next(source for source in collection["sources"] if source["name"] == CAMERA)
    assert [entry["name"] for entry in camera["filters"]] == [FILTER]
    for hotkey, key in HOTKEY_KEYS.items():
        assert [binding["key"] for binding in camera["hotkeys"][hotkey]] == [key]
