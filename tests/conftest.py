"""Shared test setup."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_execution_memo():
    """Each test runs generated programs itself (the scorer memoises runs in-process)."""
    from analysis import execution

    execution.execute_python.cache_clear()
    execution.execute_rust.cache_clear()
    yield
