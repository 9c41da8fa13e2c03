"""Region plans as the CLI and the OBS filter build them (`plan_from_requests`)."""

from __future__ import annotations

import pytest

from partialstyle.plan import RegionRequest, RegionStyle, StylePlan, plan_from_requests
from partialstyle.style.spec import StyleSpec


def test_requests_become_the_plan_with_their_strengths_and_colors():
    plan = plan_from_requests(
        [
            RegionRequest("person", "multistyle:3", 0.5, True),
            RegionRequest("background", "multistyle:12=1,3=1", 0.75),
            RegionRequest("person:2", "multistyle:7", 0.5, True),
            RegionRequest("class:cat", "none"),
        ]
    )
    assert plan == StylePlan(
        person=RegionStyle(StyleSpec.parse("multistyle:3"), 0.5, True),
        background=RegionStyle(StyleSpec.parse("multistyle:12=1,3=1"), 0.75),
        people=((2, RegionStyle(StyleSpec.parse("multistyle:7"), 0.5, True)),),
        classes=(("cat", RegionStyle()),),
    )


def test_a_later_request_for_the_same_region_wins():
    plan = plan_from_requests(
        [RegionRequest("person", "multistyle:3"), RegionRequest("person", "multistyle:4")]
    )
    assert plan.person.style == StyleSpec.parse("multistyle:4")


def test_a_bad_style_is_named_by_where_the_user_wrote_it():
    request = RegionRequest("person:2", "multistyle:99", source="person 2 style")
    with pytest.raises(ValueError, match=r"^person 2 style: .*99") as named:
        plan_from_requests([request])
    with pytest.raises(ValueError) as unnamed:
        plan_from_requests([RegionRequest("person:2", "multistyle:99")])
    assert str(named.value) == f"person 2 style: {unnamed.value}"


def test_a_bad_region_fails_whatever_its_style():
    with pytest.raises(ValueError, match="not a COCO class"):
        plan_from_requests([RegionRequest("class:unicorn", "multistyle:1")])
