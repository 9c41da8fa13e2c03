"""In CI (CI=true) a skipped test is a failure unless its reason is on the list below.

A test that skips because a package, a model file or a program is missing would hide a broken
CI setup behind a green run; CI installs everything it can, so only what no CI machine here has
(an accelerator) may skip. conftest.py loads these hooks for every test run.
"""

from __future__ import annotations

import os

import pytest

# Substrings of skip reasons that CI cannot fix, each with why.
EXPECTED_SKIPS = {
    "needs a CUDA GPU": "CI machines have no accelerator",
    "needs an Apple GPU": "CI runs on Linux",
    "needs a CPU with AMX": "CI machines differ in CPU; AMD EPYC has no AMX",
}


def strict() -> bool:
    """Skips are checked when CI is set to a true value, as .ci/run and CI services do."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def is_expected(reason: str) -> bool:
    return any(allowed in reason for allowed in EXPECTED_SKIPS)


def _unexpected(report: pytest.CollectReport | pytest.TestReport) -> str | None:
    """The reason of a skip that CI should not have, else None (xfail is not a skip here)."""
    if not (strict() and report.skipped) or hasattr(report, "wasxfail"):
        return None
    reason = skip_reason(report)
    return None if is_expected(reason) else reason


_HINT = f"CI must install what it needs; only these may skip: {', '.join(EXPECTED_SKIPS)}"
_skipped_modules: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A test's unexpected skip becomes its failure."""
    outcome = yield
    report = outcome.get_result()
    reason = _unexpected(report)
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = f"unexpected skip in CI: {reason}\n{_HINT} (tests/skip_policy.py)"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """A whole file's skip (importorskip at import) fails the run at the end; failing the
    collection itself would stop every other test from running."""
    outcome = yield
    report = outcome.get_result()
    reason = _unexpected(report)
    if reason is not None:
        _skipped_modules.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter) -> None:
    for line in _skipped_modules:
        terminalreporter.write_line(f"FAILED (unexpected skip in CI) {line}", red=True)
    if _skipped_modules:
        terminalreporter.write_line(_HINT, red=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _skipped_modules and session.exitstatus == 0:
        session.exitstatus = 1
