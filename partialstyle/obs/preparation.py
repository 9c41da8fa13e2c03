"""What a filter waits for before its frames can be styled, and when to stop drawing styles.

- The models loading (importing torch, reading the networks): seconds, every OBS start.
- The fused style kernel being compiled (`partialstyle.style.kernel_dir`): a minute or two,
  once, when install.sh could not do it. Meanwhile the filter sends no frames, so the
  compiler gets the CPU, and the source shows unstyled.
- The style networks not running for a long while (a CPU taken by something else): every
  frame would carry one old stylization further along, and the picture would smear. The
  filter shows the source unstyled until the networks catch up.

Each start and end is said once in the log (through the Script Log), with how long it took.
Nothing here talks to libobs; the filter's report loop calls `follow` once a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from partialstyle.style import kernel_dir

# The newest frame may carry a stylization at most this old (seconds); older, it is not drawn.
STALE_STYLE_SECONDS = 10.0


@dataclass
class Preparation:
    """One filter's view of what it is waiting for; `follow` updates it."""

    environment: Path | None  # the project environment, where the kernel is built
    report: Callable[[str], None]  # one line for the log (the filter adds its name)
    created: float
    building: float | None = None  # seconds a kernel build has been running
    loading: bool = True
    stale_style: float | None = None  # age (seconds) of a stylization too old to draw
    _since: dict[str, float] = field(default_factory=dict)

    @property
    def waiting(self) -> bool:
        """Whether the filter should show the source unstyled and send no frames."""
        return self.building is not None

    def follow(
        self,
        now: float,
        state: str,
        keyframe_age: float | None,
        frame_interval: float,
        building: float | None = None,
    ) -> None:
        """Take the worker's state, the newest result's keyframe age (in OBS's frames) and the
        time between two frames sent; look for a kernel build unless `building` says (tests)."""
        if building is None and self.environment is not None:
            building = kernel_dir.build_running(self.environment)
        if building is not None and self.building is None:
            self._since["build"] = now - building
            self.report(
                f"preparing the style kernel for this CPU, once per installation "
                f"({kernel_dir.BUILD_TAKES}); the source shows unstyled meanwhile "
                "(install/install.sh does this ahead of time)"
            )
        elif building is None and self.building is not None:
            took = now - self._since.pop("build", now)
            self.report(f"style kernel ready after {took:.0f} s; styling again")
        self.building = building

        if self.loading and state != "loading":
            self.loading = False
            self.report(f"torch and the models loaded in {now - self.created:.0f} s")

        age = keyframe_age * frame_interval if keyframe_age is not None else None
        stale = age if age is not None and age > STALE_STYLE_SECONDS else None
        if stale is not None and self.stale_style is None:
            self.report(
                f"the style networks have not run for {stale:.0f} s (the CPU is "
                "busy); showing the source unstyled until they catch up"
            )
        elif stale is None and self.stale_style is not None:
            self.report("the style networks caught up; styling again")
        self.stale_style = stale
