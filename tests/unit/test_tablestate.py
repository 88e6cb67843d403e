"""The join state over both Faust stores: the memory store (one dict) and the RocksDB store
(one database per partition, answering from the partition of Faust's current event), which is
what docker-compose and deploy/k8s ship (issue #18: after a restart the rebuild read other
partitions' keys one by one and every record became an internal-error dead letter)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import faust
import orjson
import pytest
from faust.types import TP

from pipeline.core.config import load
from pipeline.core.errors import StoreError
from pipeline.core.events import format_ts
from pipeline.stream.runtime import JoinRuntime
from pipeline.stream.tablestate import TableState

PARTS = 4
T0 = 1_790_000_000_000


def faust_store(kind: str, path: Path) -> Any:
    """The store of a real Faust table, as the worker makes it, all partitions assigned."""
    app = faust.App(f"ts-{kind}", store=f"{kind}://", datadir=str(path), topic_partitions=PARTS)
    table = app.Table("join-state", default=None, partitions=PARTS, key_type=bytes, value_type=bytes)
    table.key_serializer = table.value_serializer = "raw"
    topic = table.changelog_topic.get_topic_name()
    app.assignor.assigned_actives = lambda: {TP(topic, p) for p in range(PARTS)}  # as after an assignment
    return table.data


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    yield faust_store(request.param, tmp_path)


def test_items_see_every_partition_while_the_context_is_one_partition(store: Any) -> None:
    ts = TableState(store)
    for p in range(PARTS):
        ts.enter(p)
        ts.buffer[b"k%d" % p] = b"v%d" % p
    ts.flush()
    ts.enter(3)
    del ts.buffer[b"k3"]
    ts.enter(1)  # a record of partition 1 is being worked
    ts.buffer[b"new"] = b"n"
    assert dict(ts.buffer.items()) == {b"k0": b"v0", b"k1": b"v1", b"k2": b"v2", b"new": b"n"}
    assert ts.buffer.get(b"k1") == b"v1" and b"k3" not in ts.buffer and len(ts.buffer) == 4


def test_the_rocksdb_store_answers_lookups_from_the_current_partition_only(tmp_path: Path) -> None:
    """The premise of the fix: per-key lookups of another partition's keys fail in the RocksDB store."""
    ts = TableState(faust_store("rocksdb", tmp_path))
    for p in range(PARTS):
        ts.enter(p)
        ts.buffer[b"k%d" % p] = b"v%d" % p
    ts.flush()
    ts.enter(1)
    assert ts.store.get(b"k1") == b"v1" and ts.store.get(b"k0") is None


def _accepted(mid: str, at: int) -> bytes:
    return orjson.dumps({"message_id": mid, "account_id": "a", "message_class": "transactional",
                         "accepted_at": format_ts(at)})


def test_a_rebuild_after_an_assignment_finds_the_states_of_every_partition(store: Any) -> None:
    s = replace(load(), partitions=PARTS, idle_grace_s=0.0)
    ts = TableState(store)
    rt = JoinRuntime(s, ts.buffer)
    for i in range(12):
        p = i % PARTS
        ts.enter(p)
        rt.handle(s.topic_accepted, p, i // PARTS, f"m{i}".encode(), _accepted(f"m{i}", T0 + i), wall=0.0)
    ts.flush()
    assert rt.snapshot()["pending_messages"] == 12
    rt = JoinRuntime(s, ts.buffer)  # a restart: the states are in the store, nothing in memory
    rt.reset(set(range(PARTS)))
    ts.enter(2)
    rt.handle(s.topic_ticks, 2, 0, None, b"", wall=0.0)  # the first record rebuilds from the table
    assert rt.snapshot()["pending_messages"] == 12 and not rt.stale


class _Broken(dict):
    def get(self, key: Any, default: Any = None) -> Any:
        raise OSError("IO error: No such file or directory")

    def items(self) -> Any:
        raise OSError("IO error: No such file or directory")


def test_a_failing_store_is_a_store_error_not_a_record_error() -> None:
    s = replace(load(), partitions=PARTS, idle_grace_s=0.0)
    ts = TableState(_Broken())
    rt = JoinRuntime(s, ts.buffer)
    rt.reset({0})
    with pytest.raises(StoreError, match="join state"):
        rt.handle(s.topic_ticks, 0, 0, None, b"", wall=0.0)
    rt.stale = False
    with pytest.raises(StoreError, match="reading the join state"):
        rt.handle(s.topic_accepted, 0, 0, b"m", _accepted("m", T0), wall=0.0)
