"""partialstyle: restyle people and backgrounds of video with different neural art styles."""

__version__ = "0.1.0"
