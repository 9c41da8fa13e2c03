"""YOLACT and YOLACT++ instance segmentation, loading the official checkpoints unchanged.

Typical use::

    path = fetch_yolact("yolact_base", models_dir)  # partialstyle.weights.fetch_yolact
    segmenter = YolactSegmenter(load_weights("yolact", path), "cpu")  # weights.load
    detections = segmenter.detect(rgb_uint8_hwc)
    people = detections.masks[detections.class_ids == COCO_CLASSES.index("person")]
"""

from .checkpoint import identify_config
from .config import COCO_CLASSES, CONFIGS, YolactConfig
from .detect import Detections
from .model import Yolact, YolactSegmenter

__all__ = [
    "COCO_CLASSES",
    "CONFIGS",
    "Detections",
    "Yolact",
    "YolactConfig",
    "YolactSegmenter",
    "identify_config",
]
