"""Every exclusion rule, applied by the ClickHouse views, and the sink's crash recovery of the
aggregates, in the embedded engine (no Kafka).

The rows go straight into the tables through the sink's Store, so each rule is
checked on its own, at its edges, and the monthly views are checked against
counts computed here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from pipeline.core.events import parse_ts
from pipeline.store.clickhouse import Store, maintenance_row

pytestmark = pytest.mark.integration
H, DAY = 3_600_000, 86_400_000
T0 = parse_ts("2026-11-02T00:00:00Z", "")


def msg(mid: str, account: str, accepted: int, status: str = "on_time", cls: str = "transactional",
        priority: str = "normal", client_error: str = "") -> dict[str, Any]:
    ready = accepted + (1000 if status == "on_time" else 2 * H)
    return {"k": "m", "message_id": mid, "account_id": account, "message_class": cls, "priority": priority,
            "source": "", "mta": "", "client_error": client_error, "accepted_at": accepted,
            "ready_at": ready, "handling_ms": ready - accepted, "status": status,
            "verdict_at": min(ready, accepted + 30 * 60_000), "clock_skew": False, "rev": 1}


def acct(account: str, first_send_at: int | None, rate_limited: bool, version: int = 1) -> dict[str, Any]:
    return {"k": "acct", "account_id": account, "first_send_at": first_send_at, "rate_limited": rate_limited,
            "updated_at": None, "version": version}


@pytest.fixture(scope="module")
def store(new_store: Any) -> Iterator[Store]:
    st = new_store("exclusions")
    rows = [
        msg("plain", "old", T0),
        msg("low", "old", T0, priority="low"),
        msg("client", "old", T0 + 1, client_error="bad recipient"),
        msg("low-and-client", "old", T0 + 2, status="late", priority="low", client_error="x"),
        msg("in-window", "old", T0 + 2 * H, status="late"),
        msg("window-end", "old", T0 + 3 * H, status="late"),  # windows are [start, end)
        msg("new-account", "new", T0 + 5 * H),
        msg("new-account-day-30", "new", T0 - 10 * DAY + 30 * DAY),  # exactly 30 days: eligible again
        msg("limited", "limited", T0 + H, status="late"),
        msg("no-facts", "unknown", T0 + H, status="late"),
        acct("old", T0 - 400 * DAY, False),
        acct("new", T0 - 10 * DAY, False),
        acct("limited", T0 - 400 * DAY, False, version=1),
        acct("limited", T0 - 400 * DAY, True, version=2),  # the latest record wins
        maintenance_row(T0 + 2 * H, T0 + 3 * H, "MTA upgrade", "cli", version=1),
        maintenance_row(T0 + 20 * H, T0 + 21 * H, "withdrawn", "cli", version=1),
        maintenance_row(T0 + 20 * H, T0 + 21 * H, "withdrawn", "cli", deleted=True, version=2),
        msg("in-withdrawn-window", "old", T0 + 20 * H + 5),
    ]
    # a steady account (10 messages an hour for a day), then an hour with 1200: a volume surge
    for h in range(24):
        rows += [msg(f"steady-{h}-{i}", "bursty", T0 + h * H + i * 1000) for i in range(10)]
    rows += [msg(f"burst-{i}", "bursty", T0 + 24 * H + i * 1000) for i in range(1200)]
    rows += [msg(f"after-{i}", "bursty", T0 + 25 * H + i * 1000) for i in range(10)]
    # a brand-new sender's first busy hour has no baseline: not a surge
    rows += [msg(f"first-{i}", "fresh", T0 + i * 1000) for i in range(1500)]
    st.write(rows)
    yield st
    st.close()


def reason(store: Store, mid: str) -> str:
    _, rows = store.query(f"SELECT exclusion_reason FROM mailsla.handling_times WHERE message_id = '{mid}'")
    return rows[0][0]


@pytest.mark.parametrize("mid, why", [
    ("plain", ""),
    ("low", "low_priority"),
    ("client", "client_error"),
    ("low-and-client", "low_priority"),
    ("in-window", "maintenance"),
    ("window-end", ""),
    ("in-withdrawn-window", ""),
    ("new-account", "introductory_period"),
    ("new-account-day-30", ""),
    ("limited", "rate_limited"),
    ("no-facts", ""),
    ("burst-0", "volume_surge"),
    ("steady-5-0", ""),
    ("after-0", ""),
    ("first-0", ""),
])
def test_each_message_gets_the_first_exclusion_reason_that_applies(store: Store, mid: str, why: str) -> None:
    assert reason(store, mid) == why


def test_the_monthly_views_count_what_the_rows_say(store: Store) -> None:
    _, rows = store.query("SELECT exclusion_reason, status FROM mailsla.handling_times")
    total = len(rows)
    excluded = sum(1 for r, _ in rows if r)
    within = sum(1 for r, s in rows if not r and s == "on_time")
    delayed = sum(1 for r, s in rows if not r and s != "on_time")
    cols, got = store.query("SELECT total, excluded, eligible, within, delayed, compliance, budget_remaining, "
                            "excluded_volume_surge FROM mailsla.sla_monthly WHERE month = '2026-11' "
                            "AND message_class = 'transactional'")
    eligible = total - excluded
    assert got == [(total, excluded, eligible, within, delayed, within / eligible,
                    int(eligible * 0.01 + 1e-9) - delayed, 1200)]
    _, by_account = store.query("SELECT sum(total), sum(eligible) FROM mailsla.sla_monthly_by_account "
                                "WHERE month = '2026-11'")
    assert by_account == [(total, eligible)]


def test_minutes_of_a_batch_that_never_finished_are_rebuilt_from_the_rows_at_start(store: Store) -> None:
    t = T0 + 100 * DAY
    store.write([msg(f"crash-{i}", "old", t + i * 1000, status="late" if i % 4 == 0 else "on_time")
                 for i in range(100)])
    truth = store.query("SELECT count(), countIf(status = 'on_time') FROM mailsla.handling_times_raw FINAL "
                        f"WHERE accepted_at >= toDateTime64({t // 1000}, 3, 'UTC')")[1]
    # a crash between the row insert and the aggregate views: the rows are in, the aggregates not
    for table in ("handling_minutely", "handling_minutely_account"):
        store.client.command(f"ALTER TABLE mailsla.{table} DELETE WHERE minute >= toDateTime({t // 1000}, 'UTC') "
                             "SETTINGS mutations_sync = 2")
    _, minutes = store.query("SELECT DISTINCT c_minute FROM mailsla.handling_times_raw "
                             f"WHERE accepted_at >= toDateTime64({t // 1000}, 3, 'UTC')")
    store._journal([("crashed", [m for (m,) in minutes], "begin")])
    store.recover()
    for table in ("handling_minutely", "handling_minutely_account"):
        _, got = store.query(f"SELECT sum(messages), sum(within) FROM mailsla.{table} "
                             f"WHERE minute >= toDateTime({t // 1000}, 'UTC')")
        assert got == truth, table
    store.recover()  # nothing left to do: the same numbers
    assert store.query("SELECT sum(messages) FROM mailsla.handling_minutely "
                       f"WHERE minute >= toDateTime({t // 1000}, 'UTC')")[1] == [(truth[0][0],)]
