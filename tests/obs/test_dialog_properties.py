"""The dialog as libobs holds it (`properties.build` through the installed libobs, no OBS
window): one-line typed styles, a help text on every setting, YOLACT's settings greyed out
with the reason where it cannot run."""

from __future__ import annotations

import os
from ctypes import c_bool, c_char_p, c_int, c_size_t, c_void_p

import pytest

from partialstyle.config import SEGMENTERS
from partialstyle.obs import dialog_fields, libobs, properties, settings

_QUERIES = {
    "obs_property_text_type": (c_int, [c_void_p]),
    "obs_property_enabled": (c_bool, [c_void_p]),
    "obs_property_description": (c_char_p, [c_void_p]),
    "obs_property_long_description": (c_char_p, [c_void_p]),
    "obs_property_list_item_disabled": (c_bool, [c_void_p, c_size_t]),
    "obs_properties_destroy": (None, [c_void_p]),
}


@pytest.fixture
def obs():
    try:
        lib = properties.lib()
    except OSError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("libobs is missing; CI must install obs-studio")
        pytest.skip("OBS Studio (libobs) is not installed")
    for name, (restype, argtypes) in _QUERIES.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


@pytest.fixture
def dialog(obs, monkeypatch, tmp_path):
    """Build the dialog for a machine with `weights` (or none) and torch's `device`."""
    monkeypatch.setenv("PARTIALSTYLE_MODELS", str(tmp_path / "models"))
    built = []

    def build(device: str | None, weights: bool):
        if weights:
            (tmp_path / "models" / "yolact").mkdir(parents=True, exist_ok=True)
            (tmp_path / "models" / "yolact" / "yolact_resnet50_54_800000.pth").write_bytes(b"")
        monkeypatch.setattr(properties, "found_device", device)
        root = properties.build("Running.", dict(settings.DEFAULTS))
        built.append(root)
        return root

    yield build
    for root in built:
        obs.obs_properties_destroy(root)


def enabled(obs, root, key: str) -> bool:
    prop = obs.obs_properties_get(root, key.encode())
    assert prop, key
    return obs.obs_property_enabled(prop)


def test_typed_styles_are_one_line_and_every_setting_has_its_help(obs, dialog):
    root = dialog("cuda", weights=True)
    for region in settings.TYPED_REGIONS:
        typed = obs.obs_properties_get(root, f"{region}_style_text".encode())
        assert obs.obs_property_text_type(typed) == libobs.OBS_TEXT_DEFAULT
    for setting in settings.SETTINGS:
        prop = obs.obs_properties_get(root, setting.key.encode())
        assert prop, setting.key
        assert obs.obs_property_long_description(prop).decode() == setting.help, setting.key


def test_yolact_settings_are_greyed_out_with_the_reason_where_it_cannot_run(obs, dialog):
    yolact = SEGMENTERS.index("yolact")

    root = dialog("cuda", weights=False)  # choosing a weights file is the way out
    reason = obs.obs_properties_get(root, b"yolact_problem")
    assert reason and dialog_fields.YOLACT_FETCH in obs.obs_property_description(reason).decode()
    assert not any(
        enabled(obs, root, key) for key in dialog_fields.YOLACT_KEYS if key != "yolact_weights"
    )
    assert enabled(obs, root, "yolact_weights") and enabled(obs, root, "segmenter")
    segmenter = obs.obs_properties_get(root, b"segmenter")
    assert obs.obs_property_list_item_disabled(segmenter, yolact)

    root = dialog("cpu", weights=True)
    assert (
        "GPU"
        in obs.obs_property_description(obs.obs_properties_get(root, b"yolact_problem")).decode()
    )
    assert not any(enabled(obs, root, key) for key in dialog_fields.YOLACT_KEYS)

    for device in ("cuda", None):  # a GPU, or not known yet: nothing greyed out
        root = dialog(device, weights=True)
        assert not obs.obs_properties_get(root, b"yolact_problem")
        assert all(enabled(obs, root, key) for key in dialog_fields.YOLACT_KEYS)
        segmenter = obs.obs_properties_get(root, b"segmenter")
        assert not obs.obs_property_list_item_disabled(segmenter, yolact)
