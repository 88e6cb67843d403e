"""Unit and integration tests share one module namespace (no packages): a basename used in both
folders makes `pytest` (the whole suite, as CI runs it) stop at collection."""
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_test_module_basename_is_used_in_both_folders() -> None:
    unit = {p.name for p in (TESTS / "unit").glob("*.py")}
    integration = {p.name for p in (TESTS / "integration").glob("*.py")}
    assert unit & integration == set()
