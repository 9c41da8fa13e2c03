"""The filter's processor: the core `Pipeline`, driven by the filter's settings dict.

It is created on the worker thread, so importing torch and loading the models never blocks
OBS. Settings are validated here as well; a bad value raises and the worker logs it once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from partialstyle.obs import block_triton
from partialstyle.obs.settings import to_pipeline


class PipelineProcessor:
    """Adapts `partialstyle.pipeline.Pipeline` to the worker's settings-dict interface."""

    def __init__(self, settings: dict[str, Any]):
        block_triton()
        from partialstyle.pipeline import Pipeline

        config, plan = to_pipeline(settings)
        self.pipeline = Pipeline(config, plan)
        self.pipeline.load()

    def configure(self, settings: dict[str, Any]) -> None:
        config, plan = to_pipeline(settings)
        self.pipeline.configure(config, plan)

    def process(self, frame: np.ndarray) -> np.ndarray:
        return self.pipeline.process(frame)
