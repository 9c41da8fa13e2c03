"""The properties dialog's logic without OBS: style lists, pictures, typed styles, status.

The ctypes side (partialstyle.obs.properties.build and its callbacks) is exercised by the
real-OBS test test_dialog_status_and_typed_style in test_obs_filter.py.
"""

from __future__ import annotations

import pytest
import skimage.data
import skimage.io

from partialstyle.obs import libobs, properties, scriptlog, settings


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "astronaut.png"
    skimage.io.imsave(path, skimage.data.astronaut())
    return path


@pytest.fixture
def johnson_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTIALSTYLE_MODELS", str(tmp_path / "models"))
    folder = tmp_path / "models" / "johnson"
    folder.mkdir(parents=True)
    (folder / "candy.pth").write_bytes(b"")
    return folder


def values(**changes):
    return {**settings.DEFAULTS, **changes}


def selected(items, current):
    """What OBS's non-editable list shows: the item whose value is exactly the setting."""
    matches = [name for name, value in items if value == current]
    assert len(matches) == 1, (current, items)
    return matches[0]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("s", "missing its kind"),
        ("starry", "missing its kind"),
        ("multistyle:99", "out of range"),
        ("multistyle:starry", "unknown multistyle name"),
        ("johnson:can", "no Johnson network 'can'"),
        ("johnson:/nowhere/net.pth", "does not exist"),
        ("arbitrary:/nowhere/wave.jpg", "does not exist"),
    ],
)
def test_unusable_styles_say_why(text, fragment, johnson_folder):
    assert fragment in settings.style_problem(text)


def test_usable_styles_have_no_problem(johnson_folder, picture):
    for text in ("none", "", "multistyle:starry-swirls", "multistyle:3=0.5,12=0.5",
                 "johnson:candy", f"johnson:{johnson_folder / 'candy.pth'}",
                 f"arbitrary:{picture}", "multistyle:19 (starry-swirls)"):  # fmt: skip
        assert settings.style_problem(text) is None, text
    assert settings.style_problem(settings.SAME_AS_PEOPLE, empty_allowed=True) is None


def test_a_bad_style_keeps_the_last_good_one_and_says_so():
    previous = values(person_style="multistyle:7")
    kept, problems = settings.keep_valid_styles(values(person_style="multistyle:99"), previous)
    assert kept["person_style"] == "multistyle:7"
    assert len(problems) == 1 and problems[0].startswith("Person style: multistyle id 99")
    assert "Still showing dark-expressionist (multistyle:7)" in problems[0]
    # Fixed: applied, and nothing is reported any more.
    kept, problems = settings.keep_valid_styles(values(person_style="multistyle:9"), previous)
    assert kept["person_style"] == "multistyle:9" and problems == ()
    # A new filter has no last good style: the value goes on and the worker reports it.
    kept, problems = settings.keep_valid_styles(values(person_style="multistyle:99"), None)
    assert kept["person_style"] == "multistyle:99" and problems == ()


def test_only_dialog_fields_changing_changes_nothing_for_the_filter():
    assert settings.same_effect(values(person_style_text="multistyle:1"), values())
    assert not settings.same_effect(values(person_style="multistyle:1"), values())


def test_typing_a_style_letter_by_letter_applies_it_only_on_enter():
    current = values(background_style="multistyle:19", background_style_text="multistyle:19")
    for typed in ("s", "st", "multistyle:1", "multistyle:12", "multistyle:12=1,3=1"):
        current["background_style_text"] = typed
        assert settings.dialog_changes("text", "background", current) == {}
    assert settings.typed_hint("background", current) == "Press Enter to apply this style."
    current["background_style_text"] = "multistyle:starry-swirls"  # the same style: no hint
    assert settings.typed_hint("background", current) is None
    current["background_style_text"] = "multistyle:starry"
    assert settings.typed_hint("background", current).startswith("Not applied: unknown")
    current["background_style_text"] = "multistyle:12=1,3=1\n"
    changes = settings.dialog_changes("text", "background", current)
    assert changes == {
        "background_style_text": "multistyle:12=1,3=1",
        "background_style": "multistyle:12=1,3=1",
    }
    current.update(changes)
    assert settings.typed_hint("background", current) is None
    # A bad style on Enter: the text stays for fixing, the style does not change.
    current["background_style_text"] = "multistyle:99\n"
    changes = settings.dialog_changes("text", "background", current)
    assert changes == {"background_style_text": "multistyle:99"}
    current.update(changes)
    assert settings.typed_hint("background", current).startswith("Not applied: multistyle id 99")


def test_choosing_a_picture_makes_it_the_style(picture):
    current = values(person_picture=str(picture))
    changes = settings.dialog_changes("picture", "person", current)
    assert changes == {
        "person_style": f"arbitrary:{picture}",
        "person_style_text": f"arbitrary:{picture}",
    }
    per_person = values(person2_picture=str(picture))
    assert settings.dialog_changes("picture", "person2", per_person) == {
        "person2_style": f"arbitrary:{picture}"
    }
    assert settings.dialog_changes("picture", "person", values(person_picture="/gone.jpg")) == {}


def test_picking_from_the_list_puts_the_style_in_the_typed_field():
    current = values(class_style="multistyle:4")
    assert settings.dialog_changes("list", "class", current) == {"class_style_text": "multistyle:4"}
    assert settings.dialog_changes("list", "person3", values(person3_style="multistyle:4")) == {}


def test_style_lists_offer_everything_and_show_the_current_value_by_name(johnson_folder, picture):
    items = settings.style_items("background", values(background_picture=str(picture)))
    names = [name for name, _ in items]
    assert len(items) == 1 + 26 + 1 + 1  # none, multistyle, candy, the chosen picture
    assert "candy (Johnson network)" in names and "Picture: astronaut.png" in names
    assert selected(items, "multistyle:19") == "starry-swirls (multistyle:19)"

    # Set by obs-websocket or saved by the old dialog: the same entry, with the exact text.
    for current in ("multistyle:starry-swirls", "multistyle:19 (starry-swirls)"):
        items = settings.style_items("background", values(background_style=current))
        assert selected(items, current) == "starry-swirls (multistyle:19)"
        assert len(items) == 1 + 26 + 1

    # Not among the entries: added first, by name.
    blend = "multistyle:3=0.5,12=0.5"
    items = settings.style_items("person", values(person_style=blend))
    assert items[0] == ("Blend: ribbon-abstract 50%, lilac-haze 50%", blend)

    # Per-person rows start with "same as Person style", whichever way it is stored.
    for empty in ("", settings.SAME_AS_PEOPLE):
        items = settings.style_items("person2", values(person2_style=empty))
        assert selected(items, empty) == settings.SAME_AS_PEOPLE


def test_status_has_state_first_and_measurements_apart():
    running = properties.status_text("ready", None, (), 2.04, 0.31)
    later = properties.status_text("ready", None, (), 6.5, 0.52)
    assert running.startswith("Running.") and "2.0 styled frames/s" in running
    assert properties.status_state(running) == properties.status_state(later) == "Running."
    assert properties.status_info_type(running) == properties.OBS_TEXT_INFO_NORMAL

    failed = properties.status_text("ready", "multistyle id 99 is out of range", (), 0.0, 0.3)
    assert failed.startswith("Error: multistyle id 99") and properties.MEASURED not in failed
    assert properties.status_info_type(failed) == properties.OBS_TEXT_INFO_ERROR
    assert properties.status_state(failed) != properties.status_state(running)

    problem = "Person style: multistyle id 99 is out of range. Still showing none (unstyled)."
    warned = properties.status_text("ready", None, (problem,), 2.0, 0.3)
    assert properties.status_state(warned) == f"Running.\n{problem}"
    assert properties.status_info_type(warned) == properties.OBS_TEXT_INFO_WARNING

    loading = properties.status_text("loading", None, (), 0.0, 0.0)
    assert loading.startswith("Loading")


def test_script_log_queue_hands_messages_over_in_order():
    written = []
    scriptlog.attach()
    try:
        scriptlog.report(libobs.LOG_ERROR, "first")
        scriptlog.report(libobs.LOG_ERROR, "second")
        assert scriptlog.drain(lambda level, text: written.append((level, text))) == 2
        assert scriptlog.drain(lambda level, text: written.append((level, text))) == 0
    finally:
        scriptlog.detach()
    assert written == [(libobs.LOG_ERROR, "first"), (libobs.LOG_ERROR, "second")]


def test_dialog_actions_cover_every_region_and_field():
    kinds = {(kind, region) for kind, region in properties.ACTIONS}
    for region in settings.STYLE_REGIONS:
        assert ("list", region) in kinds and ("picture", region) in kinds
    assert all(("text", region) in kinds for region in settings.TYPED_REGIONS)


class FakeInstance:
    def __init__(self, source: int, status: str):
        self.source, self.text = source, status

    def status(self) -> str:
        return self.text


def test_open_dialogs_reload_when_the_state_changes_not_the_numbers(monkeypatch):
    from types import SimpleNamespace

    from partialstyle.obs import source_info

    reloaded = []
    fake_lib = SimpleNamespace(obs_source_update_properties=reloaded.append)
    monkeypatch.setattr(properties, "lib", lambda: fake_lib)
    shown: dict[int, str] = {}
    camera = FakeInstance(11, properties.status_text("loading", None, (), 0.0, 0.0))
    screen = FakeInstance(22, properties.status_text("ready", None, (), 2.0, 0.3))
    runtime = SimpleNamespace(instances={1: camera, 2: screen})
    monkeypatch.setattr(source_info, "current", lambda: runtime)

    properties.refresh_open_dialogs(shown)
    assert reloaded == []  # first sight: what the dialog was built with
    screen.text = properties.status_text("ready", None, (), 6.5, 0.4)
    properties.refresh_open_dialogs(shown)
    assert reloaded == []  # only the measurement changed
    camera.text = properties.status_text("ready", "multistyle id 99 is out of range", (), 0, 0)
    properties.refresh_open_dialogs(shown)
    assert reloaded == [11]
    camera.text = properties.status_text("ready", None, (), 2.0, 0.3)  # fixed
    properties.refresh_open_dialogs(shown)
    assert reloaded == [11, 11]
    del runtime.instances[2]
    properties.refresh_open_dialogs(shown)
    assert set(shown) == {1}
