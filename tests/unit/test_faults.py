"""The fault rule and burn-rate tiers, driven by a fake event-time clock."""
from __future__ import annotations

import pytest

from pipeline.core.faults import FaultState, Verdicts, burn_rates, evaluate
from pipeline.core.policy import PolicyError, load, parse

MIN = 60_000
P = load()


def run(share_per_minute: list[tuple[int, int]], state: FaultState | None = None) -> tuple[list, FaultState]:
    state = state or FaultState()
    events = []
    for i, (delayed, eligible) in enumerate(share_per_minute):
        events += evaluate(P, "transactional", state, i * MIN, delayed, eligible)
    return events, state


def test_the_shipped_policy_has_the_sla_numbers() -> None:
    assert P.threshold_ms == {"transactional": 30 * MIN, "campaign": 12 * 60 * MIN}
    assert (P.objective, P.fault_share, P.fault_min_volume, P.fault_hold_ms) == (0.99, 0.10, 100, 15 * MIN)
    assert [(t.severity, t.factor) for t in P.burn_tiers] == [("page", 14.4), ("page", 6.0), ("ticket", 1.0)]


def test_a_fault_opens_above_ten_percent_with_enough_volume() -> None:
    events, state = run([(11, 100)])
    assert [e.event for e in events] == ["opened"] and state.opened_at == 0


def test_exactly_ten_percent_does_not_open_a_fault() -> None:
    assert run([(10, 100)])[0] == []


def test_below_the_minimum_volume_nothing_opens_however_bad() -> None:
    assert run([(99, 99)])[0] == []


def test_a_worse_share_updates_the_peak_and_the_same_share_says_nothing() -> None:
    events, state = run([(20, 100), (30, 100), (30, 100)])
    assert [e.event for e in events] == ["opened", "updated"] and state.peak_share == 0.3


def test_the_fault_resolves_only_after_the_share_stays_low_for_the_hold_time() -> None:
    events, _ = run([(20, 100)] + [(0, 100)] * 15 + [(0, 100)])
    assert [e.event for e in events] == ["opened", "resolved"]
    assert events[-1].at == 16 * MIN and events[-1].resolved_at == 16 * MIN


def test_a_relapse_during_the_hold_keeps_the_same_fault_open() -> None:
    events, _ = run([(20, 100)] + [(0, 100)] * 10 + [(20, 100)] + [(0, 100)] * 10)
    assert [e.event for e in events] == ["opened"]


def test_a_restart_with_the_persisted_state_does_not_open_the_fault_again() -> None:
    _, state = run([(20, 100)])
    restored = FaultState(**vars(state))
    events = evaluate(P, "transactional", restored, 5 * MIN, 20, 100)
    assert events == [] and restored.opened_at == 0


def test_burn_rate_pages_when_both_windows_burn_faster_than_the_factor() -> None:
    v = Verdicts()
    for m in range(60):
        v.add(m * MIN, delayed=20, eligible=100)  # 20% delayed = 20x the 1% budget
    tiers = burn_rates(P, v, 60 * MIN)
    assert tiers[0]["burn_long"] == pytest.approx(20.0) and tiers[0]["burn_short"] == pytest.approx(20.0)
    assert [t["firing"] for t in tiers] == [True, True, True]


def test_a_short_spike_alone_does_not_page() -> None:
    v = Verdicts()
    for m in range(60):
        v.add(m * MIN, delayed=100 if m >= 55 else 0, eligible=100)
    assert burn_rates(P, v, 60 * MIN)[0]["firing"] is False


@pytest.mark.parametrize("doc,key", [
    ({}, "classes"),
    ({"classes": {"transactional": {"threshold": "30m"}}}, "classes"),
    ({"classes": {"transactional": {"threshold": "soon"}, "campaign": {"threshold": "12h"}}}, "threshold"),
])
def test_a_bad_policy_names_the_key(doc: dict, key: str) -> None:
    with pytest.raises(PolicyError, match=key):
        parse(doc)


def test_detect_finds_one_fault_for_an_incident_and_resolves_it_after_the_hold() -> None:
    from pipeline.core.faults import detect

    series = [(m * MIN, 30 if 60 <= m < 105 else 2, 100) for m in range(0, 240)]
    (fault,) = detect(P, "transactional", series)
    assert fault["opened_at"] == 69 * MIN  # 9 bad minutes of 30: (9 * 30 + 21 * 2) / 3000 > 10%
    assert fault["resolved_at"] is not None and fault["resolved_at"] > 105 * MIN
    assert fault["peak_share"] == pytest.approx(0.3)


def test_detect_finds_nothing_for_six_percent_slow_mail() -> None:
    from pipeline.core.faults import detect

    assert detect(P, "transactional", [(m * MIN, 6, 100) for m in range(240)]) == []


def test_a_fault_still_open_at_the_end_has_no_resolved_at() -> None:
    from pipeline.core.faults import detect

    (fault,) = detect(P, "transactional", [(m * MIN, 50, 100) for m in range(10)])
    assert fault["resolved_at"] is None


def test_a_policy_file_names_only_what_it_changes_and_may_list_maintenance_at_the_top(tmp_path) -> None:
    f = tmp_path / "policy.yaml"
    f.write_text("fault: {share: 0.2}\nmaintenance:\n  - {start: '2026-11-01T02:00:00Z', end: '2026-11-01T03:00:00Z'}\n")
    p = load(f)
    assert (p.fault_share, p.fault_min_volume, p.objective) == (0.2, 100, 0.99)
    assert [(w.end_ms - w.start_ms, w.reason) for w in p.maintenance] == [(3_600_000, "planned maintenance")]


def test_a_policy_file_that_is_not_a_mapping_is_refused(tmp_path) -> None:
    f = tmp_path / "policy.yaml"
    f.write_text("- just a list\n")
    with pytest.raises(PolicyError, match="mapping"):
        load(f)
