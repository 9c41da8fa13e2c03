"""Errors reach users as one line (`errors.one_line`)."""

from __future__ import annotations

import pytest

from partialstyle.errors import one_line


@pytest.mark.parametrize(
    "failure, line",
    [
        (ValueError("first\nsecond"), "first"),
        (ValueError("\n  spaced   out \n"), "spaced out"),
        (KeyError(), "KeyError"),
        ("Traceback:\n  more", "Traceback:"),
    ],
)
def test_an_error_is_one_line(failure, line):
    assert one_line(failure) == line


def test_an_error_can_be_cut_to_its_first_sentence():
    failure = RuntimeError("Weights only load failed. Re-running with weights_only=False.\nx")
    assert one_line(failure, sentence=True) == "Weights only load failed"
    assert len(one_line(RuntimeError("x" * 500), sentence=True)) == 200
