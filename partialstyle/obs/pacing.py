"""How often the style networks may run, from what OBS itself says about its frame timing.

The inference process styles as fast as it can at a low CPU priority, and every frame is
carried along by flow in between, so the output stays live whatever the style rate. What
must not happen is OBS missing frames because the networks took the CPU it needed: when
OBS reports frames it rendered late (lagged) or had to skip, the pause between two style
runs doubles; after a quiet while it shrinks again, down to none.
"""

from __future__ import annotations

# The first pause when OBS starts missing frames, and the longest.
FIRST_PAUSE = 0.1
MAX_PAUSE = 2.0
# Seconds without a missed frame before the pause shrinks, and by how much.
QUIET_SECONDS = 5.0
SHRINK = 0.7


class StylePacer:
    """The pause between two style runs (seconds), adapted to OBS's missed frames.

    `floor` is the user's cap (1 / max_fps), below which the pause never goes.
    """

    def __init__(self, floor: float = 0.0) -> None:
        self.floor = floor
        self.pause = floor
        self._missed: int | None = None
        self._quiet = 0.0

    def update(self, missed_total: int, elapsed: float) -> float:
        """Take OBS's running count of missed frames, `elapsed` seconds after the last call;
        return the pause to use now."""
        missed_now = 0 if self._missed is None else max(0, missed_total - self._missed)
        self._missed = missed_total
        if missed_now > 0:
            self._quiet = 0.0
            self.pause = min(MAX_PAUSE, max(FIRST_PAUSE, 2.0 * self.pause))
        else:
            self._quiet += elapsed
            if self._quiet >= QUIET_SECONDS:
                self._quiet = 0.0
                self.pause = self.pause * SHRINK if self.pause * SHRINK >= 0.02 else 0.0
        self.pause = max(self.pause, self.floor)
        return self.pause
