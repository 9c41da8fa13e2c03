"""Style specs, plans and configs: parsing and validation at the edge."""

import pytest
from PIL import Image

from partialstyle.config import PipelineConfig
from partialstyle.plan import RegionStyle, StylePlan
from partialstyle.style.kinds import KINDS, spec_help
from partialstyle.style.names import MULTISTYLE_NAMES
from partialstyle.style.spec import StyleSpec


def test_single_style_by_id_and_name_agree():
    assert StyleSpec.parse("multistyle:19") == StyleSpec.parse("multistyle:starry-swirls")
    assert StyleSpec.parse("multistyle:19").weights == ((19, 1.0),)


def test_blend_is_normalised_and_round_trips():
    spec = StyleSpec.parse("multistyle:3=1,12=3")
    assert spec.weights == ((3, 0.25), (12, 0.75))
    vector = spec.weight_vector()
    assert len(vector) == 26 and sum(vector) == pytest.approx(1.0)
    assert StyleSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["", "none", "  none "])
def test_none(text):
    assert StyleSpec.parse(text).is_none


@pytest.mark.parametrize(
    "text, words",
    [
        ("multistyle:26", "out of range"),
        ("multistyle:nope", "unknown multistyle name"),
        ("picasso", "missing its kind"),
        ("foo:1", "unknown style kind"),
        ("multistyle:3=x", "bad weight"),
        ("multistyle:3=0", "add up to 0"),
        ("multistyle:3=-1", "negative"),
        ("multistyle:", "empty style"),
    ],
)
def test_bad_specs_say_what_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        StyleSpec.parse(text)


def test_names_are_unique_and_spec_safe():
    assert len(set(MULTISTYLE_NAMES)) == 26
    assert all(name.replace("-", "").isalpha() and name.islower() for name in MULTISTYLE_NAMES)


def test_plan_and_config_validate():
    with pytest.raises(ValueError, match="strength"):
        RegionStyle(StyleSpec.parse("multistyle:1"), strength=1.5)
    with pytest.raises(ValueError, match="segmenter"):
        PipelineConfig(segmenter="yolo")
    with pytest.raises(ValueError, match="process height"):
        PipelineConfig(process_height=8)
    assert not StylePlan.from_specs("multistyle:2", "multistyle:2").needs_mask
    assert StylePlan.from_specs("multistyle:2", "none").needs_mask


def test_every_kind_parses_what_it_offers_and_writes_it_back(tmp_path):
    picture = tmp_path / "style.png"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(picture)  # a real picture: its header is read
    for kind in KINDS:
        offered = [*kind.installed()]
        if kind.picture_spec(str(picture)) is not None:
            offered.append(kind.picture_spec(str(picture)))
        for text in offered:
            spec = StyleSpec.parse(text)
            assert spec.style_kind is kind and str(spec) == text
            assert StyleSpec.parse(str(spec)) == spec
            assert kind.problem(spec) is None  # offered styles work now
        assert kind.syntax in spec_help()
    assert [kind.name for kind in KINDS].count("none") == 1
    missing = StyleSpec.parse("arbitrary:/no/such/picture.png")
    assert (
        missing.style_kind.problem(missing) == "style picture /no/such/picture.png does not exist"
    )
