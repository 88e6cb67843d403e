"""What the join agent needs to work a batch of input records at a time.

Per record, Faust's own paths cost more than the join: a table write sends one
changelog record, a `topic.send` another, each through Faust's producer
machinery (~250 us and ~290 us measured here, against ~46 us for the join
itself). So the join gets each fetch of its input topics as one list (the
batched drain, `pipeline/stream/faust_internals/fastconsume.py`), takes what is
queued up to about `JOIN_BATCH_EVENTS` records, runs `JoinRuntime.handle` on
each (the per-record logic stays there, unchanged), and at the batch's end:

- writes each state key once, with its final value (`StateBuffer`): a message
  accepted and ready in the same batch costs one changelog record, not two;
- sends the batch's result rows as one record per results partition
  (`encode_results`; the sink reads both that and the single-row format).

Pure: no Faust, no Kafka. The agent's glue is in `pipeline/stream/app.py`.
"""
from __future__ import annotations

from typing import Any, Iterator, MutableMapping

import orjson

from pipeline.core.errors import StoreError

BATCH_EVENTS = 1000  # Faust's per-record path, for the bench's take_events reference (stream/noop.py)
JOIN_BATCH_EVENTS = 5000  # the join: records worked before the batch's outputs are sent
BATCH_WITHIN_S = 0.2  # take_events: a partial batch is handed over after this long
RESULTS_RECORD_BYTES = 200_000  # results batch records stay below Kafka's and aiokafka's 1 MB limits
BATCH_KIND = b"b"  # {"k": "b", "rows": [...]}: several result rows in one record
_DELETED = None
_MISSING = object()


class StateBuffer(MutableMapping[bytes, bytes]):
    """The state table as the runtime sees it during a batch.

    Reads see the batch's own writes first, then `store`; writes are kept, per key the
    last one, with the partition of the record being worked (`partition`, set by the
    caller before each record), until `take()` hands them over to be written once."""

    def __init__(self, store: MutableMapping[bytes, bytes]) -> None:
        self.store = store
        self.partition = 0
        self.writes: dict[bytes, tuple[int, bytes | None]] = {}

    def __getitem__(self, key: bytes) -> bytes:
        w = self.writes.get(key)
        if w is None:
            value = self.get(key, _MISSING)
            if value is _MISSING:
                raise KeyError(key)
            return value
        if w[1] is _DELETED:
            raise KeyError(key)
        return w[1]

    def get(self, key: bytes, default: Any = None) -> Any:  # the hot path: no exception on a miss
        w = self.writes.get(key)
        if w is None:
            try:
                return self.store.get(key, default)
            except Exception as exc:  # noqa: BLE001 - a miss is not an exception here: the store failed
                raise StoreError(f"reading the join state failed: {exc!r}"[:300]) from exc
        return default if w[1] is _DELETED else w[1]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes[key] = (self.partition, value)

    def __delitem__(self, key: bytes) -> None:
        if key not in self:
            raise KeyError(key)
        self.writes[key] = (self.partition, _DELETED)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes):
            return False
        w = self.writes.get(key)
        return self.get(key, _MISSING) is not _MISSING if w is None else w[1] is not _DELETED

    def __iter__(self) -> Iterator[bytes]:
        return (key for key, _ in self.items())

    def __len__(self) -> int:
        return len(self.items())

    def items(self) -> Any:  # type: ignore[override]
        """Every (key, value): the store's own items, overlaid with the batch's writes. One pass
        over the store's iterator, never a lookup per key: Faust's RocksDB store answers a lookup
        from the partition of the current event only (one database per partition), so reading
        other partitions' keys one by one raises KeyError (issue #18)."""
        writes = self.writes
        try:
            out = [(k, v) for k, v in self.store.items() if k not in writes]
        except Exception as exc:  # noqa: BLE001 - see StoreError
            raise StoreError(f"reading the join state failed: {exc!r}"[:300]) from exc
        out += [(k, v) for k, (_, v) in writes.items() if v is not _DELETED]
        return out

    def take(self) -> dict[int, list[tuple[bytes, bytes | None]]]:
        """The batch's writes by partition, each key once with its final value (None: deleted);
        the buffer is empty afterwards."""
        out: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for key, (p, value) in self.writes.items():
            out.setdefault(p, []).append((key, value))
        self.writes = {}
        return out


def encode_results(values: list[bytes], limit: int = RESULTS_RECORD_BYTES) -> list[bytes]:
    """Result rows (each an encoded JSON object) -> as few batch records as fit under `limit` bytes."""
    out: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for v in values:
        if chunk and size + len(v) + 1 > limit:
            out.append(_batch(chunk))
            chunk, size = [], 0
        chunk.append(v)
        size += len(v) + 1
    if chunk:
        out.append(_batch(chunk))
    return out


def _batch(values: list[bytes]) -> bytes:
    return b'{"k":"b","rows":[' + b",".join(values) + b"]}"


def decode_results(value: bytes | None) -> list[dict[str, Any]]:
    """A results record -> its rows: a batch record, or one row (the earlier format)."""
    doc = orjson.loads(value or b"null")
    if doc is None:
        return []
    if doc.get("k") == "b":
        return doc["rows"]
    return [doc]
