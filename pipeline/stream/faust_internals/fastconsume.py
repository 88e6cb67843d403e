"""A batched delivery path for the join agent's input topics.

Faust hands every fetched record to its conductor one at a time, each inside
`Service.wait_first` (a task and a wait per record), then through a stream
queue, the stream's per-event context and the agent's iteration: py-spy put
~57% of a no-op agent's time there, ~110 us per record on this machine. The
join works records in batches anyway (pipeline/core/batching.py), so for its input
topics this replaces the consumer's drain loop with one that collects each
fetch's records and puts them on a bounded queue as one list. Records of every
other topic (the table's changelog during recovery) take Faust's per-record path
(its callback, read-offset rule and flow suspension). Left out of Faust's loop:
gap tracking and the commit every `broker_commit_every` acks, both only for
topics with acks on, of which the join consumes none. The copy is checked
against Faust's original in tests/unit/test_faust_behaviour.py.

What Faust's path did that still matters here:
- flow control: `getmany` stops yielding when flow is suspended (rebalance) or
  the generation changes, as before; a list already queued may hold records of
  partitions revoked since: the agent drops records of partitions it does not
  own, and its OffsetTracker skips re-deliveries and seeks back over gaps;
- backpressure: the queue is bounded; a full queue stops fetching;
- read offsets and acks: the input topics run with acks off and outside
  Faust's read-offset check (faust_internals/consumer.py `_ReadOffsets`) already.
"""
from __future__ import annotations

import asyncio
import logging
import types
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING

log = logging.getLogger("mailsla.worker")
MAX_LIST = 5000  # records per queued list
QUEUED_LISTS = 4  # lists waiting for the agent before fetching stops


def install(consumer: Any, topics: set[str]) -> asyncio.Queue:
    """Route `topics` of `consumer` to the returned queue of record lists (Faust Messages)."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUED_LISTS)

    async def _drain_messages(self: Any, fetcher: Any) -> None:
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set  # noqa: SLF001 - as Faust's own loop does
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                batch: list[Any] = []
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in getmany(timeout=1.0):
                        if tp.topic in topics:
                            batch.append(message)
                            if len(batch) >= MAX_LIST:
                                await queue.put(batch)
                                batch = []
                            continue
                        # any other topic: Faust's per-record path, as in Consumer._drain_messages
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    if batch:
                        await queue.put(batch)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            log.exception("batched drain raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    consumer._drain_messages = types.MethodType(_drain_messages, consumer)  # noqa: SLF001
    return queue


async def batches(queue: asyncio.Queue, max_records: int) -> list[Any]:
    """The next list of records: waits for one, then takes what else is queued, up to about
    `max_records`."""
    out = await queue.get()
    while len(out) < max_records and not queue.empty():
        out += queue.get_nowait()
    return out
