"""The filter's settings ⇄ the core's PipelineConfig and StylePlan (no OBS needed)."""

from __future__ import annotations

import pytest

from partialstyle.config import SEGMENTERS, PipelineConfig
from partialstyle.device import DEVICE_CHOICES
from partialstyle.obs import settings
from partialstyle.style.spec import StyleSpec


def test_defaults_make_a_valid_live_pipeline():
    config, plan = settings.to_pipeline({})
    assert config.process_height == 360 and config.threads == 1
    assert config.temporal_smoothing > 0
    assert plan.person.style.is_none and not plan.background.style.is_none
    assert plan.needs_mask


def test_choices_match_the_core():
    assert settings.SEGMENTERS == SEGMENTERS
    assert settings.DEVICES == DEVICE_CHOICES


def test_every_key_reaches_config_or_plan():
    values = {
        "segmenter": "selfie",
        "person_style": "multistyle:3 (ribbon-abstract)",
        "background_style": "multistyle:3=0.5,12=0.5",
        "person_strength": 0.25,
        "background_strength": 0.75,
        "person_preserve_colors": True,
        "background_preserve_colors": False,
        "mask_threshold": 0.3,
        "mask_feather": 4.0,
        "edge_refine": False,
        "temporal_smoothing": 0.0,
        "process_height": 0,
        "device": "cpu",
        "threads": 2,
        "show_mask": True,
    }
    assert set(values) | set(settings.FILTER_ONLY) == set(settings.DEFAULTS)
    config, plan = settings.to_pipeline(values)
    assert config == PipelineConfig(
        segmenter="selfie",
        process_height=None,
        mask_threshold=0.3,
        mask_feather=4.0,
        edge_refine=False,
        temporal_smoothing=0.0,
        device="cpu",
        threads=2,
        show_mask=True,
    )
    assert plan.person.style == StyleSpec.parse("multistyle:3")
    assert plan.background.style == StyleSpec.parse("multistyle:12=1,3=1")
    assert (plan.person.strength, plan.background.strength) == (0.25, 0.75)
    assert plan.person.preserve_colors and not plan.background.preserve_colors


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("person_style", "multistyle:99", "person style"),
        ("background_style", "vangogh", "background style"),
        ("mask_threshold", 1.5, "mask threshold"),
        ("segmenter", "yolo", "segmenter"),
    ],
)
def test_bad_values_name_the_setting(key, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        settings.to_pipeline({key: value})


def test_style_list_labels_parse_back_to_their_spec():
    for spec in settings.STYLE_CHOICES:
        assert str(settings.parse_style(settings.style_label(spec))) == spec
    assert settings.style_label("multistyle:19") == "multistyle:19 (starry-swirls)"


def test_cycling_styles_wraps_and_starts_blends_at_the_ends():
    last = settings.STYLE_CHOICES[-1]
    assert settings.cycle_style("none", 1) == "multistyle:0"
    assert settings.cycle_style("none", -1) == last
    assert settings.cycle_style(last, 1) == "none"
    assert settings.cycle_style("multistyle:starry-swirls (x)", 1) == "multistyle:20"
    assert settings.cycle_style("multistyle:1=1,2=1", 1) == "none"
    assert settings.cycle_style("garbage", -1) == last
