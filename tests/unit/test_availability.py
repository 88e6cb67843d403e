"""The availability core (pipeline/core/availability.py): table-driven, no Kafka, no ClickHouse."""
from __future__ import annotations

import random

import pytest

from pipeline.core import availability as av
from pipeline.core.events import parse_ts
from pipeline.core.policy import load

P = load()
OCT = av.month_span("2026-10")
NOV_START = parse_ts("2026-11-01T00:00:00Z", "")
S = NOV_START // 1000  # epoch second of the month boundary


def test_month_span_follows_the_policy_time_zone() -> None:
    assert OCT == (parse_ts("2026-10-01T00:00:00Z", ""), NOV_START)
    assert (OCT[1] - OCT[0]) // 1000 == 2678400
    lo, hi = av.month_span("2026-10", "Europe/Berlin")
    assert lo == parse_ts("2026-10-01T00:00:00+02:00", "") and hi == parse_ts("2026-11-01T00:00:00+01:00", "")
    assert (hi - lo) // 1000 == 2678400 + 3600  # the October DST change
    with pytest.raises(ValueError):
        av.month_span("2026-13")


@pytest.mark.parametrize("windows,expected", [
    ([], 0),
    ([(NOV_START - 7_200_000, NOV_START - 3_600_000)], 3600),
    ([(NOV_START - 3_600_000, NOV_START + 3_600_000)], 3600),  # clipped at the month's end
    ([(NOV_START - 7_200_000, NOV_START - 3_600_000), (NOV_START - 5_400_000, NOV_START - 1_800_000)], 5400),
    ([(NOV_START - 10_500, NOV_START - 8_999)], 2),  # seconds whose start lies inside: -10 and -9 (not -11)
])
def test_maintenance_seconds_merge_overlaps_and_clip_to_the_month(windows: list, expected: int) -> None:
    assert av.maintenance_seconds(windows, *OCT) == expected


def attempt(i: str, second: int, channel: str, outcome: str, account: str = "", ms: int = 0) -> dict:
    return {"attempt_id": i, "at": second * 1000 + ms, "channel": channel, "outcome": outcome, "account_id": account}


@pytest.mark.parametrize("attempts,expected", [
    ([attempt("a", 10, "api", "server_error")], {"api": {10}, "smtp": set()}),
    ([attempt("a", 10, "api", "timeout"), attempt("b", 10, "api", "ok", ms=999)], {"api": set(), "smtp": set()}),
    ([attempt("a", 10, "api", "timeout"), attempt("b", 10, "api", "client_error")], {"api": set(), "smtp": set()}),
    ([attempt("a", 10, "api", "timeout"), attempt("b", 11, "smtp", "server_error")], {"api": {10}, "smtp": {11}}),
    ([attempt("a", 10, "api", "timeout"), attempt("a", 10, "api", "timeout")], {"api": {10}, "smtp": set()}),
])
def test_a_second_is_unavailable_when_every_attempt_in_it_failed_server_side(attempts: list, expected: dict) -> None:
    assert av.unavailable_seconds(attempts) == expected


def test_per_account_only_that_accounts_attempts_count() -> None:
    attempts = [attempt("a", 10, "api", "timeout", "x"), attempt("b", 10, "api", "ok", "y")]
    assert av.unavailable_seconds(attempts) == {"api": set(), "smtp": set()}
    assert av.unavailable_seconds(attempts, "x") == {"api": {10}, "smtp": set()}


def check(target: str, at: int, ok: bool, location: str = "eu") -> dict:
    return {"target": target, "at": at * 1000, "ok": ok, "location": location}


@pytest.mark.parametrize("oks,expected", [
    ("1111", []),
    ("1011", []),  # one failed check is no incident
    ("1001", [(1, 2, 3)]),
    ("10001000", [(1, 3, 4), (5, 7, None)]),
    ("00", [(0, 1, None)]),
])
def test_two_or_more_consecutive_failed_checks_are_one_incident(oks: str, expected: list) -> None:
    checks = [check("api", 60 * i, c == "1") for i, c in enumerate(oks)]
    got = av.probe_incidents(checks)["api"]
    assert [(i["first_ms"] // 60000, i["last_ms"] // 60000,
             None if i["next_ok_ms"] is None else i["next_ok_ms"] // 60000) for i in got] == expected


def test_checks_of_all_locations_are_ordered_by_time_and_duplicates_count_once() -> None:
    checks = [check("api", 0, False, "eu"), check("api", 0, False, "eu"), check("api", 30, True, "us"),
              check("api", 60, False, "eu"), check("api", 90, False, "us")]
    assert [(i["first_ms"], i["last_ms"]) for i in av.probe_incidents(checks)["api"]] == [(60000, 90000)]


@pytest.mark.parametrize("first,last,windows,expected", [
    (OCT[1] - 600_000, OCT[1] - 60_000, [], 540_000),
    (OCT[1] - 600_000, OCT[1] + 600_000, [], 600_000),  # clipped at the month's end
    (OCT[0] - 600_000, OCT[0] + 60_000, [], 60_000),  # and at its start
    (OCT[1] + 1, OCT[1] + 60_000, [], None),  # next month
    (OCT[0] - 60_000, OCT[0], [], None),  # ends exactly at the month's first instant: the month before
    (OCT[1] - 600_000, OCT[1] - 60_000, [(OCT[1] - 300_000, OCT[1])], 300_000),  # maintenance removed
])
def test_incident_downtime_is_clipped_to_the_month(first: int, last: int, windows: list, expected: int | None) -> None:
    assert av.clip_incident(first, last, *OCT, windows) == expected


@pytest.mark.parametrize("any_s,measured,expected", [
    (0, 2678400, 0),
    (267, 2678400, 0),  # within the first 0.01% of the month
    (267 + 1800, 2678400, 0),  # 1800 - 0.84 s beyond: not yet a whole 30 minutes
    (268 + 1800, 2678400, 5),
    (268 + 3600, 2678400, 10),
    (10 ** 7, 2678400, 100),  # capped
])
def test_credit_is_five_percent_per_started_half_hour_beyond_the_free_share(any_s: int, measured: int,
                                                                           expected: int) -> None:
    assert av.credit_pct(P, any_s, measured) == expected


def test_the_document_has_the_contract_shape() -> None:
    doc = av.document(P, "2026-10", [(OCT[1] - 7_200_000, OCT[1])],
                      {"api": {"attempts": 10, "failed": 4, "unavailable_s": 3},
                       "any": {"attempts": 10, "failed": 4, "unavailable_s": 3}},
                      {"admin": (5, 2)}, {"admin": [{"first_ms": OCT[1] - 10_800_000, "last_ms": OCT[1] - 10_740_000}]})
    assert doc["period_s"] == 2678400 and doc["maintenance_s"] == 7200 and doc["measured_s"] == 2671200
    assert doc["channels"]["api"] == {"attempts": 10, "failed": 4, "unavailable_s": 3,
                                      "availability": 1 - 3 / 2671200, "target": 0.9999, "met": True}
    assert doc["channels"]["smtp"]["attempts"] == 0 and doc["channels"]["smtp"]["availability"] == 1.0
    assert set(doc["channels"]["any"]) == {"unavailable_s", "availability", "target", "met"}
    assert doc["credit_pct"] == 0
    assert doc["probes"]["admin"] == {"checks": 5, "failed": 2, "incidents": 1, "downtime_s": 60,
                                      "availability": 1 - 60 / 2671200, "target": 0.99, "met": True}


@pytest.mark.parametrize("outages,now,expected", [
    ([(S, S + 58)], None, []),  # 59 s: no fault
    ([(S, S + 59)], None, [(S + 60, S + 120)]),  # 60 s: opens at its end, resolves 60 s after the last
    ([(S, S + 59)], S + 100, [(S + 60, None)]),  # event time has not reached the resolution yet
    ([(S, S + 59), (S + 119, S + 120)], None, [(S + 60, S + 181)]),  # 59 s available: still the same fault
    ([(S, S + 59), (S + 120, S + 121)], None, [(S + 60, S + 120)]),  # 60 s available: resolved, short blip after
    ([(S, S + 30), (S + 32, S + 100)], None, [(S + 92, S + 161)]),  # a gap restarts the 60 s count
])
def test_critical_channel_fault_opens_after_60_unavailable_seconds_and_resolves_after_60_available(
        outages: list, now: int | None, expected: list) -> None:
    got = av.channel_faults(P, "api", outages, now)
    assert [(f["opened_at"] // 1000, None if f["resolved_at"] is None else f["resolved_at"] // 1000)
            for f in got] == expected
    assert all(f["kind"] == "critical" and f["message_class"] == "channel:api" for f in got)


def test_a_probe_incident_opens_at_its_second_failed_check_and_resolves_at_the_next_ok() -> None:
    checks = [check("smtp", 60 * i, c == "1") for i, c in enumerate("1000100")]
    got = av.probe_faults("smtp", av.probe_incidents(checks)["smtp"])
    assert [(f["opened_at"], f["resolved_at"]) for f in got] == [(120_000, 240_000), (360_000, None)]


@pytest.mark.parametrize("kind,dur_h,met", [("critical", 2, True), ("critical", 2.01, False),
                                             ("semi_critical", 4, True), ("burn_rate", 8.5, False)])
def test_each_fault_carries_its_class_response_target(kind: str, dur_h: float, met: bool) -> None:
    r = av.response(P, {"kind": kind, "opened_at": 0, "resolved_at": int(dur_h * 3_600_000)})
    assert r["response_met"] is met
    assert r["response_target_s"] == {"critical": 7200, "semi_critical": 14400}.get(kind, 28800)
    assert av.response(P, {"kind": kind, "opened_at": 0, "resolved_at": None}, now_ms=1)["response_met"] is None


def test_evaluating_from_a_settled_second_finds_the_same_later_faults() -> None:
    rng = random.Random(7)
    seconds = sorted({S + rng.randrange(0, 20_000) for _ in range(3000)}
                     | set(range(S + 5000, S + 5100)) | set(range(S + 12_000, S + 12_300)))
    outages = av.runs(seconds)
    full = av.channel_faults(P, "api", outages)
    assert full
    for at in range(S, S + 20_000, 997):
        s = av.settled_before(full, {"api": outages}, at, P)
        part = av.channel_faults(P, "api", [(max(a, s), b) for a, b in outages if b >= s])
        assert part == [f for f in full if f["opened_at"] >= s * 1000]


def test_runs_are_stretches_of_consecutive_seconds() -> None:
    assert av.runs([5, 1, 2, 3, 7, 8, 2]) == [(1, 3), (5, 5), (7, 8)]
    assert av.runs([]) == []
