"""The monthly verdict document and the month argument."""
from __future__ import annotations

import pytest

from pipeline.core.sla import EXCLUSION_REASONS, month_bounds, monthly_sql, verdict

THR = {"transactional": 1_800_000, "campaign": 43_200_000}


def row(cls: str, total: int, within: int, delayed: int, account: str = "", **excluded: int) -> tuple:
    return (account, cls, total, *(excluded.get(r, 0) for r in EXCLUSION_REASONS), within, delayed)


def test_compliance_is_within_over_eligible_and_met_against_the_target() -> None:
    doc = verdict("2026-10", [row("transactional", 1010, 990, 10, low_priority=7, maintenance=3),
                              row("campaign", 10, 9, 1)], THR)
    t, c = doc["classes"]["transactional"], doc["classes"]["campaign"]
    assert (t["eligible"], t["compliance"], t["met"], t["threshold_ms"]) == (1000, 0.99, True, 1_800_000)
    assert t["excluded"] == {"low_priority": 7, "client_error": 0, "maintenance": 3, "introductory_period": 0,
                             "rate_limited": 0, "volume_surge": 0}
    assert (c["compliance"], c["met"]) == (0.9, False)
    assert doc["month"] == "2026-10"


def test_the_budget_is_the_delayed_mail_the_month_can_still_take() -> None:
    t = verdict("2026-10", [row("transactional", 1000, 996, 4)], THR)["classes"]["transactional"]
    assert t["budget_remaining"] == 6  # 1% of 1000 = 10 allowed, 4 used
    t = verdict("2026-10", [row("transactional", 100, 80, 20)], THR)["classes"]["transactional"]
    assert t["budget_remaining"] == -19


def test_a_class_without_mail_is_reported_with_zero_counts() -> None:
    doc = verdict("2026-10", [], THR)
    assert doc["classes"]["campaign"] == {"total": 0, "excluded": {r: 0 for r in EXCLUSION_REASONS}, "eligible": 0,
                                          "within": 0, "delayed": 0, "compliance": 1.0, "target": 0.99,
                                          "threshold_ms": 43_200_000, "met": True, "budget_remaining": 0}


def test_by_account_gives_each_account_its_own_classes_and_the_totals() -> None:
    doc = verdict("2026-10", [row("transactional", 10, 9, 1, "a"), row("transactional", 5, 4, 0, "b", client_error=1)],
                  THR, by_account=True)
    assert doc["classes"]["transactional"]["total"] == 15 and doc["classes"]["transactional"]["eligible"] == 14
    assert doc["accounts"]["b"]["classes"]["transactional"]["compliance"] == 1.0
    assert doc["accounts"]["a"]["classes"]["campaign"]["total"] == 0


def test_one_account_is_quoted_safely_in_the_query() -> None:
    sql = monthly_sql("mailsla", "2026-12", account="x' OR 1=1 --")
    assert "account_id = 'x\\' OR 1=1 --'" in sql and "sla_monthly_by_account" in sql
    assert "month = '2026-12'" in monthly_sql("mailsla", "2026-12")


def test_months_are_calendar_months_including_december() -> None:
    start, end = month_bounds("2026-12")
    assert (start.isoformat(), end.isoformat()) == ("2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00")


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "26-10", "2026-10-01", "", "oct"])
def test_a_malformed_month_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds(bad)
