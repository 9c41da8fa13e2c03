"""The filter's settings ⇄ the core's PipelineConfig and StylePlan (no OBS needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from partialstyle.config import SEGMENTERS, PipelineConfig
from partialstyle.obs import settings
from partialstyle.plan import RegionStyle, StylePlan
from partialstyle.segment.classes import COCO_CLASSES
from partialstyle.style.spec import StyleSpec
from partialstyle.weights.files import johnson_names, models_dir


def test_defaults_make_a_valid_live_pipeline():
    config, plan = settings.to_pipeline({})
    assert config.process_height == 360 and config.threads == 1
    assert config.temporal_smoothing > 0
    assert plan.person.style.is_none and not plan.background.style.is_none
    assert plan.needs_mask


def test_settings_code_loads_without_torch():
    """OBS's UI thread builds the dialog from this module: importing torch there would
    freeze OBS for seconds."""
    code = (
        "import sys; from partialstyle.obs import dialog_fields, properties, settings, status; "
        "from partialstyle.style import kernel_dir; "
        "settings.to_pipeline({}); dialog_fields.style_items('person', {}); "
        "properties.yolact_weights_found({}); kernel_dir.build_running(); "
        "print('torch' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.stdout.strip() == "False", output.stderr


def test_every_key_reaches_config_or_plan():
    values = {
        "segmenter": "yolact",
        "person_style": "multistyle:3 (ribbon-abstract)",
        "background_style": "multistyle:3=0.5,12=0.5",
        "person_strength": 0.25,
        "background_strength": 0.75,
        "person_preserve_colors": True,
        "background_preserve_colors": False,
        "person1_style": "",
        "person2_style": "multistyle:7",
        "person3_style": settings.SAME_AS_PEOPLE,
        "person4_style": "johnson:candy",
        "class_region": "cat",
        "class_style": "arbitrary:/pictures/wave.jpg",
        "class_strength": 0.5,
        "yolact_weights": "/models/yolact_resnet50_54_800000.pth",
        "instance_every": 3,
        "mask_threshold": 0.3,
        "mask_feather": 4.0,
        "edge_refine": False,
        "temporal_smoothing": 0.0,
        "show_mask": True,
        "morph_seconds": 1.5,
        "stabilize": 0.8,
        "process_height": 0,
        "upsample": "guided",
        "device": "cpu",
        "threads": 2,
    }
    assert set(values) | set(settings.FILTER_ONLY) | set(settings.DIALOG_ONLY) == set(
        settings.DEFAULTS
    )
    config, plan = settings.to_pipeline(values)
    assert config == PipelineConfig(
        segmenter="yolact",
        process_height=None,
        mask_threshold=0.3,
        mask_feather=4.0,
        edge_refine=False,
        temporal_smoothing=0.0,
        stabilize=0.8,
        morph_seconds=1.5,
        upsample="guided",
        yolact_weights="/models/yolact_resnet50_54_800000.pth",
        instance_every=3,
        device="cpu",
        threads=2,
        show_mask=True,
    )
    person = RegionStyle(StyleSpec.parse("multistyle:3"), 0.25, True)
    assert plan == StylePlan.from_regions(
        {
            "person": person,
            "background": RegionStyle(StyleSpec.parse("multistyle:12=1,3=1"), 0.75, False),
            "person:2": RegionStyle(StyleSpec.parse("multistyle:7"), 0.25, True),
            "person:4": RegionStyle(StyleSpec.parse("johnson:candy"), 0.25, True),
            "class:cat": RegionStyle(StyleSpec.parse("arbitrary:/pictures/wave.jpg"), 0.5),
        }
    )
    assert plan.style_of_person(1) == plan.style_of_person(3) == person
    assert plan.needs_instances


def test_without_people_or_class_rows_the_plan_has_two_regions():
    _, plan = settings.to_pipeline({"class_style": "multistyle:4"})  # no class chosen
    assert set(plan.regions()) == {"person", "background"}
    assert not plan.needs_instances


def test_lists_offer_every_choice_of_the_core():
    assert SEGMENTERS == ("auto", "selfie", "selfie-landscape", "yolact")
    assert set(settings.CLASS_CHOICES) == set(COCO_CLASSES) - {"person"}
    choices = settings.style_choices()
    assert choices[:27] == ("none", *(f"multistyle:{i}" for i in range(26)))
    assert choices[27:] == tuple(f"johnson:{name}" for name in johnson_names())


def test_johnson_networks_in_the_model_folder_are_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTIALSTYLE_MODELS", str(tmp_path))
    assert models_dir() == tmp_path
    (tmp_path / "johnson").mkdir()
    for name in ("udnie", "candy"):
        (tmp_path / "johnson" / f"{name}.pth").write_bytes(b"")
    assert settings.style_choices()[-2:] == ("johnson:candy", "johnson:udnie")
    assert settings.cycle_style("multistyle:25", 1) == "johnson:candy"
    assert settings.cycle_style("johnson:udnie", 1) == "none"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("person_style", "multistyle:99", "person style"),
        ("background_style", "vangogh", "background style"),
        ("mask_threshold", 1.5, "mask threshold"),
        ("segmenter", "yolo", "segmenter"),
        ("person2_style", "multistyle:40", "person 2 style"),
        ("class_region", "person", "object class"),
        ("class_region", "unicorn", "object class"),
        ("class_style", "vangogh", "object style"),
        ("upsample", "cubic", "upsampling"),
        ("stabilize", 1.0, "stabilize"),
        ("instance_every", 0, "instance_every"),
    ],
)
def test_bad_values_name_the_setting(key, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        settings.to_pipeline(
            {"class_region": "cat", key: value} if key == "class_style" else {key: value}
        )


def test_style_lists_name_every_style_and_old_saved_labels_still_parse():
    assert settings.style_label("multistyle:19") == "starry-swirls (multistyle:19)"
    assert (
        settings.style_label("multistyle:3=1,12=3") == "Blend: ribbon-abstract 25%, lilac-haze 75%"
    )
    assert settings.style_label("arbitrary:/pictures/wave.jpg") == "Picture: wave.jpg"
    assert settings.style_label("johnson:candy") == "candy (Johnson network)"
    assert settings.style_label("vangogh").startswith("Not valid")
    # The old dialog saved its labels as values: they still mean the same style.
    assert str(settings.parse_style("multistyle:19 (starry-swirls)")) == "multistyle:19"


def test_cycling_styles_wraps_and_starts_blends_at_the_ends():
    last = settings.style_choices()[-1]
    assert settings.cycle_style("none", 1) == "multistyle:0"
    assert settings.cycle_style("none", -1) == last
    assert settings.cycle_style(last, 1) == "none"
    assert settings.cycle_style("multistyle:starry-swirls (x)", 1) == "multistyle:20"
    assert settings.cycle_style("multistyle:1=1,2=1", 1) == "none"
    assert settings.cycle_style("garbage", -1) == last
