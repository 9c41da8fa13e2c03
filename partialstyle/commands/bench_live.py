"""What the live path trades: style carried by flow between style runs vs styling every frame.

On a clip of a real person swaying sideways (640×360, person and background in two styles,
360-line processing), for styling every frame and for `--style-every N`:
- cost per frame: frames that run the style networks and frames that only carry the style;
- difference from styling every frame (raw, and blurred so that brush strokes, which differ
  from run to run even where nothing moved, do not count);
- temporal consistency: the mean difference between consecutive output frames after the
  earlier one is moved along the input's optical flow (lower is steadier; the input's own
  figure is the floor).
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import torch

from partialstyle.config import PipelineConfig
from partialstyle.live import LiveStylizer
from partialstyle.live.carry import round_trip_valid
from partialstyle.live.flow import FlowEstimator, flow_gray, warp
from partialstyle.obs.sample_clip import sample_frame
from partialstyle.pipeline import Pipeline
from partialstyle.plan import StylePlan

LIVE_PLAN = StylePlan.from_specs("multistyle:watercolor-pop", "multistyle:starry-swirls")
CLIP_FRAMES = 32
SWAY = 60  # pixels either side: up to 6 pixels of motion per frame
_STRUCTURE_BLUR = 6.0


def moving_clip(frames: int = CLIP_FRAMES) -> list[np.ndarray]:
    return [
        sample_frame(640, 360, round(SWAY * math.sin(2 * math.pi * i / frames)))
        for i in range(frames)
    ]


def temporal_difference(outputs: list[np.ndarray], inputs: list[np.ndarray]) -> float:
    """Mean |output[k] − output[k−1] moved along the input's flow| where the flow holds."""
    flows, differences = FlowEstimator(), []
    for k in range(1, len(outputs)):
        now, before = flow_gray(inputs[k]), flow_gray(inputs[k - 1])
        backward, forward = flows(now, before), flows(before, now)
        valid = round_trip_valid(backward, forward).astype(np.float32)
        valid = cv2.resize(valid, outputs[k].shape[1::-1]) > 0.5
        moved = warp(outputs[k - 1], backward)
        difference = np.abs(outputs[k].astype(np.float32) - moved).mean(-1)
        differences.append(float(difference[valid].mean()))
    return round(float(np.mean(differences)), 2)


def _blurred(image: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(image.astype(np.float32), (0, 0), _STRUCTURE_BLUR)


def live_benchmark(device: torch.device, style_every: tuple[int, ...] = (2, 4, 8)) -> dict:
    clip = moving_clip()
    config = PipelineConfig(process_height=360, device=str(device))
    every = Pipeline(config, LIVE_PLAN)
    with torch.inference_mode():
        every.process(clip[0])  # warm-up
        every.reset()
        reference, seconds = [], []
        for frame in clip:
            started = time.perf_counter()
            reference.append(every.process(frame))
            seconds.append(time.perf_counter() - started)
    results = {
        "input_temporal_difference": temporal_difference(clip, clip),
        "every_frame": {
            "ms_per_frame": round(1000 * float(np.median(seconds)), 1),
            "temporal_difference": temporal_difference(reference, clip),
        },
    }
    for n in style_every:
        stylizer = LiveStylizer(Pipeline(config, LIVE_PLAN), style_every=n)
        outputs, styled, carried = [], [], []
        for index, frame in enumerate(clip):
            started = time.perf_counter()
            outputs.append(stylizer.process(frame))
            (styled if index % n == 0 else carried).append(time.perf_counter() - started)
        pairs = list(zip(outputs, reference, strict=True))
        results[f"style_every_{n}"] = {
            "ms_styled_frame": round(1000 * float(np.median(styled)), 1),
            "ms_carried_frame": round(1000 * float(np.median(carried)), 1),
            "ms_per_frame": round(1000 * float(np.mean(styled + carried)), 1),
            "difference_vs_every_frame": round(
                float(np.mean([np.abs(a.astype(np.float32) - b).mean() for a, b in pairs])), 2
            ),
            "structure_difference_vs_every_frame": round(
                float(np.mean([np.abs(_blurred(a) - _blurred(b)).mean() for a, b in pairs])), 2
            ),
            "temporal_difference": temporal_difference(outputs, clip),
        }
    return results


def print_live(results: dict) -> None:
    print(
        "\nlive path on a swaying person, 640x360 (temporal difference of the input itself: "
        f"{results['input_temporal_difference']})"
    )
    every = results["every_frame"]
    print(
        f"  {'every frame':16} {every['ms_per_frame']:7.1f} ms/frame"
        f"{'':49}temporal {every['temporal_difference']:6.2f}"
    )
    for name, row in results.items():
        if name.startswith("style_every_"):
            print(
                f"  {name:16} {row['ms_per_frame']:7.1f} ms/frame (styled "
                f"{row['ms_styled_frame']:.1f}, carried {row['ms_carried_frame']:.1f}), vs every "
                f"frame {row['difference_vs_every_frame']:5.2f} (structure "
                f"{row['structure_difference_vs_every_frame']:5.2f}), temporal "
                f"{row['temporal_difference']:6.2f}"
            )
