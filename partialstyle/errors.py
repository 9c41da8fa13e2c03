"""Errors that reach users as one clear line (the CLI prints them; OBS logs them)."""


class PartialStyleError(Exception):
    """Base class: the message is a complete, user-facing sentence."""


class ModelMissingError(PartialStyleError):
    """A model file is absent or corrupt; the message names the command that prepares it."""
