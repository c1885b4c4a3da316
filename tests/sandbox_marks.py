"""Test marks for what some tests need from the machine: bubblewrap, rustc, the PLIP-rs fixture.

Where bwrap is missing the sandbox tests skip, except when ``PLIP_REQUIRE_SANDBOX=1`` (``.ci/run``
sets it after installing bubblewrap): there a missing or broken sandbox fails them.

Where ``rustc`` or the PLIP-rs fixture (``shared/plip_rs``) is missing, :data:`needs_rustc` and
:data:`needs_plip_rs` skip their tests with the reason and what to install, except when
``PLIP_REQUIRE_FIXTURES=1`` (``.ci/run`` sets it after installing rustc): there they fail with
the same line (``conftest.py`` turns the mark into the skip or the failure). So CI never skips
what it tests, and the end of the run counts the tests that ran under each mark.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analysis import sandbox
from analysis.execution import rustc

REQUIRED = os.environ.get("PLIP_REQUIRE_SANDBOX") == "1"
REQUIRE_FIXTURES = os.environ.get("PLIP_REQUIRE_FIXTURES") == "1"

needs_sandbox = pytest.mark.skipif(
    not REQUIRED and not sandbox.available(),
    reason=f"no sandbox: {sandbox.unavailable_reason()}",
)

REPO = Path(__file__).resolve().parents[1]
FIXTURE_FILE = "attention_samples_universal.json"


def plip_rs_dir() -> Path:
    """Where the PLIP-rs fixture corpus is: ``$PLIP_RS_DIR`` when set, else ``shared/plip_rs``
    inside the checkout, else ``../shared/plip_rs`` beside it (also when neither holds it)."""
    env = os.environ.get("PLIP_RS_DIR")
    if env:
        return Path(env)
    inside = REPO / "shared" / "plip_rs"
    return inside if (inside / FIXTURE_FILE).is_file() else REPO.parent / "shared" / "plip_rs"


PLIP_RS = plip_rs_dir()
# PLIP_TEST_HIDE_RUSTC=1 plays a machine without rustc (tests/test_requirement_marks.py).
RUSTC = None if os.environ.get("PLIP_TEST_HIDE_RUSTC") == "1" else rustc()

MARKS = {
    "requires_plip_rs": "PLIP-rs fixture tests",
    "requires_rustc": "rustc tests",
}


def _requirement(name: str, missing: str | None) -> pytest.MarkDecorator:
    """``name``'s mark, carrying ``missing`` (what is absent and how to install it) if any."""
    mark = getattr(pytest.mark, name)
    return mark(missing=missing) if missing else mark


needs_plip_rs = _requirement(
    "requires_plip_rs",
    None
    if (PLIP_RS / FIXTURE_FILE).is_file()
    else f"PLIP-rs fixture not present at {PLIP_RS} (put a copy of shared/plip_rs beside the "
    "checkout, at ../shared/plip_rs, or set PLIP_RS_DIR to it)",
)
needs_rustc = _requirement(
    "requires_rustc",
    None
    if RUSTC
    else "rustc not installed (sudo apt-get install rustc, or rustup: https://rustup.rs)",
)
