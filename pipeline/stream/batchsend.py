"""Records to one topic partition as whole Kafka record batches.

The join writes each state key it changed once per batch of input records: thousands of
changelog records per batch. Sent one by one (`producer.send`), each costs a future, a
metadata check and an accumulator append, and its delivery resolves that future: py-spy put
~30% of the join process there (aiokafka's `MessageBatch.done`, `create_future`,
`partitions_for_topic`). Here the records of one partition go into aiokafka's
`BatchBuilder`s and each builder is queued as a unit (`send_batch`): one future per record
batch of up to the producer's `max_batch_size`. Kafka sees the same records in the same
order, so Faust's changelog recovery reads them as if `send` had written them.

Runs in the join loop at the end of each batch; a failed delivery surfaces on the returned
futures, which the caller treats as a lost send (no commit after it).
"""
from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, Iterable


async def send_records(producer: Any, topic: str, partition: int,
                       records: Iterable[tuple[bytes, bytes | None]],
                       on_done: Callable[[Any, int], None]) -> int:
    """Queue `records` (key, value; None = tombstone) for `topic`/`partition` with the aiokafka
    `producer`, in order. `on_done(future, count)` is called for each queued record batch
    with its delivery future (its result: the metadata of the batch's first record) and the
    number of records in it. Returns the number of records queued."""
    now = int(time.time() * 1000)
    builder = producer.create_batch()
    n = count = 0
    for key, value in records:
        if builder.append(timestamp=now, key=key, value=value) is None:  # full: a builder takes any first record
            on_done(await _queue(producer, builder, topic, partition), count)
            builder = producer.create_batch()
            builder.append(timestamp=now, key=key, value=value)
            count = 0
        count += 1
        n += 1
    if count:
        on_done(await _queue(producer, builder, topic, partition), count)
    return n


def _queue(producer: Any, builder: Any, topic: str, partition: int) -> Awaitable[Any]:
    return producer.send_batch(builder, topic, partition=partition)
