"""The join state as the join loop sees it: the Faust table's store, one partition at a time.

Used by `pipeline.stream.app` for every input record (`enter`) and at the end of every batch
(`flush`). Faust's stores differ in one way that matters here: the memory store is one dict for
every partition, the RocksDB store (`MAILSLA_STORE=rocksdb://`, what the deployment files ship)
one database per partition, and it answers a read or a write from the partition of Faust's
current event. The loop's records do not come through a Faust stream, so this module says the
partition before each record and before each partition's writes. A failure of the store is a
`StoreError`: the worker stops non-zero (never a dead letter per record).
"""
from __future__ import annotations

from typing import Any, MutableMapping

from pipeline.core.batching import StateBuffer
from pipeline.core.errors import StoreError
from pipeline.stream.faust_internals.consumer import in_partition


class TableState:
    """A `StateBuffer` over `store` (Faust's `table.data`), with the partition context it needs."""

    def __init__(self, store: MutableMapping[bytes, bytes]) -> None:
        self.store = store
        self.buffer = StateBuffer(store)

    def enter(self, partition: int) -> None:
        """The next reads and writes are for a record of `partition`."""
        in_partition(partition)
        self.buffer.partition = partition

    def flush(self) -> dict[int, list[tuple[bytes, bytes | None]]]:
        """Write the batch's final values into the store, each partition's under its own context,
        and return them by partition (for the changelog). Reads after this see them."""
        writes = self.buffer.take()
        store: Any = self.store
        try:
            for p, kvs in writes.items():
                in_partition(p)
                for key, value in kvs:
                    if value is None:
                        store.pop(key, None)
                    else:
                        store[key] = value
        except Exception as exc:  # noqa: BLE001 - see StoreError
            raise StoreError(f"writing the join state failed: {exc!r}"[:300]) from exc
        finally:
            in_partition(None)
        return writes
