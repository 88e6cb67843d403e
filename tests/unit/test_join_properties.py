"""Property: whatever the interleaving, duplication and batching, the rows and the
aggregates equal an oracle computed directly from the generated messages."""
from __future__ import annotations

import random
import tempfile
import zlib
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from pipeline.core.config import load
from pipeline.core.events import format_ts
from pipeline.stream.runtime import JoinRuntime
from pipeline.store.clickhouse import MSG_COLUMNS, prepare_rows

MIN, H = 60_000, 3_600_000
T0 = 1_790_000_000_000
PARTS = 4
COL = {c: i for i, c in enumerate(MSG_COLUMNS)}


def settings():
    s = load()
    # no clock-trust limit on jumps here (tests/unit/test_clock_trust.py covers it): the three
    # clusters of accepted times may be far apart when the middle one is empty
    return replace(s, partitions=PARTS, idle_grace_s=0.0, lateness_ms=0,
                   policy=replace(s.policy, clock_ahead_replay_ms=1 << 50))


message = st.tuples(
    st.sampled_from(["transactional", "campaign"]),
    # accepted offset, in three clusters: the last one takes event time past the never-ready horizon
    st.one_of(st.integers(0, 6 * H), st.integers(40 * H, 46 * H), st.integers(76 * H, 80 * H)),
    st.one_of(st.none(), st.integers(-2000, 14 * H)),       # handling (None = never ready)
    st.booleans(), st.booleans(),                           # duplicate accepted / ready
    st.booleans(),                                          # orphan: drop the accepted event
)


def oracle(msgs, s, wm_end):
    out, orphans = {}, set()
    for mid, (cls, offset, h, _, _, orphan) in msgs.items():
        p = zlib.crc32(mid.encode()) % PARTS
        w, a = wm_end.get(p), T0 + offset
        r = None if h is None else a + h
        if orphan:
            if r is not None and w is not None and w > r + s.orphan_grace_ms:
                orphans.add(mid)
            continue
        thr = s.threshold_ms[cls]
        if r is not None and r <= a + s.never_ready_ms:
            out[mid] = ("on_time" if r - a <= thr else "late", max(0, r - a))
        elif w is not None and w > a + s.never_ready_ms:
            out[mid] = ("never_ready", None)
        elif w is not None and w > a + thr:
            out[mid] = ("overdue", None)
    return out, orphans


class _Table:
    """The join state the way the worker holds it: a dict (as the memory store), or Faust's RocksDB
    store through the join loop's TableState (one database per partition, the partition context
    set per record, the writes flushed at batch ends) — what docker-compose and deploy/k8s ship."""

    def __init__(self, kind: str) -> None:
        self.ts = None
        self.map: Any = {}
        if kind == "rocksdb":
            from test_tablestate import faust_store

            from pipeline.stream.tablestate import TableState

            self.ts = TableState(faust_store("rocksdb", Path(tempfile.mkdtemp(prefix="prop-rocksdb-"))))
            self.map = self.ts.buffer

    def enter(self, p: int) -> None:
        if self.ts is not None:
            self.ts.enter(p)

    def batch_end(self) -> None:
        if self.ts is not None:
            self.ts.flush()


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(message, min_size=1, max_size=60), st.randoms(use_true_random=False), st.integers(1, 7))
def test_rows_and_aggregates_match_the_oracle(kind: str, msgs_list, rnd: random.Random, batch: int) -> None:
    s = settings()
    msgs = {f"m{i}": m for i, m in enumerate(msgs_list)}
    streams: dict[tuple[int, str], list] = defaultdict(list)
    for mid, (cls, a, h, dup_a, dup_r, orphan) in msgs.items():
        p = zlib.crc32(mid.encode()) % PARTS
        acc = orjson.dumps({"message_id": mid, "account_id": "x", "message_class": cls,
                            "accepted_at": format_ts(T0 + a)})
        if not orphan:
            streams[(p, "acc")] += [(T0 + a, acc)] * (2 if dup_a else 1)
        if h is not None:
            rdy = orjson.dumps({"message_id": mid, "ready_at": format_ts(T0 + a + h)})
            streams[(p, "rdy")] += [(T0 + a + h, rdy)] * (2 if dup_r else 1)
    table = _Table(kind)
    rt = JoinRuntime(s, table.map)
    # input offsets commit at random moments: finished states become fingerprints only after that
    nxt: dict[tuple[str, int], int] = defaultdict(int)
    committed: dict[tuple[str, int], int] = defaultdict(int)
    rt.committed = lambda topic, p: committed[(topic, p)]
    results = []
    wm_end = {}
    for p in range(PARTS):
        acc_q = sorted(streams[(p, "acc")], key=lambda e: e[0])
        rdy_q = sorted(streams[(p, "rdy")], key=lambda e: e[0])
        for q in (acc_q, rdy_q):  # some duplicates arrive late, after their message finished, but
            # within the dedup retention (later, a duplicate is a new message by design)
            late = [i for i in range(1, len(q)) if q[i] == q[i - 1] and rnd.random() < 0.5]
            kept = [e for i, e in enumerate(q) if i not in late]
            for i in reversed(late):
                limit = q[i][0] + s.dedup_retention_ms - 4 * H
                at = next((j for j, e in enumerate(kept) if e[0] > limit), len(kept))
                kept.insert(at, q[i])
            q[:] = kept
        if acc_q and rdy_q:
            wm_end[p] = min(max(e[0] for e in acc_q), max(e[0] for e in rdy_q))
        while acc_q or rdy_q:  # an arbitrary interleaving of the two topics
            take_acc = acc_q and (not rdy_q or rnd.random() < 0.5)
            topic, (_, raw) = (s.topic_accepted, acc_q.pop(0)) if take_acc else (s.topic_ready, rdy_q.pop(0))
            key = orjson.loads(raw)["message_id"].encode()
            off = nxt[(topic, p)]
            nxt[(topic, p)] += 1
            table.enter(p)
            results += [orjson.loads(o.value) for o in rt.handle(topic, p, off, key, raw, wall=0.0) if o.kind == "result"]
            if rnd.random() < 0.2:  # the batch's end: its writes go to the store
                table.batch_end()
            if rnd.random() < 0.3:
                committed.update(nxt)
            if rnd.random() < 0.02:  # a restart mid-stream: same table, nothing in memory (no watermark)
                table.batch_end()
                rt = JoinRuntime(s, table.map)
                rt.committed = lambda topic, p: committed[(topic, p)]
                rt.reset(set(range(PARTS)))
        table.batch_end()
        if p == 1:  # a rebalance in the middle: heaps rebuilt from the table, verdicts re-emitted
            rt.reset(set(range(PARTS)))
    # the sink: batches of arbitrary size, some delivered twice, with a stored-row memory
    stored: dict[str, tuple] = {}
    agg: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    msg_rows = [r for r in results if r["k"] == "m"]
    chunks = [msg_rows[i:i + batch] for i in range(0, len(msg_rows), batch)]
    for chunk in chunks + chunks[: len(chunks) // 2]:
        prev = {mid: stored[mid] for mid in {r["message_id"] for r in chunk} if mid in stored}
        for row in prepare_rows(chunk, prev):
            g = lambda c: row[COL[c]]  # noqa: E731
            stored[g("message_id")] = (g("rev"), g("handling_ms"), g("c_minute"), g("c_n"), g("c_within"),
                                       g("c_delayed"), g("status"))
            for sign, pre in ((-1, "p_"), (1, "c_")):
                cell = agg[(g(pre + "minute"), g("message_class"))]
                for i, c in enumerate(("n", "within", "delayed")):
                    cell[i] += sign * g(pre + c)
    expected, orphan_ids = oracle(msgs, s, wm_end)
    got = {mid: (v[6], v[1]) for mid, v in stored.items()}
    assert got == expected
    assert {r["message_id"] for r in results if r["k"] == "o"} == orphan_ids
    totals = [0, 0, 0]
    for cell in agg.values():
        totals = [t + c for t, c in zip(totals, cell)]
    on_time = sum(1 for st_, _ in expected.values() if st_ == "on_time")
    assert totals == [len(expected), on_time, len(expected) - on_time]


def test_states_of_partitions_moved_to_another_worker_are_not_scheduled_here() -> None:
    s = settings()
    table: dict[bytes, bytes] = {}
    rt = JoinRuntime(s, table)
    for i, p in enumerate((0, 1)):
        raw = orjson.dumps({"message_id": f"x{i}", "account_id": "a", "message_class": "transactional",
                            "accepted_at": format_ts(T0)})
        rt.handle(s.topic_accepted, p, 0, f"x{i}".encode(), raw, wall=0.0)
    assert rt.snapshot()["pending_messages"] == 2
    rt.reset({0})  # partition 1 now belongs to another worker; the memory store still holds it
    rt.handle(s.topic_ticks, 0, 0, None, b"", wall=0.0)
    assert rt.snapshot()["pending_messages"] == 1 and set(rt.parts) == {0}


def test_the_oldest_pending_message_per_class_is_tracked_and_forgotten_once_ready() -> None:
    s = settings()
    table: dict[bytes, bytes] = {}
    rt = JoinRuntime(s, table)
    for i, (cls, t) in enumerate((("campaign", T0 + 5000), ("campaign", T0), ("transactional", T0 + 9000))):
        raw = orjson.dumps({"message_id": f"o{i}", "account_id": "a", "message_class": cls,
                            "accepted_at": format_ts(t)})
        rt.handle(s.topic_accepted, i % 2, i, f"o{i}".encode(), raw, wall=0.0)
    assert rt.snapshot()["oldest_pending_accepted_at"] == {"transactional": T0 + 9000, "campaign": T0}
    ready = orjson.dumps({"message_id": "o1", "ready_at": format_ts(T0 + 60_000)})
    rt.handle(s.topic_ready, 1, 0, b"o1", ready, wall=0.0)
    assert rt.snapshot()["oldest_pending_accepted_at"]["campaign"] == T0 + 5000


def test_in_live_mode_a_partition_behind_the_workers_newest_event_time_is_unsettled() -> None:
    s = replace(settings(), idle_grace_s=5.0)
    W0 = T0 / 1000 + 7200  # live mode: the wall clock is 2 h past the first event
    rt = JoinRuntime(s, {})
    acc = orjson.dumps({"message_id": "u1", "account_id": "a", "message_class": "transactional",
                        "accepted_at": format_ts(T0)})
    rt.handle(s.topic_accepted, 0, 0, b"u1", acc, wall=W0)
    rt.handle(s.topic_ready, 0, 0, b"zz", orjson.dumps({"message_id": "zz", "ready_at": format_ts(T0)}), wall=W0)
    later = orjson.dumps({"message_id": "u2", "account_id": "a", "message_class": "transactional",
                          "accepted_at": format_ts(T0 + 3_600_000)})
    rt.handle(s.topic_accepted, 1, 0, b"u2", later, wall=W0)  # the worker's clock is now 1 h on
    assert rt.snapshot()["unsettled_partitions"] == 1  # u1's deadline is due, partition 0 has not fired it
    for _ in range(3):  # partition 0 goes quiet; after the grace it catches up and fires
        rt.handle(s.topic_ticks, 0, 0, None, b"", wall=W0 + 10.0)
    assert rt.snapshot()["unsettled_partitions"] == 0
    assert replace(settings()).idle_grace_s == 0.0 and JoinRuntime(settings(), {}).unsettled() == 0


def test_a_message_overdue_before_a_restart_turns_never_ready_after_it() -> None:
    """SIGKILL and restart in replay mode: nothing persists the watermark, so the new runtime starts
    without one; a message already overdue must still become never_ready at its horizon (found by
    the live-mode SIGKILL drill once its kill really came mid-stream)."""
    s = settings()
    table: dict[bytes, bytes] = {}

    def feed(rt: JoinRuntime, at: int, mid: str, ready: bool = True) -> list[dict]:
        raw = orjson.dumps({"message_id": mid, "account_id": "a", "message_class": "transactional",
                            "accepted_at": format_ts(at)})
        out = rt.handle(s.topic_accepted, 0, 0, mid.encode(), raw, wall=0.0)
        if ready:
            out += rt.handle(s.topic_ready, 0, 0, mid.encode(),
                             orjson.dumps({"message_id": mid, "ready_at": format_ts(at + 1000)}), wall=0.0)
        return [orjson.loads(o.value) for o in out if o.kind == "result"]

    rt = JoinRuntime(s, table)
    feed(rt, T0, "stuck", ready=False)
    rows = feed(rt, T0 + 2 * H, "later")
    assert ("stuck", "overdue") in {(r["message_id"], r["status"]) for r in rows}
    rt = JoinRuntime(s, table)  # the restart: same table, nothing in memory
    rt.reset({0})
    rows = feed(rt, T0 + 3 * H, "again") + feed(rt, T0 + 73 * H, "much-later")
    assert ("stuck", "never_ready") in {(r["message_id"], r["status"]) for r in rows}
