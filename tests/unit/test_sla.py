"""The monthly verdict document and the month argument."""
from __future__ import annotations

import pytest

from pipeline.sla import month_bounds, monthly_sql, verdict

THR = {"transactional": 1_800_000, "campaign": 43_200_000}


def test_compliance_is_within_over_total_and_met_against_the_target() -> None:
    doc = verdict("2026-10", [("transactional", 1000, 990, 10), ("campaign", 10, 9, 1)], THR)
    t, c = doc["classes"]["transactional"], doc["classes"]["campaign"]
    assert (t["compliance"], t["met"], t["threshold_ms"]) == (0.99, True, 1_800_000)
    assert (c["compliance"], c["met"]) == (0.9, False)
    assert doc["month"] == "2026-10"


def test_a_class_without_mail_is_reported_with_zero_counts() -> None:
    doc = verdict("2026-10", [], THR)
    assert doc["classes"]["campaign"] == {"total": 0, "within": 0, "delayed": 0, "compliance": 1.0,
                                          "target": 0.99, "threshold_ms": 43_200_000, "met": True}


def test_months_are_utc_calendar_months_including_december() -> None:
    start, end = month_bounds("2026-12")
    assert (start.isoformat(), end.isoformat()) == ("2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
    assert "2026-12-01 00:00:00" in monthly_sql("mailsla", "2026-12")


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "26-10", "2026-10-01", "", "oct"])
def test_a_malformed_month_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds(bad)
