"""`partialstyle mask` and `partialstyle segment`: what the segmenters see, as files."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from partialstyle.commands.options import MAX_TOP_K, top_k
from partialstyle.errors import PartialStyleError

# Mask files that `segment` writes: "003-traffic_light.png".
_MASK_FILE = re.compile(r"\d{3}-[A-Za-z_]+\.png")


def cmd_mask(args: argparse.Namespace) -> None:
    from partialstyle.config import PipelineConfig
    from partialstyle.io import check_not_the_input, check_output_path, read_frame, write_image

    if args.output.suffix.lower() != ".png":
        raise PartialStyleError(
            f"the mask is written as PNG; name the output {args.output.stem}.png"
        )
    check_output_path(args.output)
    check_not_the_input(args.input, args.output)
    config = PipelineConfig(segmenter=args.segmenter, device=args.device)  # validates them
    frame = read_frame(args.input)

    import numpy as np  # the paths and the picture are fine: now load what the work needs
    import torch

    from partialstyle.device import resolve_device
    from partialstyle.segment.regions import RegionSegmenter
    from partialstyle.weights.model_cache import default_cache

    device = resolve_device(args.device)
    with torch.inference_mode():
        rgb = torch.from_numpy(np.ascontiguousarray(frame[..., :3])).to(device)
        name, mask = RegionSegmenter(default_cache).person_probability(rgb, config)
    write_image(args.output, (mask.cpu().numpy() * 255.0 + 0.5).astype(np.uint8))
    print(f"wrote {args.output} (segmenter: {name})")


def cmd_segment(args: argparse.Namespace) -> None:
    """Every detected person or object as JSON, with its mask as a PNG."""
    from partialstyle.config import PipelineConfig
    from partialstyle.io import check_not_the_input, read_frame, write_atomically, write_image

    config = PipelineConfig(
        segmenter=args.segmenter,
        device=args.device,
        score_threshold=args.score_threshold,
        yolact_weights=args.weights,
    )
    _check_segment_outputs(args.json, args.masks)
    check_not_the_input(args.input, args.json)
    frame = read_frame(args.input)

    import numpy as np
    import torch

    from partialstyle.device import resolve_device
    from partialstyle.segment.classes import COCO_CLASSES
    from partialstyle.segment.regions import RegionSegmenter
    from partialstyle.weights.model_cache import default_cache

    device = resolve_device(args.device)
    rgb = torch.from_numpy(np.ascontiguousarray(frame[..., :3])).to(device)
    with torch.inference_mode():
        name, found = RegionSegmenter(default_cache).detections(rgb, config, args.top_k)
    records = []
    if args.masks:
        args.masks.mkdir(exist_ok=True)
        for stale in args.masks.iterdir():  # an earlier run's masks would pass for this one's
            if _MASK_FILE.fullmatch(stale.name) and stale.is_file():
                stale.unlink()
    for index, detection in enumerate(found):
        class_name = COCO_CLASSES[detection.class_index]
        record = {
            "class": class_name,
            "class_index": detection.class_index,
            "score": round(detection.score, 5),
            "box": list(detection.box),
        }
        if args.masks:
            path = args.masks / f"{index:03d}-{class_name.replace(' ', '_')}.png"
            write_image(path, (detection.mask.cpu().numpy() * 255.0 + 0.5).astype(np.uint8))
            record["mask"] = str(path)
        records.append(record)
    height, width = frame.shape[:2]
    report = {"image": str(args.input), "width": width, "height": height, "segmenter": name}
    report["detections"] = records
    write_atomically(args.json, (json.dumps(report, indent=2) + "\n").encode())
    print(f"wrote {args.json} ({len(records)} detections, segmenter: {name})")


def _check_segment_outputs(json_path: Path, masks: Path | None) -> None:
    """`segment`'s outputs, checked before any work."""
    from partialstyle.io import check_writable_folder

    if json_path.is_dir():
        raise PartialStyleError(
            f"--json {json_path} is a folder; name a file, e.g. {json_path / 'detections.json'}"
        )
    check_writable_folder(json_path.parent)
    if masks is not None:
        if masks.exists() and not masks.is_dir():
            raise PartialStyleError(f"--masks {masks} is a file; name a folder for the masks")
        check_writable_folder(masks if masks.is_dir() else masks.parent)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """`mask` and `segment`."""
    mask = commands.add_parser("mask", help="write the soft person mask as an 8-bit PNG")
    mask.add_argument("input", type=Path)
    mask.add_argument("output", type=Path)
    mask.add_argument(
        "--segmenter", default="auto", help="auto, selfie, selfie-landscape or yolact"
    )
    mask.add_argument("--device", default="auto")
    mask.set_defaults(run=cmd_mask)

    segment = commands.add_parser("segment", help="detect people and objects, write JSON and masks")
    segment.add_argument("input", type=Path)
    segment.add_argument("--json", type=Path, required=True, help="where to write the detections")
    segment.add_argument("--masks", type=Path, help="folder for one PNG mask per detection")
    segment.add_argument(
        "--segmenter", default="auto", help="auto, selfie, selfie-landscape, yolact"
    )
    segment.add_argument("--weights", help="YOLACT checkpoint (default: the one in models/yolact)")
    segment.add_argument("--score-threshold", type=float, default=0.3)
    segment.add_argument(
        "--top-k", type=top_k, default=15, help=f"most detections to keep (1..{MAX_TOP_K})"
    )
    segment.add_argument("--device", default="auto")
    segment.set_defaults(run=cmd_segment)
