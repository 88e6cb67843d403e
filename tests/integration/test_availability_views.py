"""Availability from the ClickHouse views (ddl/003) against the independent oracle, in the
embedded engine (no Kafka): rows go in through the sink's Store, in two shuffled halves."""
from __future__ import annotations

from typing import Any, Iterator

import orjson
import pytest

from pipeline.core import availability as av
from pipeline.core.events import parse_ts
from pipeline.store.clickhouse import Store, maintenance_row
from pipeline.stream.writer import availability_row
from avail_oracle import WINDOW, critical_oracle, oracle, scenario

pytestmark = pytest.mark.integration
RECORDS, BAD = scenario()


@pytest.fixture(scope="module")
def store(new_store: Any) -> Iterator[Store]:
    st = new_store("availability")
    rows = [availability_row("attempt_id" in r, "t", 0, i, None, orjson.dumps(r)) for i, r in enumerate(RECORDS)]
    assert all(r["k"] in ("inj", "probe") for r in rows)
    st.write(rows[: len(rows) // 2])
    st.write([maintenance_row(parse_ts(WINDOW[0], ""), parse_ts(WINDOW[1], ""), "MTA upgrade", "cli", version=1)])
    st.write(rows[len(rows) // 2:] + rows[:100])  # and some again
    yield st
    st.close()


def test_malformed_records_become_dead_letters_with_the_reason() -> None:
    rows = [availability_row(b"attempt_id" in raw, "mta.injections", 1, 7, b"k", raw) for raw in BAD]
    assert [r["k"] for r in rows] == ["dl"] * len(BAD)
    letters = [orjson.loads(r["record"]) for r in rows]
    assert all(d["reason"] and d["offset"] == 7 and d["raw"] for d in letters)
    assert "channel" in letters[1]["reason"] and "ok" in letters[3]["reason"]


@pytest.mark.parametrize("month", ["2026-10", "2026-11"])
@pytest.mark.parametrize("account", [None, "acme", "beta"])
def test_availability_equals_the_oracle(store: Store, month: str, account: str | None) -> None:
    got = av.compute(store.query, store.db, store.settings.policy, month, account)
    assert got == oracle(RECORDS, [WINDOW], month, account)


def test_the_scenario_covers_what_it_should(store: Store) -> None:
    oct_, nov = (oracle(RECORDS, [WINDOW], m) for m in ("2026-10", "2026-11"))
    assert nov["maintenance_s"] == 3600 and oct_["channels"]["api"]["unavailable_s"] >= 90
    assert oct_["probes"]["admin"]["incidents"] == 1 == nov["probes"]["admin"]["incidents"]
    assert nov["probes"]["api"]["downtime_s"] == 0 and nov["probes"]["api"]["incidents"] == 1


def test_critical_faults_equal_the_oracle(store: Store) -> None:
    found = av.critical_faults(store.query, store.db, store.settings.policy)
    got = [(f["message_class"], f["opened_at"] // 1000, None if f["resolved_at"] is None else f["resolved_at"] // 1000)
           for f in found]
    assert got == critical_oracle(RECORDS, [WINDOW])
    api = [f for f in got if f[0] == "channel:api"]
    assert len(api) == 1 and api[0][1] == parse_ts("2026-10-31T23:59:30Z", "") // 1000  # 60 s into the outage
    assert api[0][2] >= parse_ts("2026-11-01T00:02:30Z", "") // 1000  # 60 s after it (later: stray failures)
    assert not [f for f in got if f[0] == "channel:smtp"]  # 45 s down: no fault


def test_the_monthly_views_give_the_same_numbers_to_sql(store: Store) -> None:
    _, rows = store.query(f"SELECT month, channel, unavailable_s FROM {store.db}.availability_monthly")
    for month in ("2026-10", "2026-11"):
        want = oracle(RECORDS, [WINDOW], month)["channels"]
        assert {c: u for m, c, u in rows if m == month} == {c: v["unavailable_s"] for c, v in want.items()
                                                          if v["unavailable_s"] or c == "any"} | \
            {c: u for m, c, u in rows if m == month and u == 0}
    _, rows = store.query(f"SELECT month, maintenance_s FROM {store.db}.maintenance_monthly")
    assert rows == [("2026-11", 3600)]


def test_the_golden_example_gives_its_expected_output(store: Store) -> None:
    import json
    from dataclasses import replace
    from pathlib import Path

    from pipeline.store.reports import public

    ex = Path(__file__).resolve().parents[2] / "schemas" / "examples"
    want = json.loads((ex / "availability.expected.json").read_text())
    s = replace(store.settings, database="golden")  # one embedded engine per process: another database
    st = Store(s)
    try:
        st.migrate()
        lines = [line for line in (ex / "availability.jsonl").read_bytes().splitlines() if line.strip()]
        st.write([availability_row(b"attempt_id" in raw, "t", 0, i, None, raw) for i, raw in enumerate(lines)])
        mw = want["maintenance"]
        st.write([maintenance_row(parse_ts(mw["start"], ""), parse_ts(mw["end"], ""), mw["reason"], "cli", version=1)])
        for month, doc in want["availability"].items():
            assert av.compute(st.query, st.db, s.policy, month) == doc
        for account, months in want["availability_by_account"].items():
            for month, doc in months.items():
                assert av.compute(st.query, st.db, s.policy, month, account) == doc
        got = [public(f) for f in av.critical_faults(st.query, st.db, s.policy)]
        assert [{k: f[k] for k in ("message_class", "opened_at", "resolved_at")} for f in got] == want["critical_faults"]
    finally:
        st.client.command("DROP DATABASE IF EXISTS golden")


def test_the_probe_monthly_view_gives_the_same_numbers_to_sql(store: Store) -> None:
    for month in ("2026-10", "2026-11"):
        doc = av.compute(store.query, store.db, store.settings.policy, month)
        _, rows = store.query(f"SELECT target, checks, failed, incidents, downtime_ms FROM {store.db}.probe_monthly "
                              f"WHERE month = '{month}' ORDER BY target")
        assert {t: (c, f, i, av.seconds_number(d)) for t, c, f, i, d in rows} == \
            {t: (p["checks"], p["failed"], p["incidents"], p["downtime_s"]) for t, p in doc["probes"].items()}
