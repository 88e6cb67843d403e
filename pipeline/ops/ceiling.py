"""The bench's ceiling: how fast a bare aiokafka consumer with orjson reads the join's input topics.

Run by `mailsla bench` after producing its events: no Faust, no join, one process, the same
topics from the start. `count_records` is the counting loop on its own (any object with aiokafka's
`getmany`), so a unit test drives it with a fake consumer; a consumer that stops delivering
before `n` records raises `Short` (the figure would otherwise be of fewer records than claimed).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.core.config import Settings
from pipeline.stream.kafka import client_kwargs

FETCH_RECORDS = 10_000  # records per getmany, as max_poll_records
IDLE_S = 30.0  # no record for this long before n were read: the topics hold fewer


class Short(RuntimeError):
    """The consumer went quiet before `n` records: the rate would be of a different count."""


@dataclass(frozen=True)
class Count:
    """What one read of `n` records took: `records` counted (each once), `seconds` from the first
    fetch request to the last record parsed, `fetches` the fetches that returned records."""

    records: int
    seconds: float
    fetches: int

    @property
    def per_s(self) -> float:
        return self.records / max(1e-9, self.seconds)


async def count_records(consumer: Any, n: int, parse: Callable[[bytes], Any] = orjson.loads,
                        clock: Callable[[], float] = time.perf_counter, idle_s: float = IDLE_S) -> Count:
    """Read until `n` records were seen, parsing each value once; the time covers every fetch,
    the first included. Raises `Short` after `idle_s` without a record."""
    got = fetches = 0
    t0 = quiet_since = clock()
    while got < n:
        batch = await consumer.getmany(timeout_ms=1000, max_records=FETCH_RECORDS)
        if not batch:
            if clock() - quiet_since > idle_s:
                raise Short(f"read {got:,} of {n:,} records, then nothing for {idle_s:.0f}s")
            continue
        fetches += 1
        for recs in batch.values():  # one list per partition
            for r in recs:  # touch each value as the worker would
                parse(r.value)
            got += len(recs)  # this partition's records, once
        quiet_since = clock()
    return Count(got, clock() - t0, fetches)


async def ceiling(s: Settings, n: int) -> Count:
    """A fresh consumer reading `n` records of the input topics from the start. Its partitions are
    assigned by hand (no group to join: nothing but fetching and parsing is timed), and the clock
    starts before its first fetch, so records it fetched in the background count too."""
    c = AIOKafkaConsumer(bootstrap_servers=s.kafka, enable_auto_commit=False, max_poll_records=FETCH_RECORDS,
                         client_id=f"ceiling-{uuid.uuid4().hex[:6]}", **client_kwargs(s))
    await c.start()
    try:
        parts = [TopicPartition(t, p) for t in (s.topic_accepted, s.topic_ready) for p in range(s.partitions)]
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        return await count_records(c, n)
    finally:
        await c.stop()
