"""Argument types and the style options that `image` and `video` share."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from partialstyle.commands.segmenter_choice import segmenter_for
from partialstyle.errors import PartialStyleError

if TYPE_CHECKING:
    from partialstyle.config import PipelineConfig
    from partialstyle.plan import StylePlan

# `segment` keeps at most this many detections (YOLACT's own limit per image).
MAX_TOP_K = 100


def _parse(text: str, convert: type[float] | type[int], what: str) -> float:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def fraction(text: str) -> float:
    value = _parse(text, float, "a number")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..1")
    return value


def top_k(text: str) -> int:
    value = _parse(text, int, "a whole number")
    if not 1 <= value <= MAX_TOP_K:
        raise argparse.ArgumentTypeError(f"{value} is outside 1..{MAX_TOP_K}")
    return value


def thread_count(text: str) -> int:
    """--threads: 1 up to the machine's CPU count (torch crashes on absurd counts)."""
    value = _parse(text, int, "a whole number")
    available = os.cpu_count() or 1
    if not 1 <= value <= available:
        raise argparse.ArgumentTypeError(
            f"{value} is outside 1..{available} (this machine has {available} CPU threads)"
        )
    return value


def add_style_options(parser: argparse.ArgumentParser, default_height: int | None) -> None:
    styles = parser.add_argument_group("styles (see `partialstyle styles`)")
    styles.add_argument("--style", help="one style for the whole frame, e.g. multistyle:19")
    styles.add_argument("--person-style", default=None, help="style of the people")
    styles.add_argument("--background-style", default=None, help="style of everything else")
    styles.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="REGION=STYLE",
        help="style of one region: person:1=multistyle:3 (people from the left), "
        "class:cat=multistyle:7 (needs --segmenter yolact); repeatable",
    )
    styles.add_argument("--strength", type=fraction, default=1.0, help="0..1 (default 1)")
    styles.add_argument("--person-strength", type=fraction, default=None)
    styles.add_argument("--background-strength", type=fraction, default=None)
    styles.add_argument("--preserve-colors", action="store_true", help="keep the original colors")
    quality = parser.add_argument_group("processing")
    size = quality.add_mutually_exclusive_group()
    size.add_argument(
        "--process-height",
        type=int,
        default=default_height,
        help=f"stylize at this height and scale back (default: {default_height or 'full'})",
    )
    size.add_argument("--full-res", action="store_true", help="stylize at full resolution")
    size.add_argument(
        "--live",
        action="store_true",
        help="the live preset: 180-line processing with edge-aware upsampling (fastest)",
    )
    quality.add_argument(
        "--upsample",
        choices=["bilinear", "guided"],
        default="bilinear",
        help="how the stylized image returns to full size (guided: edge-aware)",
    )
    quality.add_argument(
        "--segmenter", default="auto", help="auto, selfie, selfie-landscape or yolact"
    )
    quality.add_argument("--weights", help="YOLACT checkpoint (default: the one in models/yolact)")
    quality.add_argument(
        "--instance-every", type=int, default=1, help="run YOLACT every n-th video frame"
    )
    quality.add_argument("--mask-threshold", type=float, default=0.5)
    quality.add_argument("--mask-feather", type=float, default=2.0, help="edge softness, pixels")
    quality.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    quality.add_argument("--threads", type=thread_count, default=None, help="CPU threads for torch")


def pipeline_from_args(
    args: argparse.Namespace, temporal_smoothing: float = 0.0, stabilize: float = 0.0
):
    """The pipeline that the style options describe, built (torch imported, models loaded)
    only once everything that can be checked without them holds."""
    plan, config = plan_from_args(args, temporal_smoothing, stabilize)
    from partialstyle.pipeline import Pipeline  # torch: only once the options are fine

    return Pipeline(config, plan)


def plan_from_args(
    args: argparse.Namespace, temporal_smoothing: float = 0.0, stabilize: float = 0.0
) -> tuple[StylePlan, PipelineConfig]:
    """The style plan and settings of the options, checked without torch: the specs parse,
    their files are there and readable, and what the options ask for can be done."""
    from partialstyle.config import LIVE, PipelineConfig
    from partialstyle.plan import RegionRequest, plan_from_requests

    if args.style and (args.person_style or args.background_style):
        raise PartialStyleError("use --style alone, or --person-style/--background-style")
    person = args.style or args.person_style or "none"
    background = args.style or args.background_style or "none"
    extra = {}
    for item in args.region:
        name, has_spec, spec = item.partition("=")
        if not has_spec:
            raise PartialStyleError(
                f"--region {item!r}: write REGION=STYLE, e.g. person:1=multistyle:3"
            )
        extra[name.strip()] = spec
    if person == "none" and background == "none" and not extra:
        raise PartialStyleError(
            "no style chosen; add --style S or --person-style S / --background-style S "
            "(list styles with `partialstyle styles`)"
        )

    def request(region: str, spec: str, strength: float | None) -> RegionRequest:
        chosen = args.strength if strength is None else strength
        return RegionRequest(region, spec, chosen, args.preserve_colors)

    plan = plan_from_requests(
        [
            request("person", person, args.person_strength),
            request("background", background, args.background_strength),
            *(request(name, spec, None) for name, spec in extra.items()),
        ]
    )
    for region, look in plan.regions().items():
        problem = look.style.style_kind.problem(look.style)
        if problem:
            raise PartialStyleError(f"{_option_of(region, args)}: {problem}")
    if args.live:
        args.process_height, args.upsample = LIVE.process_height, LIVE.upsample
    config = PipelineConfig(
        segmenter=segmenter_for(plan, args.segmenter, args.weights),
        process_height=None if args.full_res else args.process_height,
        upsample=args.upsample,
        yolact_weights=args.weights,
        instance_every=args.instance_every,
        mask_threshold=args.mask_threshold,
        mask_feather=args.mask_feather,
        temporal_smoothing=temporal_smoothing,
        stabilize=stabilize,
        device=args.device,
        threads=args.threads,
    )
    return plan, config


def _option_of(region: str, args: argparse.Namespace) -> str:
    """The option that set a region's style, for error messages."""
    if region in ("person", "background"):
        return "--style" if args.style else f"--{region}-style"
    return f"--region {region}"
