"""The properties dialog's logic without OBS: style lists, pictures, typed styles, status,
help texts, what is shown where YOLACT cannot run.

The ctypes side: partialstyle.obs.properties.build through the installed libobs in
test_dialog_properties.py, the open dialog in the real OBS in test_obs_dialog.py.
"""

from __future__ import annotations

import pytest
import skimage.data
import skimage.io

from partialstyle.obs import dialog_fields, libobs, properties, scriptlog, settings, status, ui_idle


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


def test_a_typed_style_applies_as_soon_as_it_is_valid():
    current = values(background_style="multistyle:19", background_style_text="multistyle:19")
    for typed in ("s", "st", "multistyle:"):
        current["background_style_text"] = typed
        assert dialog_fields.dialog_changes("text", "background", current) == {}
        assert dialog_fields.typed_hint("background", current).startswith("Not applied: ")
    current["background_style_text"] = "multistyle:12=1,3=1"
    changes = dialog_fields.dialog_changes("text", "background", current)
    assert changes == {"background_style": "multistyle:12=1,3=1"}
    current.update(changes)
    assert dialog_fields.typed_hint("background", current) is None
    current["background_style_text"] = "multistyle:starry-swirls"  # same style as 19: no hint
    current["background_style"] = "multistyle:19"
    assert dialog_fields.dialog_changes("text", "background", current) == {}
    assert dialog_fields.typed_hint("background", current) is None
    # A pasted line break is one line.
    current["background_style_text"] = "multistyle:4\n"
    assert dialog_fields.dialog_changes("text", "background", current) == {
        "background_style_text": "multistyle:4",
        "background_style": "multistyle:4",
    }


def test_typed_problems_speak_the_dialogs_language(johnson_folder):
    current = values(person_style_text="johnson:can", class_style_text="multistyle:99")
    hint = dialog_fields.typed_hint("person", current)
    assert hint.startswith("Not applied: no Johnson network 'can'") and "`" not in hint
    assert dialog_fields.typed_problems(current) == (
        f"Person style, typed: {hint.removeprefix('Not applied: ')}",
        "Object style, typed: multistyle id 99 is out of range; ids are 0 to 25.",
    )


def test_choosing_a_picture_makes_it_the_style(picture):
    current = values(person_picture=str(picture))
    changes = dialog_fields.dialog_changes("picture", "person", current)
    assert changes == {
        "person_style": f"arbitrary:{picture}",
        "person_style_text": f"arbitrary:{picture}",
    }
    per_person = values(person2_picture=str(picture))
    assert dialog_fields.dialog_changes("picture", "person2", per_person) == {
        "person2_style": f"arbitrary:{picture}"
    }
    assert (
        dialog_fields.dialog_changes("picture", "person", values(person_picture="/gone.jpg")) == {}
    )


def test_picking_from_the_list_puts_the_style_in_the_typed_field():
    current = values(class_style="multistyle:4")
    assert dialog_fields.dialog_changes("list", "class", current) == {
        "class_style_text": "multistyle:4"
    }
    assert (
        dialog_fields.dialog_changes("list", "person3", values(person3_style="multistyle:4")) == {}
    )


def test_picking_a_built_in_style_empties_the_picture_field(picture):
    chosen = values(person_picture=str(picture), person_style=f"arbitrary:{picture}")
    assert "person_picture" not in dialog_fields.dialog_changes("list", "person", chosen)
    chosen["person_style"] = "multistyle:4"
    changes = dialog_fields.dialog_changes("list", "person", chosen)
    assert changes == {"person_style_text": "multistyle:4", "person_picture": ""}
    per_person = values(person2_picture=str(picture), person2_style="multistyle:4")
    assert dialog_fields.dialog_changes("list", "person2", per_person) == {"person2_picture": ""}


def test_style_lists_offer_everything_and_show_the_current_value_by_name(johnson_folder, picture):
    items = dialog_fields.style_items("background", values(background_picture=str(picture)))
    names = [name for name, _ in items]
    assert len(items) == 1 + 26 + 1 + 1  # none, multistyle, candy, the chosen picture
    assert "candy (Johnson network)" in names and "Picture: astronaut.png" in names
    assert selected(items, "multistyle:19") == "starry-swirls (multistyle:19)"

    # Set by obs-websocket or saved by the old dialog: the same entry, with the exact text.
    for current in ("multistyle:starry-swirls", "multistyle:19 (starry-swirls)"):
        items = dialog_fields.style_items("background", values(background_style=current))
        assert selected(items, current) == "starry-swirls (multistyle:19)"
        assert len(items) == 1 + 26 + 1

    # Not among the entries: added first, by name.
    blend = "multistyle:3=0.5,12=0.5"
    items = dialog_fields.style_items("person", values(person_style=blend))
    assert items[0] == ("Blend: ribbon-abstract 50%, lilac-haze 50%", blend)

    # Per-person rows start with "same as Person style", whichever way it is stored.
    for empty in ("", settings.SAME_AS_PEOPLE):
        items = dialog_fields.style_items("person2", values(person2_style=empty))
        assert selected(items, empty) == settings.SAME_AS_PEOPLE


def figures(fps: float = 2.0, **changes) -> status.Figures:
    fields = dict(
        styled_fps=fps,
        refreshes_per_second=0.8,
        keyframe_age=3.0,
        render_ms=0.31,
        holding_back=None,
    )
    return status.Figures(**{**fields, **changes})


def test_status_has_state_first_and_measurements_apart():
    running = status.status_text("ready", None, (), figures(2.04), clock=lambda: "06:00:01")
    later = status.status_text("ready", None, (), figures(6.5), clock=lambda: "06:00:03")
    assert running.splitlines() == [
        "Running.",
        "Measured at 06:00:01: 2.0 styled frames/s, style refreshed 0.8 times/s, newest style "
        "3 frames old, 0.31 ms per frame on OBS's render thread. Not holding back.",
    ]
    assert status.status_state(running) == status.status_state(later) == "Running."
    assert status.status_info_type(running) == status.OBS_TEXT_INFO_NORMAL
    held = figures(holding_back="OBS missed frames, so style runs at least 0.4 s apart")
    held_text = status.status_text("ready", None, (), held)
    assert "Holding back to keep OBS on time: OBS missed frames" in held_text
    assert status.status_state(held_text) == "Running."
    no_result_yet = status.status_text("ready", None, (), figures(keyframe_age=None))
    assert "frames old" not in no_result_yet

    failed = status.status_text("ready", "multistyle id 99 is out of range", (), figures())
    assert failed.startswith("Error: multistyle id 99") and status.MEASURED not in failed
    assert status.status_info_type(failed) == status.OBS_TEXT_INFO_ERROR
    assert status.status_state(failed) != status.status_state(running)

    problem = "Person style: multistyle id 99 is out of range. Still showing none (unstyled)."
    warned = status.status_text("ready", None, (problem,), figures())
    assert status.status_state(warned) == (
        f"Running, but not applied: Person style (see below).\n{problem}"
    )
    assert status.status_info_type(warned) == status.OBS_TEXT_INFO_WARNING


def test_preparing_and_loading_say_what_and_how_long():
    preparing = status.status_text("ready", None, (), figures(), preparing=75.0)
    assert preparing.startswith("Preparing: building the style kernel")
    assert "1-3 minutes" in preparing and "unstyled" in preparing
    assert "building for 1 min 15 s so far" in preparing and "styled frames/s" not in preparing
    loading = status.status_text("loading", None, (), None, loading_for=12.0)
    assert loading.startswith("Loading torch and the models (usually 5-30 s)")
    assert "loading for 12 s" in loading
    # The seconds are a measurement: counting them is no change of state.
    later = status.status_text("loading", None, (), None, loading_for=13.0)
    assert status.status_state(loading) == status.status_state(later)


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


def test_open_dialogs_show_new_states_at_once_and_new_figures_every_few_seconds(monkeypatch):
    from types import SimpleNamespace

    from partialstyle.obs import source_info

    reloaded = []
    fake_lib = SimpleNamespace(
        obs_source_update_properties=reloaded.append,
        obs_source_get_ref=lambda source: source,  # a live source: itself, referenced
        obs_source_release=lambda source: None,
    )
    monkeypatch.setattr(properties, "lib", lambda: fake_lib)
    shown: dict = {}
    idle = [True]
    camera = FakeInstance(11, status.status_text("loading", None, (), None))
    screen = FakeInstance(22, status.status_text("ready", None, (), figures(2.0)))
    runtime = SimpleNamespace(instances={1: camera, 2: screen})
    monkeypatch.setattr(source_info, "current", lambda: runtime)

    def refresh(now: float) -> list[int]:
        return status.refresh_open_dialogs(shown, lambda: idle[0], now)

    assert refresh(100.0) == []  # first sight: what the dialog was built with
    screen.text = status.status_text("ready", None, (), figures(6.5))
    assert refresh(100.5) == []  # new figures, but shown only just now
    assert refresh(100.0 + status.MEASURE_REFRESH_SECONDS) == [22]
    screen.text = status.status_text("ready", None, (), figures(7.5))
    idle[0] = False  # a list is open, a slider dragged, a field being typed in
    assert refresh(110.0) == []
    camera.text = status.status_text("ready", "multistyle id 99 is out of range", (), None)
    assert refresh(110.5) == []  # even a new state waits until the user is done
    idle[0] = True
    assert refresh(111.0) == [11, 22]
    camera.text = status.status_text("ready", None, (), figures())  # fixed: at once
    assert refresh(111.5) == [11]
    del runtime.instances[2]
    refresh(112.0)
    assert set(shown) == {1}


def test_idle_needs_a_quiet_while_after_the_last_edit(monkeypatch):
    monkeypatch.setattr(ui_idle, "_ui_busy", None)
    ui_idle.edited()
    now = __import__("time").monotonic()
    assert not ui_idle.idle(now)
    assert ui_idle.idle(now + ui_idle.EDIT_QUIET_SECONDS)
    monkeypatch.setattr(ui_idle, "_ui_busy", "a list is open")
    assert not ui_idle.idle(now + 100.0)


def test_every_setting_has_a_one_line_help_text():
    for setting in settings.SETTINGS:
        assert setting.help.strip(), setting.key
        assert "\n" not in setting.help and len(setting.help) <= 120, setting.key
    assert "0 = auto" in settings.SETTINGS_BY_KEY["max_fps"].label


def test_yolact_settings_are_disabled_with_the_fix_where_yolact_cannot_run():
    missing = dialog_fields.yolact_unavailable(weights_found=False, device="cuda")
    assert dialog_fields.YOLACT_FETCH in missing
    assert "GPU" in dialog_fields.yolact_unavailable(weights_found=True, device="cpu")
    assert dialog_fields.yolact_unavailable(weights_found=True, device="cuda") is None
    assert dialog_fields.yolact_unavailable(weights_found=True, device=None) is None  # unknown
    assert set(dialog_fields.YOLACT_KEYS) <= set(settings.DEFAULTS)


def test_preparation_says_what_the_filter_waits_for_once_and_how_long(tmp_path):
    from partialstyle.obs.preparation import STALE_STYLE_SECONDS, Preparation

    said: list[str] = []
    waiting = Preparation(None, said.append, created=0.0)
    waiting.follow(4.0, "loading", None, 1 / 30, building=None)
    assert not waiting.waiting and said == []
    waiting.follow(9.0, "ready", None, 1 / 30, building=None)
    assert said == ["torch and the models loaded in 9 s"]
    waiting.follow(10.0, "ready", None, 1 / 30, building=3.0)
    waiting.follow(11.0, "ready", None, 1 / 30, building=4.0)
    assert waiting.waiting and waiting.building == 4.0
    assert said[-1].startswith("preparing the style kernel") and len(said) == 2
    waiting.follow(90.0, "ready", None, 1 / 30, building=None)
    assert not waiting.waiting and said[-1] == "style kernel ready after 83 s; styling again"

    frames = 30 * (STALE_STYLE_SECONDS + 2)  # at 30 fps: 12 s since the networks ran
    waiting.follow(100.0, "ready", frames, 1 / 30, building=None)
    assert waiting.stale_style == pytest.approx(STALE_STYLE_SECONDS + 2)
    assert "have not run for 12 s" in said[-1]
    waiting.follow(101.0, "ready", 2.0, 1 / 30, building=None)
    assert waiting.stale_style is None and said[-1].endswith("caught up; styling again")
    assert len(said) == 5
    stale = status.status_text("ready", None, (), figures(), stale_style=12.0)
    assert stale.startswith("Waiting for the style networks") and "12 s old" in stale


def test_opening_or_rebuilding_the_dialog_keeps_what_the_user_typed(picture):
    typed = values(person_style="multistyle:8", person_style_text="johnson:can")
    assert dialog_fields.dialog_changes("list", "person", typed, opening=True) == {}
    empty = values(person_style="multistyle:8", person_style_text="")
    assert dialog_fields.dialog_changes("list", "person", empty, opening=True) == {
        "person_style_text": "multistyle:8"
    }
    chosen = values(person_picture=str(picture), person_style="multistyle:8")
    assert dialog_fields.dialog_changes("picture", "person", chosen, opening=True) == {}
    assert dialog_fields.dialog_changes("list", "person2", chosen, opening=True) == {}
