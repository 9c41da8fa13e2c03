"""Errors that reach users as one clear line (the CLI prints them; OBS logs them)."""


class PartialStyleError(Exception):
    """Base class: the message is a complete, user-facing sentence."""


class ModelMissingError(PartialStyleError):
    """A model file is absent or corrupt; the message names the command that prepares it."""


def one_line(failure: BaseException | str, sentence: bool = False) -> str:
    """An error as the one line a user reads: its first non-empty line with the whitespace
    evened out, or the exception's type name when it has no message. `sentence` keeps only
    the first sentence (at most 200 characters), for libraries that explain at length."""
    text = next((line for line in str(failure).splitlines() if line.strip()), "")
    text = " ".join(text.split())
    if sentence:
        text = text.split(". ")[0].rstrip(".")[:200]
    if text or not isinstance(failure, BaseException):
        return text
    return type(failure).__name__
