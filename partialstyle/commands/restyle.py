"""`partialstyle image` and `partialstyle video`: restyle a file."""

from __future__ import annotations

import argparse
from pathlib import Path

from partialstyle.commands.options import add_style_options, pipeline_from_args
from partialstyle.errors import PartialStyleError


def cmd_image(args: argparse.Namespace) -> None:
    from partialstyle.io import check_not_the_input, check_output_path, read_frame, write_image

    check_output_path(args.output)
    check_not_the_input(args.input, args.output)
    frame = read_frame(args.input)
    pipeline = pipeline_from_args(args)
    write_image(args.output, pipeline.process(frame))
    print(f"wrote {args.output}")


def _style_every(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 1000, got {text!r}")
    return value


def cmd_video(args: argparse.Namespace) -> None:
    from partialstyle.commands.video import check_video_input, check_video_output, restyle_video
    from partialstyle.io import check_not_the_input

    check_video_input(args.input)
    check_video_output(args.output)
    check_not_the_input(args.input, args.output)
    if args.realtime and args.style_every > 1:
        raise PartialStyleError(
            "--realtime follows the OBS filter's own schedule; leave out --style-every"
        )
    pipeline = pipeline_from_args(
        args, temporal_smoothing=args.temporal_smoothing, stabilize=args.stabilize
    )
    if args.realtime:  # what the OBS filter shows: the live path at the clip's own pace
        from partialstyle.commands.video import stated_fps
        from partialstyle.live import LiveStylizer
        from partialstyle.live.realtime import RealtimeStylizer

        player = RealtimeStylizer(LiveStylizer(pipeline), stated_fps(args.input))
        try:
            count = restyle_video(player, args.input, args.output, progress=not args.quiet)
        finally:
            player.close()
        print(f"wrote {args.output} ({count} frames; {player.record.summary(player.fps)})")
        return
    if args.style_every > 1:  # the OBS filter's live path, reproducibly
        from partialstyle.live import LiveStylizer

        pipeline = LiveStylizer(pipeline, style_every=args.style_every)
    count = restyle_video(pipeline, args.input, args.output, progress=not args.quiet)
    print(f"wrote {args.output} ({count} frames)")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """`image` and `video`."""
    image = commands.add_parser("image", help="restyle an image file")
    image.add_argument("input", type=Path)
    image.add_argument("output", type=Path)
    add_style_options(image, default_height=None)
    image.set_defaults(run=cmd_image)

    video = commands.add_parser("video", help="restyle a video file (same size and frame rate)")
    video.add_argument("input", type=Path)
    video.add_argument("output", type=Path)
    add_style_options(video, default_height=720)
    video.add_argument("--temporal-smoothing", type=float, default=0.5, help="mask smoothing 0..1")
    video.add_argument(
        "--stabilize", type=float, default=0.0, help="0..0.95: less shimmer where nothing moves"
    )
    video.add_argument(
        "--style-every",
        type=_style_every,
        default=1,
        metavar="N",
        help="run the style networks on every N-th frame and carry the style along by optical "
        "flow in between, as the OBS filter does live (1: style every frame)",
    )
    video.add_argument(
        "--realtime",
        action="store_true",
        help="play the clip at its own pace through the OBS filter's live path (the style "
        "networks beside the frames, frames skipped when the machine falls behind): what OBS "
        "would show here",
    )
    video.add_argument("--quiet", action="store_true", help="no progress bar")
    video.set_defaults(run=cmd_video)
