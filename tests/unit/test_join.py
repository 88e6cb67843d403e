"""The pure join core: statuses, duplicates, orphans, deadlines, expiry."""
from __future__ import annotations

from pipeline.core.events import Accepted, QueueReady
from pipeline.core.join import JoinPolicy, next_due, on_accepted, on_ready, settle, status_of

MIN, H = 60_000, 3_600_000
P = JoinPolicy({"transactional": 30 * MIN, "campaign": 12 * H}, never_ready_ms=72 * H,
               orphan_grace_ms=H, retention_ms=24 * H)
T0 = 1_790_000_000_000


def acc(at: int = T0, cls: str = "transactional", mid: str = "m") -> Accepted:
    return Accepted(mid, "acct", cls, at)


def rdy(at: int, mid: str = "m") -> QueueReady:
    return QueueReady(mid, at)


def test_ready_within_the_threshold_is_on_time_with_exact_handling() -> None:
    s = on_accepted(None, acc(), T0, P).state
    step = on_ready(s, rdy(T0 + 1234), T0 + 1234, P, 0)
    (row,) = step.rows
    assert (row["status"], row["handling_ms"], row["verdict_at"]) == ("on_time", 1234, T0 + 1234)


def test_exactly_the_threshold_is_still_on_time_and_one_ms_more_is_late() -> None:
    s = on_accepted(None, acc(), T0, P).state
    assert on_ready(dict(s), rdy(T0 + 30 * MIN), T0, P, 0).rows[0]["status"] == "on_time"
    s = on_accepted(None, acc(), T0, P).state
    row = on_ready(s, rdy(T0 + 30 * MIN + 1), T0, P, 0).rows[0]
    assert (row["status"], row["verdict_at"]) == ("late", T0 + 30 * MIN)


def test_queue_ready_first_joins_when_accepted_arrives() -> None:
    step = on_ready(None, rdy(T0 + 500), T0 + 500, P, 0)
    assert step.rows == []
    (row,) = on_accepted(step.state, acc(), T0 + 500, P).rows
    assert (row["status"], row["handling_ms"]) == ("on_time", 500)


def test_a_waiting_message_turns_overdue_when_the_watermark_passes_its_deadline() -> None:
    s = on_accepted(None, acc(), T0, P).state
    assert next_due(s, P, T0) == T0 + 30 * MIN + 1
    assert settle(s, T0 + 30 * MIN, P).rows == []
    (row,) = settle(s, T0 + 30 * MIN + 1, P).rows
    assert (row["status"], row["handling_ms"], row["rev"]) == ("overdue", None, 1)


def test_an_overdue_message_becomes_late_with_its_handling_time_and_a_higher_rev() -> None:
    s = settle(on_accepted(None, acc(), T0, P).state, T0 + 31 * MIN, P).state
    (row,) = on_ready(s, rdy(T0 + 40 * MIN), T0 + 40 * MIN, P, 0).rows
    assert (row["status"], row["handling_ms"], row["rev"]) == ("late", 40 * MIN, 2)


def test_no_queue_ready_within_the_horizon_is_never_ready_and_the_state_is_freed_later() -> None:
    s = settle(on_accepted(None, acc(), T0, P).state, T0 + 31 * MIN, P).state
    step = settle(s, T0 + 72 * H + 1, P)
    assert step.rows[0]["status"] == "never_ready"
    assert settle(step.state, T0 + 96 * H, P).state is None


def test_a_duplicate_counts_once_and_re_emits_the_same_row() -> None:
    s = on_accepted(None, acc(), T0, P).state
    first = on_ready(s, rdy(T0 + 10), T0, P, 0)
    again = on_ready(first.state, rdy(T0 + 10), T0, P, 0)
    assert again.rows == first.rows and again.counters == {"duplicate_ready": 1}


def test_conflicting_duplicates_keep_the_earliest_timestamps_and_are_counted() -> None:
    s = on_accepted(None, acc(T0 + 100), T0, P).state
    s = on_accepted(s, acc(T0), T0, P).state
    step = on_ready(s, rdy(T0 + 900), T0, P, 0)
    step = on_ready(step.state, rdy(T0 + 700), T0, P, 0)
    assert step.counters == {"duplicate_ready": 1, "conflicting_ready": 1}
    assert step.rows[-1]["handling_ms"] == 700 and step.rows[-1]["rev"] == 2


def test_an_orphan_is_reported_after_the_grace_and_resolved_if_accepted_comes() -> None:
    s = on_ready(None, rdy(T0), T0, P, 42).state
    assert settle(s, T0 + H, P).rows == []
    step = settle(s, T0 + H + 1, P)
    assert step.rows == [{"k": "o", "message_id": "m", "ready_at": T0, "first_seen": 42, "resolved": False, "rev": 1}]
    step = on_accepted(step.state, acc(T0 - 1000), T0 + 2 * H, P)
    assert [r["k"] for r in step.rows] == ["o", "m"] and step.rows[0]["resolved"] is True


def test_negative_handling_is_zero_with_a_clock_skew_flag() -> None:
    s = on_accepted(None, acc(T0), T0, P).state
    row = on_ready(s, rdy(T0 - 5000), T0, P, 0).rows[0]
    assert (row["handling_ms"], row["clock_skew"], row["status"]) == (0, True, "on_time")


def test_campaign_mail_uses_the_twelve_hour_threshold() -> None:
    s = on_accepted(None, acc(cls="campaign"), T0, P).state
    assert status_of(s, T0 + 12 * H, P) is None
    assert status_of(s, T0 + 12 * H + 1, P) == "overdue"


def test_an_overdue_state_read_back_with_an_older_watermark_is_still_scheduled_for_never_ready() -> None:
    """After a restart the watermark starts from what was persisted (replay mode persists none):
    older than the one that made the state overdue. Its next due time is still the never-ready
    horizon, not the passed threshold, whose settle changes nothing and would schedule nothing."""
    s = on_accepted(None, acc(), T0, P).state
    s = settle(s, T0 + 31 * MIN, P).state
    assert s["sig"][0] == "overdue"
    for older in (None, T0, T0 + 29 * MIN):
        assert next_due(s, P, older) == T0 + 72 * H + 1
