"""The join agent's batch helpers: state written once per key per batch, results packed in
batch records the sink reads back (the single-row format stays readable), and commits held
while a batch's outputs are unsent."""
from __future__ import annotations

import orjson

from pipeline.core.batching import StateBuffer, decode_results, encode_results
from pipeline.stream.offsets import PROCESS, OffsetTracker


def test_reads_see_the_batch_writes_and_each_key_is_written_once_with_its_final_value() -> None:
    store = {b"a": b"1", b"b": b"2"}
    buf = StateBuffer(store)
    buf.partition = 3
    buf[b"a"] = b"10"
    buf[b"c"] = b"30"
    buf.partition = 1
    buf[b"c"] = b"31"
    del buf[b"b"]
    assert buf.get(b"a") == b"10" and buf.get(b"b") is None and buf[b"c"] == b"31"
    assert b"b" not in buf and b"c" in buf and sorted(buf) == [b"a", b"c"]
    assert dict(buf.items()) == {b"a": b"10", b"c": b"31"}
    assert store == {b"a": b"1", b"b": b"2"}  # nothing written before the batch's end
    assert buf.take() == {3: [(b"a", b"10")], 1: [(b"c", b"31"), (b"b", None)]}
    assert buf.writes == {} and buf.get(b"a") == b"1"


def test_results_batches_round_trip_split_under_the_size_limit_and_single_rows_still_read() -> None:
    rows = [{"k": "m", "message_id": f"m{i}", "rev": i} for i in range(50)]
    values = [orjson.dumps(r) for r in rows]
    records = encode_results(values, limit=400)
    assert len(records) > 1 and all(len(r) < 400 + 40 for r in records)
    assert [row for rec in records for row in decode_results(rec)] == rows
    assert decode_results(values[0]) == [rows[0]]
    assert decode_results(None) == []


def test_offsets_done_in_a_held_batch_are_committed_only_after_release() -> None:
    t = OffsetTracker()
    t.assign({"p0": 10})
    t.hold()
    for o in (10, 11, 12):
        assert t.check("p0", o, 0.0) == PROCESS
        t.done("p0", o)
    assert t.to_commit() == {}
    t.release()
    assert t.to_commit() == {"p0": 13}
    t.hold()
    t.done("p0", 13)
    t.revoke({"p0"})
    assert t.to_commit() == {}



def test_repeated_warnings_that_differ_only_in_numbers_are_one_kind() -> None:
    import logging

    from pipeline.stream.faust_internals.lifecycle import RateLimitFilter

    f = RateLimitFilter(every=60.0)

    def rec(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, (), None)

    shown = [f.filter(rec("faust.transport.producer", f"producer buffer full size {n}")) for n in range(101, 111)]
    assert shown == [True] + [False] * 9
    timers = [f.filter(rec("mode.timers", f"Timer x is overlapping (interval=1.0 runtime={r})")) for r in (1.2, 3.4)]
    assert timers == [True, False]
