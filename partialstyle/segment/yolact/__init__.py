"""YOLACT and YOLACT++ instance segmentation, loading the official checkpoints unchanged.

Typical use::

    segmenter = YolactSegmenter.load(fetch_yolact("yolact_base", models_dir), "cpu")
    # fetch_yolact: partialstyle.weights.fetch_yolact
    detections = segmenter.detect(rgb_uint8_hwc)
    people = detections.masks[detections.class_ids == COCO_CLASSES.index("person")]
"""

from .checkpoint import identify_config, load_yolact
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
    "load_yolact",
]
