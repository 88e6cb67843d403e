"""Real Faust, mode and aiokafka objects made without a broker, and small fakes for the edges
that would talk to Kafka (tests/unit/test_faust_behaviour*.py, test_tablestate.py). Only the
network is faked: what Faust or mode does with what comes back is their own code."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

import faust
from aiokafka.producer.message_accumulator import BatchBuilder, MessageBatch
from aiokafka.structs import TopicPartition
from faust.transport.consumer import Consumer, Fetcher
from faust.types import TP, Message

INPUT = "fb-input"  # a topic the join reads in lists (keep_read_offsets, fastconsume)
OTHER = "fb-input-changelog"  # any other topic: Faust's per-record path
FAUST_DRAIN = Consumer._drain_messages  # Faust's own drain loop, before any replacement
HANG_S = 30.0  # a drain loop that never ends fails the test instead of hanging it


def new_app(name: str = "fb", **kw: Any) -> faust.App:
    """An app whose broker nobody listens on: nothing here connects."""
    return faust.App(name, broker="kafka://127.0.0.1:1", web_enabled=False, **kw)


def message(topic: str, partition: int, offset: int) -> Message:
    return Message(topic, partition, offset, 0.0, 0, None, b"k%d" % offset, b"v%d" % offset, None)


def tpo(messages: Iterable[Message]) -> list[tuple[str, int, int]]:
    return [(m.topic, m.partition, m.offset) for m in messages]


class Fetches:
    """The broker behind `Consumer.getmany`: each call yields the next planned fetch's records;
    once the plan is done, Faust's Fetcher is stopped (mode's `stop`), which ends a drain loop.
    `at_end`, if given, is raised instead (a stopped consumer, a cancel). `during(consumer)` runs
    inside each fetch (to look at the consumer while it fetches)."""

    def __init__(self, fetches: list[list[tuple[str, int, int]]], at_end: BaseException | None = None,
                 during: Callable[[Any], None] | None = None) -> None:
        self.plan = [[message(*r) for r in fetch] for fetch in fetches]
        self.at_end = at_end
        self.during = during

    def install(self, consumer: Any, fetcher: Fetcher) -> None:
        async def getmany(timeout: float) -> Any:
            if self.during:
                self.during(consumer)
            if not self.plan:
                if self.at_end is not None:
                    raise self.at_end
                await fetcher.stop()
                return
            for m in self.plan.pop(0):
                yield m.tp, m

        consumer.getmany = getmany


class Delivered:
    """The consumer's callback (Faust's conductor): records what reaches it. A record at `hold`
    offset waits until Faust suspends the flow (`stop_flow`, as at a rebalance), then for ever."""

    def __init__(self, consumer: Any, hold: int | None = None) -> None:
        self.consumer = consumer
        self.hold = hold
        self.records: list[Message] = []

    async def __call__(self, m: Message) -> None:
        self.records.append(m)
        if m.offset == self.hold:
            self.consumer.stop_flow()
            await asyncio.Event().wait()


async def drain(consumer: Any, fetches: Fetches, original: bool = False, hold: int | None = None) -> Delivered:
    """Run a drain loop of `consumer` over `fetches`, as Faust's Fetcher does: Faust's own
    (`original`) or whatever the instance has now. Returns what reached the callback."""
    delivered = consumer.callback = Delivered(consumer, hold)
    fetcher = Fetcher(consumer.app)
    fetches.install(consumer, fetcher)
    run = FAUST_DRAIN(consumer, fetcher) if original else consumer._drain_messages(fetcher)
    await asyncio.wait_for(run, HANG_S)
    return delivered


async def seek(consumer: Any, tp: TP, offset: int) -> None:
    """Faust's `Consumer.seek`, with the seek on the aiokafka consumer (the thread's) left out."""
    async def _seek(partition: TP, offset: int) -> None:
        return None
    consumer._seek = _seek
    await consumer.seek(tp, offset)


class AIOKafkaConsumer:
    """The aiokafka consumer on Faust's consumer thread: assigned partitions and commits."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.started = False
        self.commits: list[dict[TopicPartition, Any]] = []

    async def start(self) -> None:
        self.started = True

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(dict(offsets))


class AIOKafkaProducer:
    """The aiokafka producer under Faust's: records sends, delivers nothing."""

    def __init__(self) -> None:
        self.started = False
        self.sent: list[tuple[str, bytes | None, int | None]] = []
        self.futures: list[asyncio.Future] = []  # one per send: the test delivers or fails it

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def send(self, topic: str, value: bytes | None, *, key: bytes | None = None, partition: int | None = None,
                   timestamp_ms: int | None = None, headers: Any = None) -> asyncio.Future:
        self.sent.append((topic, key, partition))
        self.futures.append(asyncio.get_running_loop().create_future())
        return self.futures[-1]


def on_this_loop(thread: Any) -> None:
    """Run what Faust hands to its consumer thread (`call_thread`) on the test's loop: the thread
    itself is not started (it would connect)."""
    async def call_thread(fun: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> Any:
        return await fun(*args, **kw)
    thread.call_thread = call_thread


class SignalLoop:
    """An event loop as far as mode's signal handlers see it."""

    def __init__(self) -> None:
        self.handlers: dict[int, Callable[[], None]] = {}

    def add_signal_handler(self, sig: int, callback: Callable[[], None]) -> None:
        self.handlers[sig] = callback


class Connection:
    """A broker connection of aiokafka's client: answers every request with `response`."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.requests: list[Any] = []

    def connected(self) -> bool:
        return True

    async def send(self, request: Any) -> Any:
        self.requests.append(request)
        return self.response

    def close(self, reason: Any = None) -> asyncio.Future:
        closed = asyncio.get_running_loop().create_future()
        closed.set_result(None)
        return closed


def table(kind: str, path: Path, partitions: int = 4) -> Any:
    """A real Faust table on the `kind` store ("memory", "rocksdb"), as the worker makes it, every
    partition assigned (as after a rebalance)."""
    app = new_app(f"ts-{kind}", store=f"{kind}://", datadir=str(path), topic_partitions=partitions)
    made = app.Table("join-state", default=None, partitions=partitions, key_type=bytes, value_type=bytes)
    made.key_serializer = made.value_serializer = "raw"
    topic = made.changelog_topic.get_topic_name()
    app.assignor.assigned_actives = lambda: {TP(topic, p) for p in range(partitions)}
    return made


def delivered_batch(topic: str, partition: int, base_offset: int, count: int) -> tuple[asyncio.Future, list]:
    """aiokafka's own record batch of `count` records, delivered at `base_offset`: the batch's
    future (what `send_batch` returns) and each record's (what `send` returns). Needs a loop."""
    batch = MessageBatch(TopicPartition(topic, partition), BatchBuilder(16384, 0), 30.0, 0.0)
    records = [batch.append(b"k%d" % i, b"v", 0) for i in range(count)]
    batch.done(base_offset=base_offset)
    return batch.future, records
