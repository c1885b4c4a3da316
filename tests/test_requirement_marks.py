"""The requirement marks of ``sandbox_marks``: a missing PLIP-rs fixture or rustc skips its tests
with the reason and what to install, and fails them under ``PLIP_REQUIRE_FIXTURES=1`` (what
``.ci/run`` sets); a present one lets them run. Calls ``conftest``'s setup hook on a test item
that carries the mark, as pytest does."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import conftest
import pytest
import sandbox_marks
from _pytest.outcomes import Failed, Skipped


def _item(mark: pytest.MarkDecorator) -> SimpleNamespace:
    marks = {mark.mark.name: mark.mark}
    return SimpleNamespace(get_closest_marker=marks.get)


MISSING = [
    ("requires_plip_rs", "PLIP-rs fixture not present at /x (put a copy of shared/plip_rs ...)"),
    ("requires_rustc", "rustc not installed (sudo apt-get install rustc, or rustup: ...)"),
]


@pytest.mark.parametrize(("name", "missing"), MISSING)
def test_missing_requirement_skips_outside_ci_with_the_reason(monkeypatch, name, missing):
    monkeypatch.setattr(conftest, "REQUIRE_FIXTURES", False)
    with pytest.raises(Skipped) as err:
        conftest.pytest_runtest_setup(_item(getattr(pytest.mark, name)(missing=missing)))
    assert err.value.msg == missing


@pytest.mark.parametrize(("name", "missing"), MISSING)
def test_missing_requirement_fails_under_plip_require_fixtures(monkeypatch, name, missing):
    monkeypatch.setattr(conftest, "REQUIRE_FIXTURES", True)
    with pytest.raises(Failed) as err:
        conftest.pytest_runtest_setup(_item(getattr(pytest.mark, name)(missing=missing)))
    assert err.value.msg == f"PLIP_REQUIRE_FIXTURES=1 and {missing}"
    assert not err.value.pytrace  # one line, no traceback


@pytest.mark.parametrize("require", [False, True])
def test_present_requirement_runs(monkeypatch, require):
    monkeypatch.setattr(conftest, "REQUIRE_FIXTURES", require)
    for name in sandbox_marks.MARKS:
        assert conftest.pytest_runtest_setup(_item(getattr(pytest.mark, name))) is None


def test_fixture_dir_follows_plip_rs_dir_then_the_checkout_then_beside_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PLIP_RS_DIR", str(tmp_path))
    assert sandbox_marks.plip_rs_dir() == tmp_path
    monkeypatch.delenv("PLIP_RS_DIR")
    repo = Path(sandbox_marks.__file__).resolve().parents[1]
    inside = repo / "shared" / "plip_rs"
    beside = repo.parent / "shared" / "plip_rs"
    want = inside if (inside / sandbox_marks.FIXTURE_FILE).is_file() else beside
    assert sandbox_marks.plip_rs_dir() == want
