"""The live path: every frame styled at once, from the newest stylization carried along.

`LiveStylizer` (stylizer.py) is the per-frame path and its scheduling; `policy` says how far
a stylization may be carried, `flow` and `carry` move it, `keyframe` holds
what is kept between frames, and `realtime` plays a clip at its own pace through it, as OBS
would (`partialstyle video --realtime`).
"""

from partialstyle.live.policy import CarryBound
from partialstyle.live.stylizer import LiveStylizer

__all__ = ["CarryBound", "LiveStylizer"]
