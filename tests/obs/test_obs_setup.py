"""`partialstyle obs setup` and the demo collection, on a throw-away OBS config folder."""

from __future__ import annotations

import json

import pytest

from partialstyle.errors import PartialStyleError
from partialstyle.obs import obsconfig, setup


def make_config(root, collection_file="Untitled"):
    config = root / "obs-studio"
    (config / "basic" / "scenes").mkdir(parents=True)
    (config / "global.ini").write_text(
        f"\ufeff[Basic]\nSceneCollection=Untitled\nSceneCollectionFile={collection_file}\n"
    )
    original = {"name": "Untitled", "sources": [], "modules": {"scripts-tool": []}}
    (config / "basic" / "scenes" / f"{collection_file}.json").write_text(json.dumps(original))
    return config


def test_setup_adds_the_script_once_and_keeps_a_backup(tmp_path, monkeypatch):
    monkeypatch.setattr(setup, "obs_running", lambda: False)  # the real check sees this host
    config = make_config(tmp_path)
    lines: list[str] = []
    changed = setup.setup(config, out=lines.append)
    scripts = json.loads(changed.read_text())["modules"]["scripts-tool"]
    assert [entry["path"] for entry in scripts] == [str(obsconfig.script_path())]
    backups = list(changed.parent.glob("Untitled.json.partialstyle-backup-*"))
    assert len(backups) == 1 and json.loads(backups[0].read_text())["modules"] == {
        "scripts-tool": []
    }
    assert any("To undo" in line for line in lines)
    setup.setup(config, out=lines.append)  # second run: nothing changes, no new backup
    assert len(list(changed.parent.glob("*.partialstyle-backup-*"))) == 1
    assert len(json.loads(changed.read_text())["modules"]["scripts-tool"]) == 1


def test_setup_refuses_without_a_collection_or_while_obs_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(setup, "obs_running", lambda: False)
    with pytest.raises(PartialStyleError, match="start OBS once"):
        setup.setup(tmp_path / "nothing", out=lambda line: None)
    monkeypatch.setattr(setup, "obs_running", lambda: True)
    with pytest.raises(PartialStyleError, match="close it first"):
        setup.setup(make_config(tmp_path), out=lambda line: None)


def test_demo_collection_has_the_filter_and_the_script(tmp_path, monkeypatch):
    monkeypatch.setattr(setup, "webcam_device", lambda: None)
    path = setup.write_demo(tmp_path / "obs-studio", tmp_path / "clips", out=lambda line: None)
    collection = json.loads(path.read_text())
    source = next(s for s in collection["sources"] if s["id"] == "ffmpeg_source")
    assert (tmp_path / "clips" / "partialstyle-sample.mp4").stat().st_size > 10_000
    (demo_filter,) = source["filters"]
    assert demo_filter["id"] == "partialstyle_filter"
    settings = demo_filter["settings"]
    assert settings["person_style"] != settings["background_style"]
    assert collection["modules"]["scripts-tool"][0]["path"] == str(obsconfig.script_path())
