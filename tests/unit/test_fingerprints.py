"""Finished messages kept as fingerprints: duplicates count once, across a restart and a
rebalance, and never before the record that finished the message is committed."""
from __future__ import annotations

from dataclasses import replace

import orjson

from pipeline.core.config import load
from pipeline.core.dedup import CHUNK, FP_PREFIX, Fingerprints, fingerprint
from pipeline.core.events import format_ts
from pipeline.stream.runtime import JoinRuntime

MIN, H = 60_000, 3_600_000
T0 = 1_790_000_000_000


def settings():
    return replace(load(), partitions=2, idle_grace_s=0.0, lateness_ms=0)


def acc(mid: str, at: int) -> bytes:
    return orjson.dumps({"message_id": mid, "account_id": "a", "message_class": "transactional",
                         "accepted_at": format_ts(at)})


def rdy(mid: str, at: int) -> bytes:
    return orjson.dumps({"message_id": mid, "ready_at": format_ts(at)})


class Feed:
    def __init__(self, rt: JoinRuntime) -> None:
        self.rt, self.offsets, self.rows = rt, {}, []

    def __call__(self, topic: str, raw: bytes, p: int = 0) -> list[dict]:
        mid = orjson.loads(raw)["message_id"]
        off = self.offsets[(topic, p)] = self.offsets.get((topic, p), -1) + 1
        rows = [orjson.loads(o.value) for o in self.rt.handle(topic, p, off, mid.encode(), raw, wall=0.0)
                if o.kind == "result"]
        self.rows += rows
        return rows


def states(table: dict) -> set[bytes]:
    return {k for k in table if not k.startswith(b"\x00")}


def test_a_finished_message_becomes_a_fingerprint_and_duplicates_count_once_across_restart_and_rebalance() -> None:
    s = settings()
    table: dict[bytes, bytes] = {}
    feed = Feed(JoinRuntime(s, table))
    feed(s.topic_accepted, acc("f1", T0))
    assert [r["status"] for r in feed(s.topic_ready, rdy("f1", T0 + 1000))] == ["on_time"]
    feed(s.topic_accepted, acc("f2", T0 + MIN))  # no commit tracking here: converted at once
    assert states(table) == {b"f2"} and any(k.startswith(FP_PREFIX + b"0:") for k in table)
    assert feed(s.topic_accepted, acc("f1", T0)) == [] and feed(s.topic_ready, rdy("f1", T0 + 1000)) == []
    assert feed.rt.counters["duplicate_accepted"] == 1 and feed.rt.counters["duplicate_ready"] == 1
    for restart in (True, False):  # a new process on the restored table; a rebalance in this one
        if restart:
            feed.rt = JoinRuntime(s, table)
        else:
            feed.rt.reset({0, 1})
        before = feed.rt.counters["duplicate_fingerprinted"]
        assert feed(s.topic_ready, rdy("f1", T0 + 1000)) == []
        assert feed.rt.counters["duplicate_fingerprinted"] == before + 1 and b"f1" not in table
    feed.rt.reset({1})  # partition 0 moved away: its fingerprints are not loaded here
    feed(s.topic_accepted, acc("g1", T0), p=1)
    assert len(feed.rt.parts[1].fps) == 0 and set(feed.rt.parts) == {1}


def test_no_fingerprint_before_the_finishing_record_is_committed_so_a_replayed_record_re_emits_its_row() -> None:
    s = settings()
    table: dict[bytes, bytes] = {}
    rt = JoinRuntime(s, table)
    committed = {s.topic_accepted: 0, s.topic_ready: 0}
    rt.committed = lambda topic, p: committed[topic]
    feed = Feed(rt)
    feed(s.topic_accepted, acc("c1", T0))
    (row,) = feed(s.topic_ready, rdy("c1", T0 + 1000))  # ready offset 0 finished it
    feed(s.topic_accepted, acc("c2", T0 + MIN))
    assert b"c1" in table and rt.counters["fingerprinted"] == 0
    # a crash before the commit: the ready record is processed again and must re-emit the row
    assert feed(s.topic_ready, rdy("c1", T0 + 1000)) == [row]
    committed[s.topic_accepted] = 5  # other topics' commits do not count
    feed(s.topic_accepted, acc("c3", T0 + MIN))
    assert b"c1" in table
    committed[s.topic_ready] = 1  # now that record is never processed again
    feed(s.topic_accepted, acc("c4", T0 + MIN))
    assert b"c1" not in table and rt.counters["fingerprinted"] == 1
    assert feed(s.topic_ready, rdy("c1", T0 + 1000)) == []


def test_fingerprints_expire_with_their_hour_and_their_chunks_leave_the_table() -> None:
    s = replace(settings(), dedup_retention_ms=2 * H)
    table: dict[bytes, bytes] = {}
    feed = Feed(JoinRuntime(s, table))
    feed(s.topic_accepted, acc("e1", T0))
    feed(s.topic_ready, rdy("e1", T0 + 1000))
    feed(s.topic_accepted, acc("e2", T0 + MIN))
    feed(s.topic_ready, rdy("e2", T0 + MIN + 1000))
    assert b"e1" not in table and feed(s.topic_ready, rdy("e1", T0 + 1000)) == []
    end_hour = (T0 + 1000 + 2 * H) // H  # e1's state would have expired in this hour
    feed(s.topic_accepted, acc("x", (end_hour + 1) * H - 1))
    feed(s.topic_ready, rdy("x", (end_hour + 1) * H - 1))
    assert feed(s.topic_ready, rdy("e1", T0 + 1000)) == []  # still within its hour: absorbed
    feed(s.topic_accepted, acc("y", (end_hour + 1) * H + 10))
    feed(s.topic_ready, rdy("y", (end_hour + 1) * H + 10))
    assert not any(k.startswith(FP_PREFIX + b"0:" + str(end_hour).encode()) for k in table)
    # past retention (and its hour): a duplicate is new data again, as before fingerprints
    assert feed.rt.counters["duplicate_fingerprinted"] == 2
    feed(s.topic_ready, rdy("e1", T0 + 1000))
    assert b"e1" in table and feed.rt.counters["duplicate_fingerprinted"] == 2


def test_fingerprint_chunks_fill_up_and_load_back_exactly() -> None:
    fps = Fingerprints(3)
    ids = [f"id-{i}".encode() for i in range(CHUNK * 2 + 7)]
    writes = fps.add(((fingerprint(m), 100 + i % 2) for i, m in enumerate(ids)), 99)
    table = dict(writes)
    assert len(table) == 4 and all(k.startswith(b"\x00fp:3:") for k in table)  # 2 hours x (1 full + 1 open)
    again = Fingerprints(3)
    for k, v in table.items():
        _, hour, seq = k[len(FP_PREFIX):].split(b":")
        again.load(int(hour), int(seq), v)
    again.loaded()
    assert len(again) == len(ids)
    assert all(again.seen(fingerprint(m), 99) for m in ids)
    assert not again.seen(fingerprint(b"other"), 99)
    assert again.seen(fingerprint(ids[0]), 100) and not again.seen(fingerprint(ids[0]), 101)  # hour 100 passed
    assert sorted(again.expire(101)) == sorted(k for k in table if b":100:" in k)


def test_a_fingerprinted_campaign_message_leaves_no_key_in_the_deadline_buckets() -> None:
    """Its 12 h deadline entry would otherwise keep the key object alive for 12 h."""
    s = settings()
    rt = JoinRuntime(s, {})
    feed = Feed(rt)
    raw = orjson.dumps({"message_id": "camp", "account_id": "a", "message_class": "campaign",
                        "accepted_at": format_ts(T0)})
    feed(s.topic_accepted, raw)
    feed(s.topic_ready, rdy("camp", T0 + 5000))
    assert rt.counters["fingerprinted"] == 1
    assert all(k != b"camp" for _, keys in rt.parts[0].deadlines.buckets.values() for k in keys)
