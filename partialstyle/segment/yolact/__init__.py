"""YOLACT and YOLACT++ instance segmentation, loading the official checkpoints unchanged.

Typical use::

    segmenter = YolactSegmenter.load(fetch_yolact("yolact_base", models_dir), "cpu")
    detections = segmenter.detect(rgb_uint8_hwc)
    people = detections.masks[detections.class_ids == COCO_CLASSES.index("person")]
"""

from .checkpoint import identify_config, load_yolact
from .config import COCO_CLASSES, CONFIGS, YolactConfig
from .detect import Detections
from .fetch import OFFICIAL_WEIGHTS, fetch_yolact
from .model import Yolact, YolactSegmenter

__all__ = [
    "COCO_CLASSES",
    "CONFIGS",
    "OFFICIAL_WEIGHTS",
    "Detections",
    "Yolact",
    "YolactConfig",
    "YolactSegmenter",
    "fetch_yolact",
    "identify_config",
    "load_yolact",
]
