"""How hard the filter may work, from what OBS itself says about its frame timing.

The inference process styles at a low CPU priority, and every frame is carried along by
flow between style runs. What must not happen is OBS missing frames because the filter took
the time it needed. When OBS reports frames it rendered late (lagged) or had to skip, the
pause between two style runs doubles, up to half a second; the pause only holds while the
carried stylization is less than half-way to its bound (partialstyle.live.policy): motion
refreshes the style whatever the pause, since quality is not traded away. Once the pause is
at its longest and OBS still misses frames (several filters on software rendering, where
reading a frame back costs the render thread milliseconds), each filter also reads back
only every second frame. After a quiet while both relax again: first the frame stride, then
the pause, down to every frame and no pause.
"""

from __future__ import annotations

# The first pause when OBS starts missing frames, and the longest.
FIRST_PAUSE = 0.1
MAX_PAUSE = 0.5
# Seconds without a missed frame before the pause shrinks, and by how much.
QUIET_SECONDS = 5.0
SHRINK = 0.7
# From this pause on, missed frames also widen the frame stride, up to MAX_STRIDE.
STRIDE_FROM_PAUSE = MAX_PAUSE
MAX_STRIDE = 2


class StylePacer:
    """The pause between two style runs (seconds) and the frame stride, adapted to OBS's
    missed frames.

    `floor` is the user's cap (1 / max_fps), below which the pause never goes.
    """

    def __init__(self, floor: float = 0.0) -> None:
        self.floor = floor
        self.pause = floor
        self.stride = 1  # read back every n-th frame
        self._missed: int | None = None
        self._quiet = 0.0

    @property
    def holding_back(self) -> bool:
        """Whether OBS's missed frames have made the pacer back off: a pause above the
        user's cap, or not every frame read back."""
        return self.stride > 1 or self.pause > self.floor + 1e-9

    def describe(self) -> str | None:
        """How the pacer holds the filter back for OBS, in words; None when it does not."""
        if not self.holding_back:
            return None
        parts = []
        if self.pause > self.floor + 1e-9:
            parts.append(f"style runs at least {self.pause:.1f} s apart")
        if self.stride > 1:
            parts.append(f"only 1 in {self.stride} frames is sent for styling")
        return "OBS missed frames, so " + " and ".join(parts)

    def update(self, missed_total: int, elapsed: float) -> float:
        """Take OBS's running count of missed frames, `elapsed` seconds after the last call;
        return the pause to use now."""
        missed_now = 0 if self._missed is None else max(0, missed_total - self._missed)
        self._missed = missed_total
        if missed_now > 0:
            self._quiet = 0.0
            if self.pause >= STRIDE_FROM_PAUSE:
                self.stride = min(MAX_STRIDE, self.stride + 1)
            self.pause = min(MAX_PAUSE, max(FIRST_PAUSE, 2.0 * self.pause))
        else:
            self._quiet += elapsed
            if self._quiet >= QUIET_SECONDS:
                self._quiet = 0.0
                if self.stride > 1:
                    self.stride -= 1
                else:
                    self.pause = self.pause * SHRINK if self.pause * SHRINK >= 0.02 else 0.0
        self.pause = max(self.pause, self.floor)
        return self.pause
