"""What a Faust table does when one of its changelog records is delivered, for the join loop's
record batches (faust-streaming 0.15.3).

The join loop sends the table's changelog itself, as whole record batches
(`pipeline.stream.batchsend`), so Faust's per-record callback `Collection._on_changelog_sent`
never runs for them. `changelog_sent` does what it does, once per delivered batch. Called from the
batch's delivery callback (`pipeline.stream.app`), on the event loop. Mirrored, not called:
tests/unit/test_faust_behaviour.py runs both on the same deliveries and compares the stores.
"""
from __future__ import annotations

from typing import Any

from faust.types import TP


def changelog_sent(store: Any, fut: Any, count: int) -> None:
    """A record batch of `count` changelog records was delivered (or failed): as
    `Collection._on_changelog_sent` does per record, the store remembers the changelog offset it
    holds (the RocksDB store keeps it per partition and, at recovery, reads the changelog only
    after it; the memory store ignores it). For a batch that is its last record's offset (the
    batch's future resolves to its first record's metadata). A failed or cancelled delivery sets
    nothing: the caller counts it as a lost send, and the worker stops without committing.

    Faust's at-least-once branch only: its exactly-once branch (offsets held until the input
    commit) is not mirrored, as the app runs no transactions."""
    if fut.cancelled() or fut.exception() is not None:
        return
    res = fut.result()
    if res is not None:
        store.set_persisted_offset(TP(res.topic, res.partition), res.offset + count - 1)
