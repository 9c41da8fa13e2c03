"""The `partialstyle` command. Every user error ends as one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

from partialstyle.errors import PartialStyleError

EXIT_USAGE = 2
# `segment` keeps at most this many detections (YOLACT's own limit per image).
MAX_TOP_K = 100
# Mask files that `segment` writes: "003-traffic_light.png".
_MASK_FILE = re.compile(r"\d{3}-[A-Za-z_]+\.png")


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so partial outputs are removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(signum)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (not the usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..1")
    return value


def _top_k(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_TOP_K:
        raise argparse.ArgumentTypeError(f"{value} is outside 1..{MAX_TOP_K}")
    return value


def _thread_count(text: str) -> int:
    """--threads: 1 up to the machine's CPU count (torch crashes on absurd counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    available = os.cpu_count() or 1
    if not 1 <= value <= available:
        raise argparse.ArgumentTypeError(
            f"{value} is outside 1..{available} (this machine has {available} CPU threads)"
        )
    return value


def _add_style_options(parser: argparse.ArgumentParser, default_height: int | None) -> None:
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
    styles.add_argument("--strength", type=_fraction, default=1.0, help="0..1 (default 1)")
    styles.add_argument("--person-strength", type=_fraction, default=None)
    styles.add_argument("--background-strength", type=_fraction, default=None)
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
    quality.add_argument(
        "--threads", type=_thread_count, default=None, help="CPU threads for torch"
    )


def _pipeline_from_args(
    args: argparse.Namespace, temporal_smoothing: float = 0.0, stabilize: float = 0.0
):
    from partialstyle.config import LIVE, PipelineConfig
    from partialstyle.pipeline import Pipeline
    from partialstyle.plan import RegionStyle, StylePlan
    from partialstyle.style.spec import StyleSpec

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

    def region(spec: str, strength: float | None) -> RegionStyle:
        chosen = args.strength if strength is None else strength
        return RegionStyle(StyleSpec.parse(spec), chosen, args.preserve_colors)

    regions = {
        "person": region(person, args.person_strength),
        "background": region(background, args.background_strength),
    }
    regions.update({name: region(spec, None) for name, spec in extra.items()})
    plan = StylePlan.from_regions(regions)
    if args.live:
        args.process_height, args.upsample = LIVE.process_height, LIVE.upsample
    config = PipelineConfig(
        segmenter=args.segmenter,
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
    return Pipeline(config, plan)


# -- commands --------------------------------------------------------------------------------


def cmd_image(args: argparse.Namespace) -> None:
    from partialstyle.io import check_output_path, read_frame, write_image

    check_output_path(args.output)
    frame = read_frame(args.input)
    pipeline = _pipeline_from_args(args)
    write_image(args.output, pipeline.process(frame))
    print(f"wrote {args.output}")


def cmd_mask(args: argparse.Namespace) -> None:
    from partialstyle.config import PipelineConfig
    from partialstyle.device import resolve_device
    from partialstyle.io import check_output_path, read_frame, write_image
    from partialstyle.models_cache import load_model
    from partialstyle.pipeline import choose_segmenter

    if args.output.suffix.lower() != ".png":
        raise PartialStyleError(
            f"the mask is written as PNG; name the output {args.output.stem}.png"
        )
    check_output_path(args.output)
    PipelineConfig(segmenter=args.segmenter, device=args.device)  # validates the choices
    frame = read_frame(args.input)
    import numpy as np
    import torch

    from partialstyle.segment.selfie import segment_person

    device = resolve_device(args.device)
    name = choose_segmenter(args.segmenter, *frame.shape[:2])
    with torch.inference_mode():
        rgb = torch.from_numpy(np.ascontiguousarray(frame[..., :3])).to(device)
        mask = segment_person(load_model(name, device), rgb).cpu().numpy()
    write_image(args.output, (mask * 255.0 + 0.5).astype(np.uint8))
    print(f"wrote {args.output} (segmenter: {name})")


def cmd_segment(args: argparse.Namespace) -> None:
    """Every detected person or object as JSON, with its mask as a PNG."""
    import numpy as np
    import torch

    from partialstyle.config import PipelineConfig
    from partialstyle.device import resolve_device
    from partialstyle.io import read_frame, write_atomically, write_image
    from partialstyle.models_cache import load_model, load_yolact, yolact_path
    from partialstyle.pipeline import choose_segmenter
    from partialstyle.segment.classes import COCO_CLASSES
    from partialstyle.segment.instances import selfie_people
    from partialstyle.segment.selfie import segment_person

    PipelineConfig(
        segmenter=args.segmenter, device=args.device, score_threshold=args.score_threshold
    )
    _check_segment_outputs(args.json, args.masks)
    frame = read_frame(args.input)
    device = resolve_device(args.device)
    weights = yolact_path(args.weights) if args.segmenter in ("auto", "yolact") else None
    ready = weights is not None and (device.type == "cuda" or args.segmenter == "yolact")
    name = choose_segmenter(args.segmenter, *frame.shape[:2], ready)
    if name == "yolact" and weights is None:
        raise PartialStyleError(
            "no YOLACT weights; run `partialstyle models fetch yolact-resnet50` or pass --weights"
        )
    rgb = torch.from_numpy(np.ascontiguousarray(frame[..., :3])).to(device)
    found = []  # (class index, score, box, mask)
    with torch.inference_mode():
        if name == "yolact":
            detections = load_yolact(weights, device).detect(rgb, args.score_threshold, args.top_k)
            for i in range(len(detections)):
                x1, y1, x2, y2 = (int(v) for v in detections.boxes[i])
                if x2 <= x1 or y2 <= y1:
                    continue  # predicted wholly outside the image: nothing to show
                found.append(
                    (
                        int(detections.class_ids[i]),
                        float(detections.scores[i]),
                        [int(v) for v in detections.boxes[i]],
                        detections.masks[i].float(),
                    )
                )
        else:
            probability = segment_person(load_model(name, device), rgb)
            for person in selfie_people(probability)[: args.top_k]:
                score = float(probability[person.mask > 0].mean())
                found.append((0, score, [int(v) for v in person.box], probability * person.mask))
    records = []
    if args.masks:
        args.masks.mkdir(exist_ok=True)
        for stale in args.masks.iterdir():  # an earlier run's masks would pass for this one's
            if _MASK_FILE.fullmatch(stale.name) and stale.is_file():
                stale.unlink()
    for index, (class_index, score, box, mask) in enumerate(found):
        record = {
            "class": COCO_CLASSES[class_index],
            "class_index": class_index,
            "score": round(score, 5),
            "box": box,
        }
        if args.masks:
            path = args.masks / f"{index:03d}-{COCO_CLASSES[class_index].replace(' ', '_')}.png"
            write_image(path, (mask.cpu().numpy() * 255.0 + 0.5).astype(np.uint8))
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


def _style_every(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 1000, got {text!r}")
    return value


def cmd_video(args: argparse.Namespace) -> None:
    from partialstyle.video import check_video_input, check_video_output, restyle_video

    check_video_input(args.input)
    check_video_output(args.output)
    pipeline = _pipeline_from_args(
        args, temporal_smoothing=args.temporal_smoothing, stabilize=args.stabilize
    )
    if args.style_every > 1:  # the OBS filter's live path, reproducibly
        from partialstyle.live import LiveStylizer

        pipeline = LiveStylizer(pipeline, style_every=args.style_every)
    count = restyle_video(pipeline, args.input, args.output, progress=not args.quiet)
    print(f"wrote {args.output} ({count} frames)")


def cmd_styles(args: argparse.Namespace) -> None:
    from partialstyle.modelstore import johnson_names
    from partialstyle.style.names import MULTISTYLE_NAMES

    if args.sheet is None:
        print("none")
        for index, name in enumerate(MULTISTYLE_NAMES):
            print(f"multistyle:{index:<3} multistyle:{name}")
        print("blends: multistyle:3=0.5,12=0.5 (weights are normalised)")
        for name in johnson_names():
            print(f"johnson:{name}")
        print("johnson:<file.pth>  (more with `partialstyle models fetch johnson`)")
        print("arbitrary:<picture>  (any picture's style)")
        return
    from partialstyle.device import resolve_device
    from partialstyle.io import check_output_path, read_frame, write_image
    from partialstyle.sheet import contact_sheet

    check_output_path(args.sheet)
    photo = read_frame(args.photo or Path(__file__).parent / "data" / "astronaut.jpg")
    pictures = [str(path) for path in args.picture or []]
    write_image(args.sheet, contact_sheet(photo, resolve_device(args.device), pictures=pictures))
    print(f"wrote {args.sheet}")


def cmd_models(args: argparse.Namespace) -> None:
    from partialstyle import modelstore

    names = args.names or None
    if args.action == "fetch":
        _fetch(names or [])
        return
    if args.action == "prepare":
        modelstore.prepare(names)
        return
    statuses = modelstore.verify(names)
    for name, status in statuses.items():
        model = modelstore.entry(name)
        if args.action == "list":
            print(
                f"{name:18} {status:8} {model.description} [{model.package} {model.version}, "
                f"{model.license}]"
            )
        else:
            print(f"{name:18} {status}")
    if args.action == "verify" and any(status != "ready" for status in statuses.values()):
        raise PartialStyleError(f"some models are not ready; {modelstore.PREPARE_HINT}")


def _fetch(names: list[str]) -> None:
    """Weights that live on other hosts: downloaded on request, never by install."""
    from partialstyle import modelstore

    if not names:
        raise PartialStyleError("name what to fetch: `partialstyle models fetch johnson`")
    for name in names:
        if name == "johnson":
            from partialstyle.style.johnson_fetch import fetch_johnson

            for path in fetch_johnson(modelstore.models_dir() / "johnson"):
                print(f"johnson:{path.stem} -> {path}")
        elif name.startswith("yolact"):
            from partialstyle.segment.yolact import fetch_yolact

            path = fetch_yolact(name.replace("-", "_"), modelstore.models_dir() / "yolact")
            print(f"{name} -> {path}")
        else:
            raise PartialStyleError(
                f"nothing called {name!r} to fetch; try johnson or yolact-resnet50 "
                "(also yolact-base, yolact-im700, yolact-darknet53, yolact-plus-base, "
                "yolact-plus-resnet50)"
            )


def cmd_train_style(args: argparse.Namespace) -> None:
    from partialstyle import modelstore
    from partialstyle.style.train_style import train_style

    if not args.style_image.is_file():
        raise PartialStyleError(f"style picture {args.style_image} does not exist")
    if not args.dataset.is_dir():
        raise PartialStyleError(f"dataset folder {args.dataset} does not exist")
    name = args.name or args.style_image.stem
    out = modelstore.models_dir() / "johnson" / f"{name}.pth"
    train_style(
        args.style_image,
        args.dataset,
        out,
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=args.batch_size,
    )
    print(f"wrote {out}; use it as johnson:{name}")


def cmd_doctor(args: argparse.Namespace) -> None:
    import cv2
    import numpy as np
    import torch
    import torchvision

    from partialstyle import __version__, environment, modelstore
    from partialstyle.device import resolve_device

    obs_python = environment.obs_embedded_python()
    print(f"partialstyle   {__version__}")
    print(f"python         {sys.version.split()[0]} ({sys.executable})")
    print(f"torch          {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"numpy          {np.__version__}, opencv {cv2.__version__}")
    print(f"device         {resolve_device('auto')} ({torch.get_num_threads()} CPU threads)")
    print(f"models         {modelstore.models_dir()}")
    statuses = modelstore.verify()
    for name, status in statuses.items():
        print(f"  {name:16} {status}")
    if statuses.get("multistyle26") == "ready":
        from partialstyle.models_cache import load_model

        network = load_model("multistyle26", resolve_device("auto"))
        precision = "bfloat16" if network.compute_dtype == torch.bfloat16 else "float32"
        print(f"style network  runs in {precision} here")
    from partialstyle.style import fused_norm

    fused_norm.kernels(wait=True)
    kernel = fused_norm.status()
    note = "" if kernel == "ready" else " (plain torch ops are used: slower, same results)"
    print(f"fused kernel   {kernel}{note}")
    print(f"OBS            {environment.obs_version() or 'not found'}")
    if obs_python is None:
        print("OBS python     unknown (OBS not found, or not a Linux build that links libpython)")
    elif obs_python == environment.this_python():
        print(f"OBS python     {obs_python}: matches this environment")
    else:
        print(
            f"OBS python     {obs_python}: does NOT match this environment's "
            f"{environment.this_python()}; rerun install/install.sh (it picks OBS's Python)"
        )
    broken = [f"{name} {status}" for name, status in statuses.items() if status != "ready"]
    if broken:
        raise PartialStyleError(
            f"models not ready ({', '.join(broken)}); {modelstore.PREPARE_HINT}"
        )


def cmd_bench(args: argparse.Namespace) -> None:
    from partialstyle.bench import run_benchmarks

    results = run_benchmarks(repeats=args.repeats, threads=args.threads, quick=args.quick)
    if args.json:
        print(json.dumps(results, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="partialstyle",
        description="Restyle people and backgrounds of images and video with neural art styles.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    image = commands.add_parser("image", help="restyle an image file")
    image.add_argument("input", type=Path)
    image.add_argument("output", type=Path)
    _add_style_options(image, default_height=None)
    image.set_defaults(run=cmd_image)

    mask = commands.add_parser("mask", help="write the soft person mask as an 8-bit PNG")
    mask.add_argument("input", type=Path)
    mask.add_argument("output", type=Path)
    mask.add_argument("--segmenter", default="auto", help="auto, selfie or selfie-landscape")
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
        "--top-k", type=_top_k, default=15, help=f"most detections to keep (1..{MAX_TOP_K})"
    )
    segment.add_argument("--device", default="auto")
    segment.set_defaults(run=cmd_segment)

    video = commands.add_parser("video", help="restyle a video file (same size and frame rate)")
    video.add_argument("input", type=Path)
    video.add_argument("output", type=Path)
    _add_style_options(video, default_height=720)
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
    video.add_argument("--quiet", action="store_true", help="no progress bar")
    video.set_defaults(run=cmd_video)

    styles = commands.add_parser("styles", help="list styles, or draw a contact sheet")
    styles.add_argument("--sheet", type=Path, help="write a contact sheet PNG")
    styles.add_argument("--photo", type=Path, help="photo for the sheet (default: astronaut)")
    styles.add_argument(
        "--picture", type=Path, action="append", help="add arbitrary:<picture> to the sheet"
    )
    styles.add_argument("--device", default="auto")
    styles.set_defaults(run=cmd_styles)

    models = commands.add_parser("models", help="list, prepare or verify model files")
    models.add_argument("action", choices=["list", "prepare", "verify", "fetch"])
    models.add_argument("names", nargs="*", help="models (default: all); for fetch: johnson")
    models.set_defaults(run=cmd_models)

    train = commands.add_parser("train-style", help="train a Johnson network for a picture")
    train.add_argument("style_image", type=Path)
    train.add_argument("--dataset", type=Path, required=True, help="folder of training photos")
    train.add_argument("--name", help="network name (default: the picture's file name)")
    train.add_argument("--epochs", type=int, default=2)
    train.add_argument("--image-size", type=int, default=256)
    train.add_argument("--batch-size", type=int, default=4)
    train.set_defaults(run=cmd_train_style)

    doctor = commands.add_parser("doctor", help="versions, device, models, OBS's Python")
    doctor.set_defaults(run=cmd_doctor)

    bench = commands.add_parser("bench", help="speed of every stage on this machine")
    bench.add_argument("--json", action="store_true", help="also print the results as JSON")
    bench.add_argument("--repeats", type=int, default=5)
    bench.add_argument("--threads", type=_thread_count, default=None)
    bench.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    bench.set_defaults(run=cmd_bench)

    try:
        from partialstyle.obs.cli import add_obs_commands
    except ImportError:
        pass
    else:
        add_obs_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_request:  # --help, or a usage error already printed
        return exit_request.code if isinstance(exit_request.code, int) else 0
    previous = _stop_on_signals()
    _quiet_library_logs()
    try:
        args.run(args)
    except (PartialStyleError, ValueError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"partialstyle: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("partialstyle: interrupted", file=sys.stderr)
        return 130
    except Stopped as stop:
        print(f"partialstyle: stopped by {stop}", file=sys.stderr)
        return 128 + stop.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    return 0


def _quiet_library_logs() -> None:
    """Keep library notices off stderr, where a user expects at most our one line.

    torch.utils.cpp_extension logs "No CUDA runtime is found" when it is imported on a machine
    without CUDA (the CPU kernels are built with it).
    """
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def _stop_on_signals() -> dict[int, object]:
    """SIGTERM and SIGHUP unwind like Ctrl-C (cleaning up partial outputs), not kill at once.

    Returns the handlers they had, to put back. Only the main thread may set handlers.
    """
    previous: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            previous[signum] = signal.signal(signum, _raise_stopped)
    return previous


if __name__ == "__main__":
    raise SystemExit(main())
