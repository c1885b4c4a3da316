"""Shared test setup."""

from __future__ import annotations

from collections import Counter

import pytest
from sandbox_marks import MARKS, REQUIRE_FIXTURES

_RAN: dict[str, Counter[str]] = {name: Counter() for name in MARKS}


def pytest_configure(config: pytest.Config) -> None:
    for name, what in MARKS.items():
        config.addinivalue_line("markers", f"{name}: {what} (tests/sandbox_marks.py)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test whose requirement is missing skips with the reason, or fails under
    ``PLIP_REQUIRE_FIXTURES=1`` (CI)."""
    for name in MARKS:
        mark = item.get_closest_marker(name)
        missing = mark.kwargs.get("missing") if mark is not None else None
        if missing is None:
            continue
        if REQUIRE_FIXTURES:
            pytest.fail(f"PLIP_REQUIRE_FIXTURES=1 and {missing}", pytrace=False)
        pytest.skip(missing)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        for name in MARKS:
            if name in report.keywords:
                _RAN[name][report.outcome] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    """One line per requirement: how many of its tests passed, failed, skipped."""
    for name, what in MARKS.items():
        c = _RAN[name]
        if sum(c.values()):
            terminalreporter.write_line(
                f"{what}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
            )


@pytest.fixture(autouse=True)
def _fresh_execution_memo():
    """Each test runs generated programs itself (the scorer memoises runs in-process)."""
    from analysis import execution

    execution.execute_python.cache_clear()
    execution.execute_rust.cache_clear()
    yield
