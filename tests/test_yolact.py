"""YOLACT / YOLACT++: official checkpoint format, numerics of the eval path, end-to-end detect().

The official weights cannot be downloaded in the test environment, so checkpoints are random
weights written in the official format (see yolact_format.py). These tests check structure,
loading rules and the documented eval semantics; they cannot check agreement with the official
implementation's numbers.
"""

from __future__ import annotations

import collections
import math

import pytest
import torch
import torch.nn.functional as F
from yolact_format import V1_CONFIGS, file_keys, official_keys, official_spec, random_state_dict
from yolact_format import write_official_checkpoint as write_checkpoint

from partialstyle.errors import ModelMissingError, PartialStyleError
from partialstyle.segment.yolact import (
    COCO_CLASSES,
    CONFIGS,
    Detections,
    Yolact,
    YolactSegmenter,
    identify_config,
)
from partialstyle.segment.yolact.backbone import ModulatedDeformConv3x3
from partialstyle.segment.yolact.checkpoint import (
    apply_official_key_rules,
    config_from_file_name,
    expected_shapes,
)
from partialstyle.segment.yolact.config import ASPECT_RATIOS, RGB_MEAN, RGB_STD
from partialstyle.segment.yolact.detect import (
    box_iou,
    crop_masks,
    decode_boxes,
    fast_nms,
    postprocess,
)
from partialstyle.segment.yolact.priors import make_priors
from partialstyle.weights.load import load_weights, read_state_dict
from partialstyle.weights.registry import WEIGHTS

ALL_CONFIGS = list(CONFIGS)
YOLACT = WEIGHTS["yolact"]
RESNET101_CONFIGS = ("yolact_base", "yolact_im700", "yolact_plus_base")
PERSON_LOGIT_BIAS = 6.0


def yolact_segmenter(path) -> YolactSegmenter:
    """A segmenter on the CPU for the checkpoint at `path`, loaded by the weights registry."""
    return YolactSegmenter(load_weights("yolact", path), torch.device("cpu"))


def _slow_if_resnet101(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in RESNET101_CONFIGS else n for n in names]


@pytest.fixture(scope="session")
def official_file(tmp_path_factory):
    """config name -> path of a random-weight file in the official format, written once."""
    directory = tmp_path_factory.mktemp("yolact_weights")
    written: dict[str, object] = {}

    def make(config_name: str):
        if config_name not in written:
            written[config_name] = write_checkpoint(
                config_name, directory, person_logit_bias=PERSON_LOGIT_BIAS
            )
        return written[config_name]

    return make


def _shape_only_state_dict(keys):
    # torch.empty does not touch the memory, so even ResNet-101 shapes cost nothing.
    return {key: torch.empty(shape) for key, shape in keys}


# --- checkpoint format and loading -------------------------------------------------------


@pytest.mark.parametrize("config_name", ALL_CONFIGS)
def test_model_has_exactly_the_official_keys_shapes_and_order(config_name):
    with torch.device("meta"):
        model = Yolact(CONFIGS[config_name])
    assert list(expected_shapes(config_name).items()) == official_keys(config_name)
    assert sum(p.numel() for p in model.parameters()) == official_spec()[config_name]["num_params"]


@pytest.mark.parametrize("config_name", _slow_if_resnet101(ALL_CONFIGS))
def test_official_file_loads_strictly_with_every_tensor(config_name, official_file):
    path = official_file(config_name)
    model = load_weights("yolact", path)
    assert model.config.name == config_name
    saved = torch.load(path, map_location="cpu", weights_only=True)
    loaded = model.state_dict()
    dropped = set(saved) - set(loaded)
    expected_dropped = (
        {"fpn.downsample_layers.2.weight", "fpn.downsample_layers.2.bias"}
        if config_name in V1_CONFIGS
        else set()
    )
    assert dropped == expected_dropped
    assert set(loaded) <= set(saved)
    for key, tensor in loaded.items():
        assert torch.equal(tensor, saved[key]), key
    assert not any(t.is_meta for t in loaded.values())


def test_legacy_torch_save_format_loads(tmp_path):
    # The 2019 official files predate torch 1.6's zip format.
    path = write_checkpoint("yolact_darknet53", tmp_path, legacy_format=True)
    with open(path, "rb") as f:
        assert not f.read(4).startswith(b"PK")
    assert load_weights("yolact", path).config.name == "yolact_darknet53"


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("yolact_base_54_800000.pth", "yolact_base"),
        ("yolact_im700_54_800000.pth", "yolact_im700"),
        ("yolact_plus_base_54_800000.pth", "yolact_plus_base"),
        ("yolact_plus_resnet50_54_800000.pth", "yolact_plus_resnet50"),
        ("yolact_darknet53.pth", "yolact_darknet53"),
        ("yolact_resnet50_config.pth", "yolact_resnet50"),
        ("yolact_base_1_2000.pth", "yolact_base"),
        ("weights.pth", None),
        ("yolact_tiny_54_800000.pth", None),
    ],
)
def test_config_from_file_name(file_name, expected, tmp_path):
    config = config_from_file_name(tmp_path / file_name)
    assert (config.name if config else None) == expected


@pytest.mark.parametrize(
    ("config_name", "recognised_as"),
    [
        ("yolact_resnet50", "yolact_resnet50"),
        ("yolact_darknet53", "yolact_darknet53"),
        ("yolact_plus_resnet50", "yolact_plus_resnet50"),
        ("yolact_plus_base", "yolact_plus_base"),
        ("yolact_base", "yolact_base"),
        # Same tensors as yolact_base: only the file name can tell im700 apart.
        ("yolact_im700", "yolact_base"),
    ],
)
def test_config_from_shapes_when_the_name_says_nothing(config_name, recognised_as, tmp_path):
    state_dict = apply_official_key_rules(_shape_only_state_dict(file_keys(config_name)))
    assert identify_config(tmp_path / "renamed.pth", state_dict).name == recognised_as


def test_explicit_config_name_overrides_the_file_name(tmp_path):
    state_dict = _shape_only_state_dict(official_keys("yolact_base"))
    assert identify_config(tmp_path / "x.pth", state_dict, "yolact_im700").name == "yolact_im700"
    with pytest.raises(PartialStyleError, match="unknown YOLACT config 'yolact_huge'"):
        identify_config(tmp_path / "x.pth", state_dict, "yolact_huge")


def test_name_and_tensors_disagree_is_a_clear_error(tmp_path):
    state_dict = _shape_only_state_dict(official_keys("yolact_resnet50"))
    with pytest.raises(PartialStyleError) as error:
        identify_config(tmp_path / "yolact_base_54_800000.pth", state_dict)
    message = str(error.value)
    assert "should hold yolact_base weights" in message
    assert "its tensors match yolact_resnet50" in message
    assert "\n" not in message


def test_file_matching_no_config_says_what_was_found_and_expected(tmp_path):
    path = tmp_path / "segmenter.pth"
    torch.save({"encoder.conv.weight": torch.zeros(8, 3, 3, 3)}, path)
    with pytest.raises(PartialStyleError) as error:
        yolact_segmenter(path)
    message = str(error.value)
    assert "matches no YOLACT config" in message
    assert "1 tensors, e.g. encoder.conv.weight" in message
    assert "expected one of yolact_base" in message
    assert "\n" not in message


def test_one_missing_or_reshaped_tensor_is_refused(tmp_path):
    state_dict = random_state_dict("yolact_resnet50")
    del state_dict["prediction_layers.0.mask_layer.bias"]
    torch.save(state_dict, tmp_path / "yolact_resnet50_54_800000.pth")
    with pytest.raises(PartialStyleError, match=r"1 missing keys \(e\.g\. prediction_layers"):
        load_weights("yolact", tmp_path / "yolact_resnet50_54_800000.pth")

    state_dict = random_state_dict("yolact_resnet50")
    state_dict["semantic_seg_conv.bias"] = torch.zeros(81)
    torch.save(state_dict, tmp_path / "yolact_resnet50_1_1.pth")
    with pytest.raises(
        PartialStyleError, match=r"semantic_seg_conv.bias is \[81\], expected \[80\]"
    ):
        load_weights("yolact", tmp_path / "yolact_resnet50_1_1.pth")


def test_extra_unknown_key_is_refused_but_official_leftovers_are_dropped(tmp_path):
    state_dict = random_state_dict("yolact_resnet50")
    # Duplicate pre-2018 names and a surplus FPN level: dropped by the official rules.
    state_dict["backbone.layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    state_dict["fpn.downsample_layers.3.bias"] = torch.zeros(256)
    torch.save(state_dict, tmp_path / "yolact_resnet50_54_800000.pth")
    assert (
        load_weights("yolact", tmp_path / "yolact_resnet50_54_800000.pth").config.name
        == "yolact_resnet50"
    )

    state_dict["prediction_layers.1.conf_layer.bias"] = torch.zeros(243)
    torch.save(state_dict, tmp_path / "yolact_resnet50_2_2.pth")
    with pytest.raises(PartialStyleError, match="1 unexpected keys"):
        load_weights("yolact", tmp_path / "yolact_resnet50_2_2.pth")


def test_files_without_batchnorm_counters_load_only_where_pytorch_allows(tmp_path):
    # A file without the third FPN downsample layer and without num_batches_tracked, as a
    # plain dict (no version metadata): PyTorch's BatchNorm loader would fill the counters.
    keys = [(k, s) for k, s in official_keys("yolact_darknet53") if "num_batches" not in k]
    state_dict = random_state_dict("yolact_darknet53")
    old = {key: state_dict[key] for key, _ in keys}
    torch.save(old, tmp_path / "yolact_darknet53_54_800000.pth")
    model = load_weights("yolact", tmp_path / "yolact_darknet53_54_800000.pth")
    assert model.backbone._preconv[1].num_batches_tracked.item() == 0

    # The same tensors in an OrderedDict whose metadata says BatchNorm version 2 (a file from a
    # PyTorch that saves the counters): strict loading must refuse it, as the official code does.
    with torch.device("meta"):
        metadata = Yolact(CONFIGS["yolact_darknet53"]).state_dict()._metadata
    newer = collections.OrderedDict(old)
    newer._metadata = metadata
    torch.save(newer, tmp_path / "yolact_darknet53_1_1.pth")
    with pytest.raises(PartialStyleError, match=r"missing keys \(e\.g\. [\w.]*num_batches_tracked"):
        load_weights("yolact", tmp_path / "yolact_darknet53_1_1.pth")


@pytest.mark.parametrize("legacy_format", [False, True])
def test_truncated_file_is_a_one_line_error(tmp_path, legacy_format):
    path = write_checkpoint("yolact_darknet53", tmp_path, legacy_format=legacy_format)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(ModelMissingError) as error:
        yolact_segmenter(path)
    message = str(error.value)
    assert "not a readable PyTorch checkpoint" in message
    assert "partialstyle models fetch" in message
    assert "\n" not in message


def test_non_checkpoint_files_are_refused(tmp_path):
    text = tmp_path / "yolact_base_54_800000.pth"
    text.write_text("<html>Not found</html>")
    with pytest.raises(ModelMissingError, match="not a readable PyTorch checkpoint"):
        read_state_dict(YOLACT, text)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": {"a": torch.zeros(1)}}, wrapped)
    with pytest.raises(PartialStyleError, match="not a flat state_dict"):
        read_state_dict(YOLACT, wrapped)
    with pytest.raises(ModelMissingError, match="not found"):
        read_state_dict(YOLACT, tmp_path / "absent.pth")


# --- priors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config_name", "level_sizes", "count"),
    [
        ("yolact_base", [69, 35, 18, 9, 5], 19248),
        ("yolact_resnet50", [69, 35, 18, 9, 5], 19248),
        ("yolact_darknet53", [69, 35, 18, 9, 5], 19248),
        ("yolact_im700", [88, 44, 22, 11, 6], 30963),
        ("yolact_plus_base", [69, 35, 18, 9, 5], 57744),
        ("yolact_plus_resnet50", [69, 35, 18, 9, 5], 57744),
    ],
)
def test_network_levels_and_prior_counts(config_name, level_sizes, count):
    config = CONFIGS[config_name]
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = Yolact(config).eval()
        size = config.max_size
        output = model(torch.empty(1, 3, size, size))
    assert output.priors.shape == (count, 4)
    assert output.loc.shape == (1, count, 4)
    assert output.class_probabilities.shape == (1, count, 81)
    assert output.coefficients.shape == (1, count, 32)
    assert output.prototypes.shape == (1, 2 * level_sizes[0], 2 * level_sizes[0], 32)
    sizes = [(s, s) for s in level_sizes]
    priors = make_priors(sizes, config.scales, ASPECT_RATIOS, size, config.square_anchors)
    assert priors.shape == (count, 4)


def test_v1_priors_are_squares_and_match_the_official_first_location():
    config = CONFIGS["yolact_base"]
    sizes = [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)]
    priors = make_priors(sizes, config.scales, ASPECT_RATIOS, 550, config.square_anchors)
    expected = torch.tensor(
        [
            [0.007246, 0.007246, 0.043636, 0.043636],
            [0.007246, 0.007246, 0.030856, 0.030856],
            [0.007246, 0.007246, 0.061711, 0.061711],
        ]
    )
    torch.testing.assert_close(priors[:3], expected, atol=1e-6, rtol=0)
    assert torch.equal(priors[:, 2], priors[:, 3])  # the kept v1 bug: every anchor square
    # Order: row-major locations, anchors within a location; level 0 row 2, column 3, anchor 1.
    index = (2 * 69 + 3) * 3 + 1
    torch.testing.assert_close(priors[index, :2], torch.tensor([3.5 / 69, 2.5 / 69]))
    # The last level starts after 3 anchors for every location of the first four.
    first_p7 = 3 * (69 * 69 + 35 * 35 + 18 * 18 + 9 * 9)
    torch.testing.assert_close(priors[first_p7], torch.tensor([0.1, 0.1, 384 / 550, 384 / 550]))


def test_plus_priors_have_three_scales_and_real_aspect_ratios():
    config = CONFIGS["yolact_plus_base"]
    priors = make_priors([(69, 69)], config.scales[:1], ASPECT_RATIOS, 550, False)
    assert priors.shape == (69 * 69 * 9, 4)
    torch.testing.assert_close(priors[1, 2:], torch.tensor([0.030856, 0.061711]), atol=1e-6, rtol=0)
    # Aspect ratio w/h is the configured ratio, area is scale^2.
    for a, (scale_index, ratio) in enumerate((s, r) for s in range(3) for r in ASPECT_RATIOS):
        w, h = priors[a, 2].item() * 550, priors[a, 3].item() * 550
        assert w / h == pytest.approx(ratio, rel=1e-5)
        assert math.sqrt(w * h) == pytest.approx(24 * 2 ** (scale_index / 3), rel=1e-5)


def test_im700_scales_follow_the_official_integer_rescaling():
    assert [s[0] for s in CONFIGS["yolact_im700"].scales] == [30, 61, 122, 244, 488]


# --- decoding, IoU, FastNMS, crop -----------------------------------------------------------


def test_decode_zero_offsets_gives_the_prior_and_offsets_move_it_as_documented():
    priors = torch.tensor([[0.5, 0.4, 0.2, 0.1], [0.1, 0.9, 0.05, 0.3]])
    boxes = decode_boxes(torch.zeros(2, 4), priors)
    torch.testing.assert_close(boxes[0], torch.tensor([0.4, 0.35, 0.6, 0.45]))
    torch.testing.assert_close(boxes[1], torch.tensor([0.075, 0.75, 0.125, 1.05]))

    loc = torch.tensor([[1.0, -2.0, math.log(2) / 0.2, 0.0]])
    box = decode_boxes(loc, priors[:1])[0]
    centre = (box[:2] + box[2:]) / 2
    torch.testing.assert_close(centre, torch.tensor([0.5 + 0.1 * 0.2, 0.4 - 0.2 * 0.1]))
    torch.testing.assert_close(box[2:] - box[:2], torch.tensor([0.4, 0.1]))

    random_boxes = decode_boxes(torch.randn(1000, 4) * 3, priors[:1].expand(1000, 4))
    assert bool((random_boxes[:, 2:] > random_boxes[:, :2]).all())


def test_box_iou_values_and_batching():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]])
    iou = box_iou(a, b)
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(box_iou(a[None].repeat(3, 1, 1), b[None].repeat(3, 1, 1))[2], iou)


def _nms_inputs(boxes, scores_per_class):
    boxes = torch.tensor(boxes, dtype=torch.float32)
    coefficients = torch.arange(len(boxes), dtype=torch.float32)[:, None].repeat(1, 32)
    return boxes, coefficients, torch.tensor(scores_per_class, dtype=torch.float32)


def test_fast_nms_keeps_one_of_identical_boxes_per_class():
    box = [0.1, 0.1, 0.5, 0.5]
    boxes, coefficients, scores = _nms_inputs(
        [box, box, box, [0.6, 0.6, 0.9, 0.9]],
        [[0.6, 0.9, 0.7, 0.0], [0.0, 0.0, 0.8, 0.0]],  # class 0 and class 1
    )
    kept_boxes, kept_coefficients, class_ids, kept_scores = fast_nms(boxes, coefficients, scores)
    # Class 0 keeps only its best copy (candidate 1); class 1 keeps candidate 2 although class 0
    # has the same box (NMS is class-wise); zero scores survive too (no second threshold).
    assert kept_scores.tolist() == pytest.approx([0.9, 0.8, 0.0, 0.0])
    assert class_ids[:2].tolist() == [0, 1]
    assert kept_coefficients[:2, 0].tolist() == [1.0, 2.0]
    torch.testing.assert_close(kept_boxes[0], boxes[1])


def test_fast_nms_lets_suppressed_boxes_suppress():
    # A overlaps B and B overlaps C (IoU 0.6 each), A and C barely: classic NMS keeps A and C;
    # FastNMS also drops C because B, itself dropped, outscores it.
    boxes, coefficients, scores = _nms_inputs(
        [[0.0, 0.0, 1.0, 1.0], [0.25, 0.0, 1.25, 1.0], [0.5, 0.0, 1.5, 1.0]], [[0.9, 0.8, 0.7]]
    )
    assert box_iou(boxes[1:2], boxes[2:3]).item() == pytest.approx(0.6)
    assert box_iou(boxes[0:1], boxes[2:3]).item() == pytest.approx(1 / 3)
    _, kept_coefficients, _, kept_scores = fast_nms(boxes, coefficients, scores)
    assert kept_scores.tolist() == pytest.approx([0.9])
    assert kept_coefficients[:, 0].tolist() == [0.0]


def test_fast_nms_caps_per_class_candidates_and_total_detections():
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(500, 2, generator=generator) * 0.9
    boxes = torch.cat((corners, corners + 0.01), dim=1)  # small, mostly disjoint
    scores = torch.rand(3, 500, generator=generator)
    _, _, class_ids, kept_scores = fast_nms(boxes, torch.zeros(500, 32), scores, top_k=40)
    assert len(kept_scores) == 100
    assert bool((kept_scores[:-1] >= kept_scores[1:]).all())
    for c in range(3):  # only each class's 40 best were candidates
        assert kept_scores[class_ids == c].min() >= scores[c].sort(descending=True).values[39]
    _, _, _, few = fast_nms(boxes, torch.zeros(500, 32), scores, top_k=10)
    assert len(few) <= 30


def test_crop_keeps_the_box_plus_one_pixel_and_zeroes_the_rest():
    masks = torch.ones(3, 20, 10)
    boxes = torch.tensor(
        [
            [0.2, 0.25, 0.5, 0.5],  # pixels x 2..5, y 5..10 -> widened to x 1..6, y 4..11
            [0.5, 0.5, 0.2, 0.25],  # same box given with swapped corners
            [-0.5, -0.5, 1.5, 1.5],  # beyond the image: clamped, keeps everything
        ]
    )
    cropped = crop_masks(masks, boxes)
    expected = torch.zeros(20, 10)
    expected[4:11, 1:6] = 1
    assert torch.equal(cropped[0], expected)
    assert torch.equal(cropped[1], expected)
    assert torch.equal(cropped[2], masks[2])
    assert torch.equal(
        crop_masks(masks, boxes, padding=0)[0].nonzero().amin(0), torch.tensor([5, 2])
    )


# --- postprocess --------------------------------------------------------------------------


def _synthetic_outputs(person_scores, car_scores=None):
    """Outputs for priors at distinct places, all with zero offsets and all-ones prototypes."""
    n = len(person_scores)
    centres = torch.linspace(0.1, 0.9, n)
    priors = torch.stack((centres, centres, torch.full((n,), 0.1), torch.full((n,), 0.1)), 1)
    probabilities = torch.zeros(n, 81)
    probabilities[:, 1] = torch.tensor(person_scores)
    if car_scores is not None:
        probabilities[:, 3] = torch.tensor(car_scores)
    probabilities[:, 0] = 1 - probabilities[:, 1:].sum(1)
    coefficients = torch.full((n, 32), 0.5)
    prototypes = torch.ones(40, 40, 32)
    return torch.zeros(n, 4), probabilities, coefficients, prototypes, priors


def test_postprocess_maps_channels_to_coco_classes_and_applies_thresholds():
    loc, probabilities, coefficients, prototypes, priors = _synthetic_outputs(
        [0.9, 0.04, 0.5, 0.2, 0.0], car_scores=[0.0, 0.0, 0.0, 0.0, 0.7]
    )
    detections = postprocess(
        loc, probabilities, coefficients, prototypes, priors, (60, 80), 0.3, 15
    )
    assert detections.class_ids.tolist() == [0, 2, 0]  # person, car, person
    assert COCO_CLASSES[2] == "car"
    assert detections.scores.tolist() == pytest.approx([0.9, 0.7, 0.5])
    assert detections.class_ids.dtype == torch.int64
    assert detections.boxes.dtype == torch.int64
    assert detections.masks.dtype == torch.bool and detections.masks.shape == (3, 60, 80)
    # Prior at relative centre 0.1 with side 0.1 -> x 0.05..0.15, y likewise, in pixels.
    assert detections.boxes[0].tolist() == [4, 3, 12, 9]
    # Mask = box region (sigmoid(16) > 0.5 everywhere before the crop).
    ys, xs = detections.masks[0].nonzero().unbind(1)
    assert 2 <= xs.min() <= 4 and 11 <= xs.max() <= 13
    assert 1 <= ys.min() <= 3 and 8 <= ys.max() <= 10

    top_one = postprocess(loc, probabilities, coefficients, prototypes, priors, (60, 80), 0.3, 1)
    assert top_one.scores.tolist() == pytest.approx([0.9])
    # With no threshold the official output is padded with zero-score entries: FastNMS runs
    # over all 80 classes of every candidate prior (the prior scoring 0.04 is no candidate).
    everything = postprocess(loc, probabilities, coefficients, prototypes, priors, (60, 80), 0, 15)
    assert len(everything) == 15
    assert everything.scores[:4].tolist() == pytest.approx([0.9, 0.7, 0.5, 0.2])
    assert everything.scores[4:].tolist() == [0.0] * 11
    nothing = postprocess(loc, probabilities, coefficients, prototypes, priors, (60, 80), 0.95, 15)
    assert len(nothing) == 0 and nothing.masks.shape == (0, 60, 80)


def test_postprocess_rescoring_multiplies_by_the_predicted_mask_iou_of_the_class():
    loc, probabilities, coefficients, prototypes, priors = _synthetic_outputs(
        [0.9, 0.0, 0.6, 0.0], car_scores=[0.0, 0.8, 0.0, 0.0]
    )
    seen = {}

    def mask_iou(masks):
        seen["shape"] = tuple(masks.shape)
        iou = torch.full((masks.shape[0], 80), 0.1)
        iou[:, 2] = 0.9  # cars' masks are judged good, people's poor
        return iou

    detections = postprocess(
        loc, probabilities, coefficients, prototypes, priors, (50, 50), 0.05, 15, mask_iou
    )
    assert seen["shape"] == (3, 1, 40, 40)  # soft masks at prototype resolution
    assert detections.class_ids.tolist() == [2, 0, 0]  # re-sorted after rescoring
    assert detections.scores.tolist() == pytest.approx([0.72, 0.09, 0.06])
    # score_threshold applies again after rescoring.
    strict = postprocess(
        loc, probabilities, coefficients, prototypes, priors, (50, 50), 0.08, 15, mask_iou
    )
    assert strict.scores.tolist() == pytest.approx([0.72, 0.09])


# --- modules ----------------------------------------------------------------------------------


def test_deformable_conv_with_zero_offsets_and_full_modulation_is_a_plain_conv():
    torch.manual_seed(0)
    layer = ModulatedDeformConv3x3(4, 6, stride=2)
    torch.nn.init.normal_(layer.bias)
    with torch.no_grad():
        layer.conv_offset_mask.bias[18:] = 50.0  # sigmoid -> 1
    x = torch.randn(1, 4, 9, 11)
    expected = F.conv2d(x, layer.weight, layer.bias, stride=2, padding=1)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)

    # Offsets are (dy, dx) pairs per tap: dx = 1 everywhere samples one pixel to the right.
    with torch.no_grad():
        layer.conv_offset_mask.bias[1:18:2] = 1.0
    shifted = F.pad(x, (0, 2, 1, 1))  # tap kx of output column j reads column j + kx
    expected = F.conv2d(shifted, layer.weight, layer.bias, stride=2)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config_name", ["yolact_resnet50", "yolact_darknet53"])
def test_forward_output_ranges_on_a_small_input(config_name):
    # Tamed random weights: torch's default init fades activations into slow denormals.
    model = Yolact(CONFIGS[config_name]).eval()
    model.load_state_dict(apply_official_key_rules(random_state_dict(config_name)))
    with torch.inference_mode():
        output = model(torch.randn(2, 3, 128, 160))
    count = output.priors.shape[0]
    assert output.loc.shape == (2, count, 4)
    torch.testing.assert_close(output.class_probabilities.sum(-1), torch.ones(2, count))
    assert output.coefficients.abs().max() <= 1
    assert output.prototypes.shape == (2, 32, 40, 32)
    assert output.prototypes.min() >= 0
    # 3 square anchors per location on 16x20, 8x10, 4x5, 2x3, 1x2 maps
    assert count == 3 * (16 * 20 + 8 * 10 + 4 * 5 + 2 * 3 + 1 * 2)


def test_preprocess_matches_the_official_bgr_normalisation(official_file):
    segmenter = yolact_segmenter(official_file("yolact_resnet50"))
    generator = torch.Generator().manual_seed(1)
    rgb = torch.randint(0, 256, (37, 53, 3), dtype=torch.uint8, generator=generator)
    # Official route: BGR image, resize, subtract/divide BGR statistics, then swap to RGB.
    bgr = rgb.flip(-1).permute(2, 0, 1)[None].float()
    bgr = F.interpolate(bgr, size=(550, 550), mode="bilinear", align_corners=False)
    bgr_mean = torch.tensor(RGB_MEAN[::-1]).view(1, 3, 1, 1)
    bgr_std = torch.tensor(RGB_STD[::-1]).view(1, 3, 1, 1)
    official = ((bgr - bgr_mean) / bgr_std)[:, [2, 1, 0]]
    torch.testing.assert_close(segmenter.preprocess(rgb), official)
    with pytest.raises(PartialStyleError, match="uint8 RGB image"):
        segmenter.preprocess(rgb.float())


# --- end to end ----------------------------------------------------------------------------


def _check_detections_format(detections: Detections, height: int, width: int, top_k: int):
    k = len(detections)
    assert detections.class_ids.shape == (k,) and detections.class_ids.dtype == torch.int64
    assert detections.scores.shape == (k,) and detections.scores.dtype == torch.float32
    assert detections.boxes.shape == (k, 4) and detections.boxes.dtype == torch.int64
    assert detections.masks.shape == (k, height, width) and detections.masks.dtype == torch.bool
    assert k <= top_k
    if k:
        assert bool(((detections.class_ids >= 0) & (detections.class_ids < 80)).all())
        assert bool((detections.scores[:-1] >= detections.scores[1:]).all())
        x1, y1, x2, y2 = detections.boxes.unbind(1)
        assert bool(((x1 >= 0) & (x2 <= width) & (y1 >= 0) & (y2 <= height)).all())
        # As in the official eval, a box wholly outside the image keeps x2 < x1 = 0 (or y2 < y1);
        # its mask is then empty.
        outside = (x2 < x1) | (y2 < y1)
        assert not bool(detections.masks[outside].any())


def _astronaut() -> torch.Tensor:
    data = pytest.importorskip("skimage.data")
    return torch.from_numpy(data.astronaut())


def _check_masks_stay_near_their_boxes(detections: Detections, prototype_size: int):
    # Masks are cropped at prototype resolution, then upsampled: allow two prototype pixels.
    height, width = detections.masks.shape[1:]
    margin_x = 2 * width / prototype_size
    margin_y = 2 * height / prototype_size
    for mask, (x1, y1, x2, y2) in zip(detections.masks, detections.boxes.tolist(), strict=True):
        ys, xs = mask.nonzero().unbind(1)
        if len(xs):
            assert x1 - margin_x <= xs.min() and xs.max() <= x2 + margin_x
            assert y1 - margin_y <= ys.min() and ys.max() <= y2 + margin_y


@pytest.mark.parametrize("config_name", ["yolact_resnet50", "yolact_darknet53"])
def test_detect_on_a_photo_returns_well_formed_person_detections(config_name, official_file):
    image = _astronaut()
    segmenter = yolact_segmenter(official_file(config_name))
    detections = segmenter.detect(image, score_threshold=0.3, top_k=15)
    _check_detections_format(detections, 512, 512, 15)
    # The file's person logit is biased up, so detections exist and are people; the scores
    # are softmax probabilities above the threshold.
    assert len(detections) == 15
    assert bool((detections.class_ids == 0).all())
    assert bool(((detections.scores > 0.3) & (detections.scores <= 1)).all())
    _check_masks_stay_near_their_boxes(detections, 138)

    few = segmenter.detect(image, score_threshold=0.0, top_k=3)
    _check_detections_format(few, 512, 512, 3)
    assert torch.equal(few.boxes, detections.boxes[:3])


@pytest.mark.slow
def test_detect_with_yolact_plus_rescoring(tmp_path):
    # With the mask-IoU head's last layer set to a constant 0.8, every score is 0.8 x the
    # class probability: compare against the same file with rescoring disabled.
    state_dict = random_state_dict("yolact_plus_resnet50", person_logit_bias=PERSON_LOGIT_BIAS)
    state_dict["maskiou_net.maskiou_net.10.weight"].zero_()
    state_dict["maskiou_net.maskiou_net.10.bias"].fill_(0.8)
    path = tmp_path / "yolact_plus_resnet50_54_800000.pth"
    torch.save(state_dict, path)
    segmenter = yolact_segmenter(path)
    image = _astronaut()[::2, ::2].contiguous()  # smaller masks; the network input is 550 anyway
    rescored = segmenter.detect(image, score_threshold=0.3, top_k=15)
    _check_detections_format(rescored, 256, 256, 15)
    assert len(rescored) > 0

    with torch.inference_mode():
        output = segmenter.model(segmenter.preprocess(image))
    raw = (output.loc[0], output.class_probabilities[0], output.coefficients[0])
    plain = postprocess(*raw, output.prototypes[0], output.priors, (256, 256), 0.3, 100)
    expected = plain.scores * 0.8
    expected = expected[expected >= 0.3][:15]
    torch.testing.assert_close(rescored.scores, expected)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", RESNET101_CONFIGS)
def test_detect_with_resnet101_configs(config_name, official_file):
    segmenter = yolact_segmenter(official_file(config_name))
    # A random mask-IoU head rescores (near) zero: keep every detection for YOLACT++.
    threshold = 0.0 if CONFIGS[config_name].use_maskiou else 0.3
    detections = segmenter.detect(_astronaut(), score_threshold=threshold)
    _check_detections_format(detections, 512, 512, 15)
    assert len(detections) > 0  # random ResNet-101 boxes are large: NMS merges many
    _check_masks_stay_near_their_boxes(detections, 2 * math.ceil(CONFIGS[config_name].max_size / 8))
