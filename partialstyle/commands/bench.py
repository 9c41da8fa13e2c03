"""`partialstyle bench`: the speed of every stage on this machine, as one run's numbers.

Contenders are timed interleaved (A, B, C, A, B, C, …) and summarised by the median, so a
busy machine slows them alike and the ratios between them stay meaningful.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from partialstyle.commands.bench_live import live_benchmark
from partialstyle.commands.bench_machine import machine_peak, style_network_gflop
from partialstyle.commands.bench_networks import network_benchmarks
from partialstyle.commands.bench_report import print_results
from partialstyle.config import LIVE, PipelineConfig
from partialstyle.device import keep_freed_memory, resolve_device, set_threads
from partialstyle.io import read_image
from partialstyle.pipeline import Pipeline
from partialstyle.plan import StylePlan
from partialstyle.style import fused_norm
from partialstyle.weights.model_cache import load_model

SIZES = ((360, 640), (720, 1280))
ASTRONAUT = Path(__file__).parents[1] / "data" / "astronaut.jpg"  # the benchmarks' person
# Per contender and round (see time_interleaved): a pause for the previous contender's
# spinning worker threads to stop, untimed calls for this long (at least one), then this many
# timed calls.
_SETTLE_SECONDS = 0.05
_WARM_SECONDS = 0.1
_TIMED_CALLS = 2
_PEAK_MEMORY_PROBE = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "print(usage.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)
BENCH_PLAN = StylePlan.from_specs("multistyle:starry-swirls", "multistyle:mosaic")


def time_interleaved(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds per call for each contender, as it runs in a stream.

    Each round runs every contender in turn, the order rotating every round, each as a burst:
    after a short pause (the previous contender's worker threads may still be spinning),
    untimed calls for _WARM_SECONDS, then _TIMED_CALLS timed calls back to back, as a video or
    the live style thread runs them (the matrix-multiply peak is the best of back-to-back
    calls too). Single calls right after the pause (the earlier method) timed the core waking
    up as well: the 26-style network took 1.6-1.9x as long after 50 ms idle on the AMX
    machine (19-27 against 12-15 ms), and still 1.1-1.2x after one untimed call.
    """
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(_SETTLE_SECONDS)
            warm_until = time.perf_counter() + _WARM_SECONDS
            calls[name]()
            while time.perf_counter() < warm_until:
                calls[name]()
            for _ in range(_TIMED_CALLS):
                start = time.perf_counter()
                calls[name]()
                samples[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(values) for name, values in samples.items()}


def webcam_frame(height: int, width: int, photo: np.ndarray | None = None) -> np.ndarray:
    """A webcam-like frame: a real portrait centred, background extended by reflection."""
    if photo is None:
        photo = read_image(ASTRONAUT)
    side = min(height, width)
    person = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    pad_x, pad_y = (width - side) // 2, (height - side) // 2
    padding = ((pad_y, height - side - pad_y), (pad_x, width - side - pad_x), (0, 0))
    return np.ascontiguousarray(np.pad(person, padding, mode="reflect"))


def _onnxruntime_style(threads: int) -> Callable[[np.ndarray], object] | None:
    """The original ONNX style network under onnxruntime, the reference we must beat."""
    try:
        import onnxruntime
    except ImportError:
        return None
    from partialstyle.weights.prepare import source_file

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(source_file("multistyle26")), options, providers=["CPUExecutionProvider"]
    )
    weights = np.zeros(26, np.float32)
    weights[19] = 1.0
    return lambda image: session.run(None, {"image": image, "style_weights": weights})


def stage_benchmarks(device: torch.device, repeats: int, sizes=SIZES) -> dict:
    from partialstyle.segment.selfie import segment_person

    threads = torch.get_num_threads()
    network = load_model("multistyle26", device)
    segmenter = load_model("selfie-landscape", device)
    run_onnx = _onnxruntime_style(threads) if device.type == "cpu" else None
    one = torch.zeros(1, 26, device=device)
    one[0, 19] = 1.0
    two = torch.zeros(2, 26, device=device)
    two[0, 25], two[1, 19] = 1.0, 1.0
    results = {}
    for height, width in sizes:
        frame = webcam_frame(height, width)
        rgb = torch.from_numpy(frame).to(device)
        image = rgb.permute(2, 0, 1)[None].float().div(255.0)
        pipeline = Pipeline(PipelineConfig(process_height=height, device=str(device)), BENCH_PLAN)
        # The real person mask of the frame, so the two-region pass sees a real region shape.
        person = torch.from_numpy(pipeline.person_mask(frame)).to(device)
        masks = torch.stack([1.0 - person, person])[None]
        calls = {
            "segmentation": lambda rgb=rgb, size=(height, width): segment_person(
                segmenter, rgb, size
            ),
            "style_1_region": lambda image=image: network(image, one),
            "style_2_regions": lambda image=image, masks=masks: network(image, two, masks),
            "pipeline": lambda pipeline=pipeline, frame=frame: pipeline.process(frame),
        }
        if run_onnx is not None:
            array = image.cpu().numpy()
            calls["onnxruntime_style"] = lambda array=array: run_onnx(array)
        with torch.inference_mode():
            timings = time_interleaved(calls, repeats)
        row = {
            name: {"ms": round(ms, 1), "fps": round(1000.0 / ms, 2)} for name, ms in timings.items()
        }
        if "onnxruntime_style" in timings:
            row["torch_vs_onnxruntime_throughput"] = round(
                timings["onnxruntime_style"] / timings["style_1_region"], 3
            )
        row["two_vs_one_region_speed"] = round(
            timings["style_1_region"] / timings["style_2_regions"], 3
        )
        # The pipeline runs the two-region pass once a frame: the rest (segmentation, mask
        # refinement, compositing) as a share of it (issue 17 caps it at 0.3 at 640x360),
        # against the network's own call within each frame, and against the pass timed alone
        # (within a frame the network runs after the analysis has filled the caches, slower).
        with torch.inference_mode():
            row["outside_network_vs_network"] = round(
                outside_network_share(pipeline, frame, network, 4 * repeats), 3
            )
        row["pipeline_minus_network_vs_network"] = round(
            (timings["pipeline"] - timings["style_2_regions"]) / timings["style_2_regions"], 3
        )
        gflop = style_network_gflop(height, width)
        row["style_network_gflop"] = round(gflop, 2)
        row["style_1_region_gflops_per_s"] = round(gflop / timings["style_1_region"] * 1000, 1)
        results[f"{width}x{height}"] = row
    return results


def outside_network_share(
    pipeline: Pipeline, frame: np.ndarray, network: torch.nn.Module, frames: int
) -> float:
    """The pipeline's time outside its style network's calls over their time, median over
    `frames` frames back to back (after as many untimed): each frame's network time is what
    forward hooks on the network measure within it."""
    spent = []
    started = []
    before = network.register_forward_pre_hook(lambda *_: started.append(time.perf_counter()))
    after = network.register_forward_hook(
        lambda *_: spent.append(time.perf_counter() - started.pop())
    )
    outside, inside = [], []
    try:
        for index in range(2 * frames):
            spent.clear()
            start = time.perf_counter()
            pipeline.process(frame)
            total = time.perf_counter() - start
            if index >= frames:
                inside.append(sum(spent))
                outside.append(total - sum(spent))
    finally:
        before.remove()
        after.remove()
    return statistics.median(outside) / statistics.median(inside)


def preset_benchmarks(device: torch.device, repeats: int, photos: list[np.ndarray]) -> dict:
    """The pipeline on a 1280×720 webcam frame: 360-line processing vs the `live` preset,
    and how far the live result is from full processing (mean abs difference, 0..255)."""
    frame = webcam_frame(720, 1280)
    standard = Pipeline(PipelineConfig(process_height=360, device=str(device)), BENCH_PLAN)
    live = Pipeline(_with_device(LIVE, device), BENCH_PLAN)
    with torch.inference_mode():
        timings = time_interleaved(
            {
                "process_height_360": lambda: standard.process(frame),
                "live": lambda: live.process(frame),
            },
            repeats,
        )
    full = Pipeline(PipelineConfig(process_height=720, device=str(device)), BENCH_PLAN)
    differences = {}
    for photo in photos:
        test_frame = webcam_frame(720, 1280, photo)
        reference = full.process(test_frame).astype(np.float32)
        for name, pipeline in (("process_height_360", standard), ("live", live)):
            pipeline.reset()
            difference = np.abs(pipeline.process(test_frame) - reference).mean()
            differences.setdefault(name, []).append(float(difference))
    return {
        name: {
            "ms": round(ms, 1),
            "fps": round(1000.0 / ms, 2),
            "mean_abs_difference_vs_720": round(statistics.mean(differences[name]), 2),
        }
        for name, ms in timings.items()
    }


def frame_size_benchmark(device: torch.device, repeats: int) -> dict:
    """The pipeline at 360-line processing on a 1280×720 and a 3840×2160 frame: the networks
    cost the same, so the ratio is what the full-resolution passes add (target ≤ 2)."""
    frames = {"1280x720": webcam_frame(720, 1280), "3840x2160": webcam_frame(2160, 3840)}
    config = PipelineConfig(process_height=360, device=str(device))
    pipelines = {name: Pipeline(config, BENCH_PLAN) for name in frames}
    with torch.inference_mode():
        timings = time_interleaved(
            {name: lambda n=name: pipelines[n].process(frames[n]) for name in frames}, repeats
        )
    results = {
        name: {"ms": round(ms, 1), "fps": round(1000.0 / ms, 2)} for name, ms in timings.items()
    }
    results["ratio_3840x2160_vs_1280x720"] = round(timings["3840x2160"] / timings["1280x720"], 3)
    return results


def style_kind_benchmarks(device: torch.device, repeats: int) -> dict:
    """Whole-frame cost of each kind of style at 640×360 processing.

    Each kind times its own sample (`StyleKind.sample`): Johnson networks are timed with the
    fetched ones when present, otherwise with a network of the same architecture and random
    weights (the arithmetic, and so the time, is the same).
    """
    from partialstyle.style.kinds import KINDS

    frame = webcam_frame(360, 640)
    calls, notes = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        picture = Path(scratch) / "style.png"
        mirrored = np.ascontiguousarray(frame[:, ::-1])
        cv2.imwrite(str(picture), cv2.cvtColor(mirrored, cv2.COLOR_RGB2BGR))
        config = PipelineConfig(device=str(device))
        for kind in KINDS:
            sample = kind.sample(Path(scratch), str(picture))
            if sample is None:
                continue
            spec, notes[kind.name] = sample
            pipeline = Pipeline(config, StylePlan.from_specs(spec, spec))
            calls[kind.name] = lambda p=pipeline: p.process(frame)
        with torch.inference_mode():
            timings = time_interleaved(calls, repeats)
    results = {
        kind: {"ms": round(ms, 1), "fps": round(1000.0 / ms, 2)} for kind, ms in timings.items()
    }
    for kind, note in notes.items():
        if note:
            results[kind]["weights"] = note
    return results


def yolact_benchmarks(device: torch.device, repeats: int) -> dict:
    """YOLACT at 550 with ResNet-50 and ResNet-101 on a 640×360 frame.

    Uses the official weights when they are in models/yolact/; otherwise the same network with
    random weights, which costs the same arithmetic (timing only; denormals flushed so random
    values do not slow the CPU down).
    """
    from partialstyle.segment.yolact import CONFIGS, Yolact, YolactSegmenter
    from partialstyle.weights.files import models_dir
    from partialstyle.weights.load import load_weights

    frame = torch.from_numpy(webcam_frame(360, 640)).to(device)
    segmenters, sources = {}, {}
    for name in ("yolact_resnet50", "yolact_base"):
        found = sorted((models_dir() / "yolact").glob(f"{name}_*.pth"))
        if found:
            segmenters[name] = YolactSegmenter(load_weights("yolact", found[0]), device)
            sources[name] = "official weights"
        else:
            torch.manual_seed(0)
            segmenters[name] = YolactSegmenter(Yolact(CONFIGS[name]), device)
            sources[name] = "random weights (timing only)"
    previous = torch.set_flush_denormal(True)
    try:
        with torch.inference_mode():
            timings = time_interleaved(
                {name: lambda s=seg: s.detect(frame) for name, seg in segmenters.items()},
                max(1, repeats // 2),
            )
    finally:
        torch.set_flush_denormal(previous)
    return {
        name: {"ms": round(ms, 1), "fps": round(1000.0 / ms, 2), "weights": sources[name]}
        for name, ms in timings.items()
    }


def per_person_benchmark(device: torch.device, repeats: int) -> dict:
    """The pipeline on a 1280×720 frame of two people, each in their own style, vs one style."""
    person = read_image(ASTRONAUT)
    half = webcam_frame(720, 640, person)
    frame = np.ascontiguousarray(np.hstack([half, half]))
    config = PipelineConfig(process_height=360, device=str(device))
    one = Pipeline(config, BENCH_PLAN)
    per_person = Pipeline(
        config,
        StylePlan.from_regions(
            {**BENCH_PLAN.regions(), "person:2": StylePlan.from_specs("multistyle:20").person}
        ),
    )
    with torch.inference_mode():
        timings = time_interleaved(
            {
                "one_person_style": lambda: one.process(frame),
                "per_person_styles": lambda: per_person.process(frame),
            },
            repeats,
        )
    return {
        name: {"ms": round(ms, 1), "fps": round(1000.0 / ms, 2)} for name, ms in timings.items()
    }


def flicker_benchmark(device: torch.device, frames: int = 12) -> dict:
    """Mean frame-to-frame difference (0..255) of the output on a static clip with sensor-like
    noise, without and with output stabilization."""
    rng = np.random.default_rng(0)
    still = webcam_frame(360, 640)
    clip = [
        np.clip(still + rng.normal(0.0, 3.0, still.shape), 0, 255).astype(np.uint8)
        for _ in range(frames)
    ]
    results = {"input": _mean_frame_difference(clip)}
    for stabilize in (0.0, 0.8):
        config = PipelineConfig(process_height=360, stabilize=stabilize, device=str(device))
        pipeline = Pipeline(config, BENCH_PLAN)
        with torch.inference_mode():
            outputs = [pipeline.process(frame) for frame in clip]
        results[f"stabilize_{stabilize}"] = _mean_frame_difference(outputs)
    return results


def _mean_frame_difference(frames: list[np.ndarray]) -> float:
    pairs = zip(frames[:-1], frames[1:], strict=True)
    return round(float(np.mean([np.abs(b.astype(np.float32) - a).mean() for a, b in pairs])), 3)


def _with_device(config: PipelineConfig, device: torch.device) -> PipelineConfig:
    from dataclasses import replace

    return replace(config, device=str(device))


def video_peak_memory_mb(frames: int = 45) -> float:
    """Peak resident memory of `partialstyle video` on a generated 720p clip, in MB."""
    frame = webcam_frame(720, 1280)
    with tempfile.TemporaryDirectory() as scratch:
        clip, out = Path(scratch) / "clip.mp4", Path(scratch) / "out.mp4"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (1280, 720))
        for index in range(frames):
            writer.write(cv2.cvtColor(np.roll(frame, 4 * index, axis=1), cv2.COLOR_RGB2BGR))
        writer.release()
        command = [sys.executable, "-m", "partialstyle", "video", str(clip), str(out), "--quiet"]
        command += ["--person-style", "multistyle:19", "--background-style", "multistyle:25"]
        # Linux counts a process's memory at fork towards its peak, and this process is large
        # by now; a small Python in between starts the command and reports only its peak.
        result = subprocess.run(
            [sys.executable, "-c", _PEAK_MEMORY_PROBE, *command],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"partialstyle video failed: {result.stderr[-300:]}")
    # ru_maxrss is in kilobytes on Linux.
    return int(result.stdout.split()[-1]) / 1024.0


def _thread_counts() -> tuple[int, ...]:
    """One thread (OBS's default) and all of torch's, side by side."""
    return tuple(sorted({1, torch.get_num_threads()}))


def run_benchmarks(
    repeats: int = 5, threads: int | None = None, quick: bool = False, device: str = "auto"
) -> dict:
    set_threads(threads)
    torch_device = resolve_device(device)
    if torch_device.type == "cpu":
        keep_freed_memory()  # as every pipeline does, also for the networks timed alone
    fused_norm.kernels(wait=True)  # time the kernels every run will use, not the build
    photos = [read_image(ASTRONAUT)]
    try:
        import skimage.data

        photos.append(np.repeat(skimage.data.camera()[..., None], 3, axis=2))
    except ImportError:
        pass
    repeats = 2 if quick else repeats
    print(
        f"device {torch_device}, {torch.get_num_threads()} threads; each time the median of "
        f"{repeats} rounds of {_TIMED_CALLS} warm calls"
    )
    network = load_model("multistyle26", torch_device)
    results = {
        "device": str(torch_device),
        "threads": torch.get_num_threads(),
        "style_network_precision": str(network.compute_dtype).removeprefix("torch."),
        "fused_norm_kernel": fused_norm.status(),
        "machine_peak_gflops": machine_peak(torch_device),
        "networks_640x360": network_benchmarks(
            torch_device, repeats, webcam_frame(360, 640), _thread_counts()
        ),
        "stages": stage_benchmarks(torch_device, repeats, SIZES[:1] if quick else SIZES),
        "presets_1280x720": preset_benchmarks(torch_device, repeats, photos),
        "frame_sizes_at_360": frame_size_benchmark(torch_device, repeats),
        "style_kinds_640x360": style_kind_benchmarks(torch_device, repeats),
        "flicker_static_clip": flicker_benchmark(torch_device),
        "per_person_1280x720": per_person_benchmark(torch_device, repeats),
        "live_640x360": live_benchmark(torch_device, quick),
    }
    if not quick:
        results["yolact_550_on_640x360"] = yolact_benchmarks(torch_device, repeats)
    if not quick:
        results["video_720p_peak_memory_mb"] = round(video_peak_memory_mb(), 1)
    print_results(results)
    return results
