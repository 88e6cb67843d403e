"""The changelog's record batches (pipeline/stream/batchsend.py): every record goes out once, in
order, split into as many record batches as the producer's batch size needs, tombstones kept."""
from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from pipeline.stream.batchsend import send_records


class Producer:
    """aiokafka's batch API as the join loop uses it: real BatchBuilders, sends recorded."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.sent: list[tuple[str, int, BatchBuilder]] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future:
        self.sent.append((topic, partition, batch))
        return asyncio.get_running_loop().create_future()


def _records(batch: BatchBuilder) -> list[tuple[bytes | None, bytes | None]]:
    out = []
    records = MemoryRecords(bytes(batch._builder.build()))  # noqa: SLF001 - the bytes Kafka would get
    while records.has_next():
        for rec in records.next_batch():
            out.append((rec.key, rec.value))
    return out


def _send(producer: Producer, records: list[tuple[bytes, bytes | None]]) -> list[int]:
    counts: list[int] = []
    n = asyncio.run(send_records(producer, "t-changelog", 3, records, lambda fut, count: counts.append(count)))
    assert n == len(records)
    return counts


def test_records_go_out_once_in_order_across_batches_with_tombstones() -> None:
    records = [(f"k{i:04d}".encode(), None if i % 7 == 0 else b"v" * (i % 50)) for i in range(1000)]
    producer = Producer(batch_size=2048)
    counts = _send(producer, records)
    assert len(producer.sent) > 5  # the batch size forced several record batches
    assert all(topic == "t-changelog" and p == 3 for topic, p, _ in producer.sent)
    assert counts == [len(_records(b)) for _, _, b in producer.sent]
    assert [r for _, _, b in producer.sent for r in _records(b)] == records


def test_a_record_larger_than_the_batch_size_goes_alone_and_nothing_is_sent_for_none() -> None:
    big = (b"big", b"x" * 5000)
    producer = Producer(batch_size=1024)
    counts = _send(producer, [(b"a", b"1"), big, (b"b", b"2")])
    assert [r for _, _, b in producer.sent for r in _records(b)] == [(b"a", b"1"), big, (b"b", b"2")]
    assert sum(counts) == 3
    empty = Producer(batch_size=1024)
    assert _send(empty, []) == [] and empty.sent == []
