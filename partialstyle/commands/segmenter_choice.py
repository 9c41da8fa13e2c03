"""Which segmenter the CLI's style options need, decided before anything is loaded.

A request that cannot be met is an error (class regions without YOLACT); an option that does
not matter is said in one warning line (YOLACT weights for a style that needs no mask), so
nothing the user asked for is dropped silently.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from partialstyle.errors import PartialStyleError

if TYPE_CHECKING:
    from partialstyle.plan import StylePlan

_SELFIE = ("selfie", "selfie-landscape")


def segmenter_for(plan: StylePlan, segmenter: str, weights: str | None) -> str:
    """The segmenter setting to run with: YOLACT when class regions need it (under "auto"
    too, which picks it by itself only on a GPU); else `segmenter` as given."""
    if plan.classes:
        region = f"--region class:{plan.classes[0][0]}"
        if segmenter in _SELFIE:
            raise PartialStyleError(
                f"{region} needs the YOLACT segmenter, not {segmenter}; "
                "use --segmenter yolact (or auto)"
            )
        _yolact_weights(weights, region)
        return "yolact"
    if weights is not None:
        if not plan.needs_mask:
            _warn(f"--weights {weights} is not used: one style everywhere needs no segmentation")
        elif segmenter in _SELFIE:
            _warn(f"--weights {weights} is not used: --segmenter {segmenter} is not YOLACT")
        else:
            _yolact_weights(weights, f"--weights {weights}")
    return segmenter


def _yolact_weights(weights: str | None, needed_by: str) -> Path:
    """The YOLACT checkpoint that will be used, or an error naming what needs it and the fix."""
    from partialstyle.weights import models_dir
    from partialstyle.weights.registry import YOLACT_FIX

    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise PartialStyleError(f"{needed_by}: YOLACT weights {path} do not exist")
        return path
    folder = models_dir() / "yolact"
    found = sorted(folder.glob("*.pth")) if folder.is_dir() else []
    if not found:
        raise PartialStyleError(
            f"{needed_by} needs YOLACT weights, and there are none; {YOLACT_FIX}"
        )
    return found[0]


def _warn(line: str) -> None:
    print(f"partialstyle: warning: {line}", file=sys.stderr)
