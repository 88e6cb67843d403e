"""The sink's revision lookup and column-wise insert, in the embedded engine (no Kafka).

`Store.previous` sends a batch's message ids as one string literal split by ClickHouse,
and ids holding the separator as literal lists: both must find every stored row, whatever
the characters, and a re-delivered batch must add nothing to the aggregates.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from pipeline.store.clickhouse import Store

pytestmark = pytest.mark.integration
T0 = 1_793_500_000_000  # 2026-11-01
IDS = ["plain", "it's", "back\\slash", "uni-é-✓", "sep\x1finside", "two\x1f\x1fseps", "nul\x00byte",
       "comma,and;semi", "'", "\x1f", " spaced "] + [f"bulk-{i:06d}" for i in range(3000)]


def msg(mid: str, rev: int, status: str) -> dict[str, Any]:
    ready = T0 + (1000 if status == "on_time" else 3_600_000)
    return {"k": "m", "message_id": mid, "account_id": "a", "message_class": "transactional",
            "priority": "normal", "source": "api", "mta": "m", "client_error": "", "accepted_at": T0,
            "ready_at": ready, "handling_ms": ready - T0, "status": status,
            "verdict_at": min(ready, T0 + 1_800_000), "clock_skew": False, "rev": rev}


@pytest.fixture(scope="module")
def store(new_store: Any) -> Iterator[Store]:
    st = new_store("revisions")
    yield st
    st.close()


def totals(store: Store) -> tuple[int, int, int]:
    _, rows = store.query("SELECT sum(messages), sum(within), sum(delayed) FROM mailsla.handling_minutely")
    return tuple(int(v or 0) for v in rows[0])  # type: ignore[return-value]


def test_every_stored_id_is_found_whatever_its_characters(store: Store) -> None:
    assert store.previous(IDS) == {}
    store.write([msg(i, 1, "late") for i in IDS])
    prev = store.previous(IDS + ["never-written", "sep\x1fnever"])
    assert set(prev) == set(IDS)
    assert all(p[0] == 1 and p[3] == 1 and p[5] == 1 for p in prev.values())  # rev 1, counted once, delayed
    assert totals(store) == (len(IDS), 0, len(IDS))


def test_a_redelivered_batch_adds_nothing_and_a_newer_revision_replaces(store: Store) -> None:
    before = totals(store)
    store.write([msg(i, 1, "late") for i in IDS])  # the same batch again (a sink restarted before its commit)
    assert totals(store) == before
    store.write([msg(i, 2, "on_time") for i in IDS[:11]])  # the odd ids get a newer verdict
    assert totals(store) == (len(IDS), 11, len(IDS) - 11)
    prev = store.previous(IDS[:11])
    assert {p[0] for p in prev.values()} == {2}
