"""Test marks for code that needs the bubblewrap sandbox.

Where bwrap is missing the tests skip, except when ``PLIP_REQUIRE_SANDBOX=1`` (``.ci/run`` sets it
after installing bubblewrap): there a missing or broken sandbox fails them, so CI never skips.
"""

from __future__ import annotations

import os

import pytest

from analysis import sandbox

REQUIRED = os.environ.get("PLIP_REQUIRE_SANDBOX") == "1"

needs_sandbox = pytest.mark.skipif(
    not REQUIRED and not sandbox.available(),
    reason=f"no sandbox: {sandbox.unavailable_reason()}",
)
