"""Style morphing: when a region's style changes, fade from the old look to the new one."""

from __future__ import annotations

from dataclasses import dataclass

from partialstyle.style.spec import StyleSpec


@dataclass(frozen=True)
class _Transition:
    old: StyleSpec
    new: StyleSpec
    start: float


def _smoothstep(t: float) -> float:
    """Ease in and out, so a morph starts and lands gently."""
    return t * t * (3.0 - 2.0 * t)


class StyleMorph:
    """Remembers each region's style and when it last changed.

    `blend` answers which styles a region shows at time `now` and with what weights: one
    style normally, two (old, new) while a change is under way. A change that arrives during
    a morph starts from the style that was being morphed to.
    """

    def __init__(self) -> None:
        self._transitions: dict[str, _Transition] = {}

    def reset(self) -> None:
        self._transitions.clear()

    def blend(
        self, region: str, spec: StyleSpec, now: float, duration: float
    ) -> list[tuple[StyleSpec, float]]:
        current = self._transitions.get(region)
        if current is None:
            self._transitions[region] = _Transition(spec, spec, now - duration)
            return [(spec, 1.0)]
        if current.new != spec:
            if now < current.start:
                # A frame older than the newest change (live video styles frames from two
                # threads): it shows its own style and does not undo the change.
                return [(spec, 1.0)]
            current = _Transition(current.new, spec, now)
            self._transitions[region] = current
        if duration <= 0 or now - current.start >= duration or current.old == current.new:
            return [(spec, 1.0)]
        progress = _smoothstep(max(0.0, (now - current.start) / duration))
        return [(current.old, 1.0 - progress), (current.new, progress)]

    def in_progress(self, now: float, duration: float) -> bool:
        """True while any region is still fading from one style to another."""
        return any(
            transition.old != transition.new and now - transition.start < duration
            for transition in self._transitions.values()
        )
