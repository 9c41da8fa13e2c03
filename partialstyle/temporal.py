"""The temporal stage of `Pipeline`: style morphs and the output stabilizer, and the rule
that ties them together.

Stabilizing holds the previous look where nothing moves, so it must not hold on to an old
style: it starts afresh when the plan changes and waits for morphs to end. (Live video's
propagation of a stylization across frames is `partialstyle.live`, which drives `Pipeline`.)
"""

from __future__ import annotations

import threading

import torch

from partialstyle.morph import StyleMorph
from partialstyle.plan import StylePlan
from partialstyle.stabilize import OutputStabilizer
from partialstyle.style.spec import StyleSpec


class TemporalStage:
    """Thread-safe: live video styles frames from two threads (see `partialstyle.live`), and
    only this state is shared between them, so the networks run outside any lock."""

    def __init__(self) -> None:
        self._morph = StyleMorph()
        self._stabilizer = OutputStabilizer()
        self._stabilized_plan: StylePlan | None = None
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._morph.reset()
            self._stabilizer.reset()

    def blend(
        self, region: str, spec: StyleSpec, now: float, duration: float
    ) -> list[tuple[StyleSpec, float]]:
        """The styles the region shows at `now` and their shares (two while morphing)."""
        with self._lock:
            return self._morph.blend(region, spec, now, duration)

    def morphing(self, now: float, duration: float) -> bool:
        """Whether a style change is still fading in at `now`."""
        with self._lock:
            return self._morph.in_progress(now, duration)

    def stabilize(
        self,
        small: torch.Tensor,
        layer: torch.Tensor,
        plan: StylePlan,
        now: float,
        duration: float,
        strength: float,
    ) -> torch.Tensor:
        """The style layer of frame `small`, held steady where the frame does not move."""
        with self._lock:
            if plan != self._stabilized_plan or self._morph.in_progress(now, duration):
                self._stabilizer.reset()
                self._stabilized_plan = plan
            return self._stabilizer(small, layer, strength)
