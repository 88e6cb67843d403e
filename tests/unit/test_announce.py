"""The announce rule (pipeline.core.faults.changes): what the live monitor tells the table, the topic
and the webhook each round. A fault that opens and resolves within one round is not announced,
so a replay of old data into a live worker pages no one (issue #10)."""
from __future__ import annotations

from typing import Any

from pipeline.core.faults import MINUTE, changes, fault_id
from pipeline.core.policy import load
from pipeline.store.reports import find_faults

P = load()
T0 = 1_790_000_000_000 // MINUTE * MINUTE


def fault(opened: int, resolved: int | None, peak: float = 0.3, **kw: Any) -> dict[str, Any]:
    return {"kind": "semi_critical", "severity": "semi_critical", "message_class": "transactional",
            "opened_at": T0 + opened * MINUTE, "resolved_at": None if resolved is None else T0 + resolved * MINUTE,
            "peak_share": peak, "delayed": 30, "eligible": 100, **kw}


def announced(stored: dict[str, dict[str, Any]], found: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Apply one round's changes to `stored` as the monitor does; (event, opened minute) per change."""
    out = changes(stored, found)
    for _event, f in out:
        stored[fault_id(f)] = {"peak_share": f["peak_share"], "resolved_at": f["resolved_at"]}
    return [(event, (int(f["opened_at"]) - T0) // MINUTE) for event, f in out]


def test_a_fault_opened_and_resolved_within_one_round_is_not_announced() -> None:
    stored: dict[str, dict[str, Any]] = {}
    assert announced(stored, [fault(10, 40)]) == []
    assert stored == {}
    assert announced(stored, [fault(10, 40)]) == []  # nor in any later round


def test_a_fault_seen_open_is_announced_opened_then_resolved_in_a_later_round() -> None:
    stored: dict[str, dict[str, Any]] = {}
    assert announced(stored, [fault(10, None)]) == [("opened", 10)]
    assert announced(stored, [fault(10, None, peak=0.5)]) == [("updated", 10)]
    assert announced(stored, [fault(10, 60, peak=0.5)]) == [("resolved", 10)]
    assert announced(stored, [fault(10, 60, peak=0.5)]) == []


def test_burn_rate_alerts_follow_the_same_rule() -> None:
    stored: dict[str, dict[str, Any]] = {}
    flap = fault(5, 6, kind="burn_rate", severity="page", factor=14.4)
    still = fault(20, None, kind="burn_rate", severity="page", factor=14.4)
    assert announced(stored, [flap, still]) == [("opened", 20)]


def test_replaying_a_month_of_old_incidents_announces_only_what_is_still_open() -> None:
    """Verdicts of a past incident and of one still going, as one round sees them after a replay."""
    rows = []
    for m in range(0, 600):
        bad = 100 <= m < 160 or m >= 560
        rows.append(("transactional", T0 + m * MINUTE, 30 if bad else 0, 200))
    found = find_faults(P, rows)
    assert [f["resolved_at"] is None for f in found if f["kind"] == "semi_critical"] == [False, True]
    events = changes({}, found)
    assert events and all(e == "opened" and f["resolved_at"] is None for e, f in events)
