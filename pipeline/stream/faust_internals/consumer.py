"""What the join worker changes or reads inside Faust's consumer (faust-streaming 0.15.3).

Used by `pipeline.stream.app.create_app` when it wires the join agent, and by its timers while the
worker runs. Each function here touches a private attribute of Faust's consumer; the inventory in
`pipeline.stream.faust_internals.PRIVATE_ATTRIBUTES` names them, and
tests/unit/test_faust_internals.py fails when an upgrade of faust-streaming removes one. A failure
at run time (an attribute gone) surfaces as an AttributeError at worker start, never as lost data.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from typing import Any

import faust
from faust.streams import _current_event

from pipeline.core.errors import first_line

log = logging.getLogger("mailsla.worker")

# Faust's "current event" context variable: the RocksDB store takes the partition of a table read
# or write from it (`event.message.partition`; one database per partition). The join loop's records
# do not come through a Faust stream, so it says the partition itself (`in_partition`).
current_event = _current_event


class _PartitionMessage:
    __slots__ = ("partition",)

    def __init__(self, partition: int) -> None:
        self.partition = partition


class _PartitionEvent:
    """Stands in for Faust's current event: all the stores read of it is `.message.partition`."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, partition: int) -> None:
        self.message = _PartitionMessage(partition)


_EVENTS: dict[int, _PartitionEvent] = {}  # one per partition, alive for good (the variable holds a weakref)


def in_partition(partition: int | None) -> None:
    """Table reads and writes from here on are of `partition` (None: of no partition, so Faust's
    RocksDB store searches every database it has open)."""
    if partition is None:
        _current_event.set(None)
        return
    event = _EVENTS.get(partition)
    if event is None:
        event = _EVENTS[partition] = _PartitionEvent(partition)
    _current_event.set(weakref.ref(event))


class _ReadOffsets(defaultdict):
    """Faust's read positions, except for our input topics.

    Faust drops any record below the last offset it read from a partition. After a seek
    (its own at recovery, or ours when records were skipped) the rest of the batch in
    flight moves that mark up again, so the re-fetched records are dropped too: seen
    after a SIGKILL, the first records after the committed offset never reached the
    agent. For the input topics the agent's OffsetTracker orders records itself."""

    def __init__(self, untracked: set[str]) -> None:
        super().__init__(lambda: None)
        self.untracked = untracked

    def __getitem__(self, tp: Any) -> Any:
        return None if tp.topic in self.untracked else super().__getitem__(tp)


def keep_read_offsets(consumer: Any, untracked: set[str]) -> None:
    """Replace `Consumer._read_offset` (see `_ReadOffsets`) before the worker starts fetching."""
    consumer._read_offset = _ReadOffsets(untracked)  # noqa: SLF001


def put_back_buffered(consumer: Any) -> None:
    """Put every partition Faust took out of the fetcher for a full stream buffer back in
    (`Consumer._buffered_partitions`; why: the `unstick_fetcher` timer of the join app).
    If the buffer is really still full, Faust takes it out again on the next record. Read
    directly (no default): a rename in Faust fails here, loudly, instead of disabling this."""
    for tp in list(consumer._buffered_partitions):  # noqa: SLF001 - see PRIVATE_ATTRIBUTES
        consumer.on_buffer_drop(tp)


COMMIT_TIMEOUT_S = 10.0


async def commit_quietly(app: faust.App, offsets: dict[Any, int]) -> dict[Any, int]:
    """Commit offsets of our choosing; returns those committed (none when Kafka refuses or does
    not answer, only the assigned ones otherwise).

    Not Faust's `Consumer._commit`: that one crashes the whole worker on any commit error
    other than "already rebalanced" (a coordinator gone during a broker outage, a timeout),
    and waits without limit for a coordinator while the broker is down. A failed commit is
    harmless: the records are processed again after a restart or rebalance, and the join
    skips or de-duplicates them."""
    from aiokafka.errors import KafkaError
    from aiokafka.structs import OffsetAndMetadata, TopicPartition

    thread = app.consumer._thread  # noqa: SLF001 - the aiokafka consumer lives on Faust's consumer thread

    async def commit(offs: dict[Any, int]) -> dict[Any, int]:
        consumer = thread._ensure_consumer()  # noqa: SLF001
        assigned = consumer.assignment()
        mine = {tp: o for tp, o in offs.items() if TopicPartition(tp.topic, tp.partition) in assigned}
        if not mine:
            return {}
        try:
            await asyncio.wait_for(consumer.commit({TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(o, "")
                                                    for tp, o in mine.items()}), COMMIT_TIMEOUT_S)
        except (KafkaError, asyncio.TimeoutError) as exc:
            log.warning("commit of input offsets failed (%s); those records are processed again later, "
                        "harmlessly", first_line(exc, 200))
            return {}
        return mine
    return await thread.call_thread(commit, dict(offsets))


def aiokafka_producer(app: faust.App) -> Any:
    """The aiokafka producer under Faust's: the join loop queues its changelog records on it as
    whole record batches (`pipeline.stream.batchsend`), which Faust's `send` cannot do."""
    return app.producer._ensure_producer()  # noqa: SLF001 - see PRIVATE_ATTRIBUTES
