"""The live path's rules: how far a stylization may be carried, how often to segment.

A carried stylization drifts: flow is never exact, and what the styled frame did not see has
to be filled in. So a keyframe is used only within a bound; past it, the frame waits for the
style networks' next result or is styled in line. The live output therefore gives up frame
rate, never quality, when the networks cannot keep up.

The bound's numbers (measured on clips of a real photo sliding sideways, 640×360, person
region against styling every frame; see README "Live output"):
- motion: at most 11% of the frame height since the keyframe (90th percentile of the flow's
  length over the people; 40 pixels at 360 lines). Carrying further costs little: with the
  realtime player, raising it from 5% (18 pixels) through 8% to 11% moved the person's error
  against every-frame styling from 5.4 through 5.9 to 6.3 levels (median; p90 9.4, 11.1,
  11.0) at 8 px a frame and left 2 and 4 px a frame alike, while the frames shown within
  the quality bound went from 17 through 22 to 27 a second at 8 px a frame; in the real OBS
  at 8 px a frame, 8% gave 15-16 such frames a second and 11% gave 16-18, at 13-15 levels
  (p90). So the bound sits well inside the quality target.
- holes: at most 12% of the frame filled in (what the keyframe did not see, found by the
  forward-backward and region checks): fills are local means, flat patches, not strokes.
- what no bound removes: the style networks are not shift-invariant below their stride of
  4 pixels, so styling every frame of a person sliding 2 px a frame changes the strokes
  between frames. Even an exact carry (the previous frame's own styling, moved by the
  true motion) is about 15 levels off styling the frame itself at 2 px a frame, and about
  5 at 4 px (`partialstyle bench`, "exact carry"): the floor of this comparison.
- age: at most 1 s even when the flow sees little motion (lighting, slow drift, masks
  that change without motion): a backstop, not the working limit (motion is: at 2 px a
  frame it is reached in 9 frames); a frame identical to the keyframe's has no age limit.
"""

from __future__ import annotations

from dataclasses import dataclass

# Segmentation runs on every frame while a frame costs at most this share of the source's
# frame interval, else on every second or third frame, the masks moved by flow in between.
SEGMENT_BUDGET_SHARE = 0.5
MAX_SEGMENT_EVERY = 3


@dataclass(frozen=True)
class CarryBound:
    """How far a keyframe may be carried before the frame needs a fresh one.

    max_motion: share of the frame height things may have moved since the keyframe.
    max_filled: share of the frame that may have been filled in.
    max_seconds: age of the keyframe's frame (unless the frame is identical to it).
    max_wait: how long a frame past the bound waits for the style thread's run in progress
    before it is styled in line.
    """

    max_motion: float = 0.11
    max_filled: float = 0.12
    max_seconds: float = 1.0
    max_wait: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_motion", "max_filled", "max_seconds", "max_wait"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be above 0, got {getattr(self, name)}")

    def young_enough(self, age_seconds: float) -> bool:
        return age_seconds <= self.max_seconds

    def near_enough(self, motion: float) -> bool:
        return motion <= self.max_motion

    def whole_enough(self, filled: float) -> bool:
        return filled <= self.max_filled

    def half_used(self, age_seconds: float, motion: float, filled: float) -> bool:
        """Whether a carried frame is half-way to the bound in any of its terms: time to
        start the next style run, so that it ends before the bound is reached."""
        return (
            age_seconds > 0.5 * self.max_seconds
            or motion > 0.5 * self.max_motion
            or filled > 0.5 * self.max_filled
        )


def segment_every(current: int, mean_frame_seconds: float, frame_interval: float) -> int:
    """The next segmentation cadence: one step less often while frames cost more than
    SEGMENT_BUDGET_SHARE of the frame interval, one step more often once well below it."""
    budget = SEGMENT_BUDGET_SHARE * frame_interval
    if budget <= 0.0:
        return current
    if mean_frame_seconds > budget and current < MAX_SEGMENT_EVERY:
        return current + 1
    if mean_frame_seconds < 0.6 * budget and current > 1:
        return current - 1
    return current
