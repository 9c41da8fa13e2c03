"""Per-person and per-class regions: instances, tracking, and the pipeline's region masks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from yolact_format import random_state_dict

from partialstyle.commands.cli import main
from partialstyle.config import PipelineConfig
from partialstyle.pipeline import Pipeline
from partialstyle.plan import RegionStyle, StylePlan, region_kind
from partialstyle.segment.instances import Instance, PeopleTracker
from partialstyle.segment.regions import RegionSegmenter
from partialstyle.style.spec import StyleSpec
from partialstyle.weights.model_cache import default_cache


@pytest.fixture(scope="module")
def two_people(astronaut) -> np.ndarray:
    """Two real people side by side, apart (a 608×256 frame)."""
    person = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    gap = np.full((256, 96, 3), 200, np.uint8)
    return np.ascontiguousarray(np.hstack([person, gap, person]))


def _style(spec: str) -> RegionStyle:
    return RegionStyle(StyleSpec.parse(spec))


def _difference(a, b):
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=-1)


@pytest.mark.usefixtures("default_models")
def test_each_person_in_their_own_style(two_people):
    plan = StylePlan.from_regions(
        {"person": _style("multistyle:19"), "person:2": _style("multistyle:20")}
    )
    out = Pipeline(plan=plan).process(two_people)
    first = Pipeline(plan=StylePlan.from_specs("multistyle:19", "multistyle:19")).process(
        two_people
    )
    second = Pipeline(plan=StylePlan.from_specs("multistyle:20", "multistyle:20")).process(
        two_people
    )
    mask = Pipeline(plan=plan).person_mask(two_people)
    left, right = mask.copy(), mask.copy()
    left[:, 304:], right[:, :304] = 0, 0
    for person, own, other in ((left, first, second), (right, second, first)):
        inside = person > 0.99
        assert inside.sum() > 5000
        # Closer to its own style than to the other (the network mixes near edges and each
        # person is normalised over their own region, so not equal to a full-frame run).
        assert _difference(out, own)[inside].mean() < 0.75 * _difference(out, other)[inside].mean()
    assert _difference(out, two_people)[mask == 0].max() == 0  # background style is none


def test_tracker_keeps_numbers_while_people_move():
    tracker = PeopleTracker()

    def people(*boxes):
        return [Instance("person", torch.zeros(1), box) for box in boxes]

    first = tracker.number(people((300, 0, 400, 200), (10, 0, 110, 200)))
    assert [p.number for p in first] == [2, 1]  # numbered from the left
    moved = tracker.number(people((30, 0, 130, 200), (280, 0, 380, 200)))
    assert [p.number for p in moved] == [1, 2]  # followed by overlap, not by position
    newcomer = tracker.number(people((0, 0, 60, 200), (290, 0, 390, 200)))
    assert [p.number for p in newcomer] == [1, 2] or newcomer[1].number == 2
    left_alone = tracker.number(people((290, 0, 390, 200)))
    assert left_alone[0].number == 2


def test_region_names_are_checked():
    assert region_kind("person:3") == ("person", 3)
    assert region_kind("class:cat") == ("class", 0)
    for bad, words in (
        ("person:0", "numbered 1"),
        ("class:unicorn", "not a COCO class"),
        ("class:person", "not class:person"),
        ("face", "unknown region"),
    ):
        with pytest.raises(ValueError, match=words):
            region_kind(bad)


@pytest.fixture(scope="module")
def yolact_weights(tmp_path_factory):
    """A YOLACT checkpoint in the official format whose (random) weights are biased to find
    people and cats, so the detection plumbing has something to work on. Real weights come
    from `partialstyle models fetch`, which cannot reach its host here."""
    state = random_state_dict("yolact_darknet53", seed=3)
    state["prediction_layers.0.conf_layer.weight"] *= 0.01
    state["prediction_layers.0.bbox_layer.weight"] *= 0.01  # boxes stay near their anchors
    state["prediction_layers.0.bbox_layer.bias"] *= 0.01
    state["prediction_layers.0.conf_layer.bias"][1::81] += 6.0  # person
    state["prediction_layers.0.conf_layer.bias"][16::81] += 5.0  # cat (COCO index 15)
    path = tmp_path_factory.mktemp("yolact") / "yolact_darknet53_54_800000.pth"
    torch.save(state, path)
    return path


@pytest.mark.slow
@pytest.mark.usefixtures("default_models")
def test_yolact_segment_command_writes_json_and_masks(yolact_weights, tmp_path, two_people):
    image, report, masks = tmp_path / "in.png", tmp_path / "out.json", tmp_path / "masks"
    cv2.imwrite(str(image), two_people[..., ::-1])
    arguments = ["segment", str(image), "--segmenter", "yolact", "--weights", str(yolact_weights)]
    assert main([*arguments, "--json", str(report), "--masks", str(masks), "--top-k", "5"]) == 0
    data = json.loads(report.read_text())
    assert data["segmenter"] == "yolact" and (data["width"], data["height"]) == (608, 256)
    assert 0 < len(data["detections"]) <= 5
    for detection in data["detections"]:
        assert detection["class"] in ("person", "cat") and detection["score"] >= 0.3
        x1, y1, x2, y2 = detection["box"]
        assert 0 <= x1 <= x2 <= 608 and 0 <= y1 <= y2 <= 256
        assert cv2.imread(detection["mask"], cv2.IMREAD_UNCHANGED).shape == (256, 608)


@pytest.mark.slow
@pytest.mark.usefixtures("default_models")
def test_pipeline_with_yolact_regions(yolact_weights, two_people):
    plan = StylePlan.from_regions(
        {
            "person": _style("multistyle:19"),
            "class:cat": _style("multistyle:3"),
            "background": _style("none"),
        }
    )
    config = PipelineConfig(segmenter="yolact", yolact_weights=str(yolact_weights))
    pipeline = Pipeline(config, plan)
    masks = pipeline.region_masks(two_people).regions
    total = sum(masks.values())
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5)  # a partition of the frame
    assert set(masks) <= {"person", "class:cat", "background"}
    out = pipeline.process(two_people)
    assert out.shape == two_people.shape


@pytest.mark.slow
def test_mask_and_segment_see_the_same_yolact_people(yolact_weights, two_people):
    """`mask` and `segment` go through the region segmenter: with YOLACT, the mask is the
    union of the people `segment` reports."""
    config = PipelineConfig(segmenter="yolact", yolact_weights=str(yolact_weights))
    segmenter = RegionSegmenter(default_cache)
    rgb = torch.from_numpy(two_people)
    with torch.inference_mode():
        name, probability = segmenter.person_probability(rgb, config)
        _, found = segmenter.detections(rgb, config, top_k=200)
    people = [detection.mask for detection in found if detection.class_index == 0]
    assert name == "yolact" and probability.shape == two_people.shape[:2]
    assert people and probability.max() > 0.5
    assert torch.allclose(probability, torch.stack(people).amax(0))
