"""Faust internals guarded by behaviour (issue #18), continued from test_faust_behaviour.py: the
app's producer and consumer thread, its sensors, the table's store, the worker's signal and
crash hooks, and aiokafka's client. Real objects made without a broker; tests/unit/faust_fakes.py
fakes the network only. Each test says what breaking it looks like."""
from __future__ import annotations

import asyncio
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer as RealAIOKafkaConsumer
from aiokafka.protocol.metadata import MetadataResponse_v1
from aiokafka.structs import OffsetAndMetadata, RecordMetadata, TopicPartition
from faust.exceptions import ConsumerNotStarted, NotReady
from faust.sensors import Monitor, SensorDelegate
from faust.types import TP
from faust_fakes import (INPUT, AIOKafkaConsumer, AIOKafkaProducer, Connection, SignalLoop, delivered_batch,
                         new_app, on_this_loop, table)

from pipeline.core.config import load
from pipeline.stream.app import make_app
from pipeline.stream.faust_internals.changelog import changelog_sent
from pipeline.stream.faust_internals.consumer import aiokafka_producer, commit_quietly, in_partition
from pipeline.stream.faust_internals.lifecycle import guarded_worker
from pipeline.stream.faust_internals.sensors import QuietSensors, SendFailures


def _producer_app() -> tuple[faust.App, AIOKafkaProducer]:
    app = new_app()
    aio = AIOKafkaProducer()
    app.producer._new_producer = lambda transactional_id=None: aio  # noqa: SLF001 - the network edge
    return app, aio


def test_ensure_producer_is_the_aiokafka_producer_faust_sends_through_and_raises_before_start() -> None:
    """`Producer._ensure_producer`. Broken looks like: a producer that is not the one Faust's
    `send` uses (our changelog batches would go out on another connection, unordered with
    Faust's), or None instead of an error before start."""
    async def main() -> None:
        app, aio = _producer_app()
        with pytest.raises(NotReady):
            aiokafka_producer(app)
        await app.topic("t", key_serializer="raw", value_serializer="raw").send(key=b"k", value=b"v", partition=2)
        assert aio.started and aiokafka_producer(app) is aio  # Faust started it, for its own send
        assert aio.sent == [("t", b"k", 2)]
        await app.producer.stop()

    asyncio.run(main())


def test_faust_and_commit_quietly_commit_through_the_same_aiokafka_consumer() -> None:
    """`Consumer._thread` and `AIOKafkaConsumerThread._ensure_consumer`: the aiokafka consumer
    Faust's thread created and started is the one Faust's own commit uses, and ours. Broken looks
    like: our commit reaching another consumer (offsets never committed), or other offsets."""
    async def main() -> tuple:
        app = new_app()
        aio = AIOKafkaConsumer({TopicPartition(INPUT, 0)})
        thread = app.consumer._thread  # noqa: SLF001 - the name under test
        thread._create_consumer = lambda loop: aio  # noqa: SLF001 - the network edge
        on_this_loop(thread)
        with pytest.raises(ConsumerNotStarted):
            await commit_quietly(app, {TP(INPUT, 0): 1})
        await thread.on_start()  # Faust's start of its consumer thread
        offsets = {TP(INPUT, 0): 10, TP(INPUT, 1): 20}  # partition 1 is not assigned here
        faust_ok = await app.consumer._commit(offsets)  # noqa: SLF001 - Faust's own commit path
        ours = await commit_quietly(app, offsets)
        return aio, faust_ok, ours

    aio, faust_ok, ours = asyncio.run(main())
    assert aio.started and faust_ok is True and ours == {TP(INPUT, 0): 10}
    assert aio.commits == [{TopicPartition(INPUT, 0): OffsetAndMetadata(10, "")}] * 2


class Hooks(faust.Sensor):
    """Records every sensor hook (Faust's `SensorDelegate.on_*`) that reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []


def _recorder(name: str) -> Any:
    def hook(self: Hooks, *args: Any, **kw: Any) -> None:
        self.calls.append(name)
    return hook


for _name in dir(SensorDelegate):
    if _name.startswith("on_"):
        setattr(Hooks, _name, _recorder(_name))


def test_added_sensors_are_in_sensors_and_only_a_failed_send_reaches_them() -> None:
    """`SensorDelegate._sensors`: Faust's `add` puts sensors there, where QuietSensors finds
    them; it passes only `on_send_error` on, and a delivery Faust sees fail reaches
    SendFailures. Broken looks like: a failed send not counted (the worker would commit past
    records it never delivered), or per-record hooks reaching sensors again."""
    async def main() -> tuple:
        app, aio = _producer_app()
        sensors = app.sensors = QuietSensors(app)
        failures, hooks = SendFailures(), Hooks()
        for sensor in (failures, hooks, Monitor()):
            sensors.add(sensor)
        assert sensors._sensors == {failures, hooks}  # noqa: SLF001 - the name under test; no Monitor
        topic = app.topic("t", key_serializer="raw", value_serializer="raw")
        sent = [topic.as_future_message(key=k, value=b"v", partition=0) for k in (b"ok", b"lost")]
        for fut in sent:
            await topic.publish_message(fut)  # what Topic.send does
        sensors.on_message_in(TP("t", 0), 0, None)
        aio.futures[0].set_result(RecordMetadata("t", 0, TopicPartition("t", 0), 7, 0, 0, 0))
        aio.futures[1].set_exception(RuntimeError("broker gone"))
        await asyncio.gather(*sent, return_exceptions=True)  # retrieved: no "never retrieved" log at GC
        await app.producer.stop()
        return failures, hooks

    failures, hooks = asyncio.run(main())
    assert (failures.count, failures.last) == (1, "broker gone")
    assert hooks.calls == ["on_send_error"]


def test_current_event_names_the_partition_the_rocksdb_store_writes_and_reads(tmp_path: Path) -> None:
    """`faust.streams._current_event`: Faust's `current_event()` returns what in_partition set,
    and the RocksDB store writes to and reads from that partition's database only; with none it
    searches all. Broken looks like: writes in another partition's database, or lookups that
    miss keys (the KeyError of issue #18). More in test_tablestate.py."""
    store = table("rocksdb", tmp_path).data
    try:
        in_partition(2)
        assert faust.current_event().message.partition == 2
        store[b"k"] = b"v"
        in_partition(1)
        assert store.get(b"k") is None
        in_partition(2)
        assert store.get(b"k") == b"v"
        in_partition(None)
        assert faust.current_event() is None and store.get(b"k") == b"v"
    finally:
        in_partition(None)


def test_changelog_sent_sets_the_persisted_offset_faust_sets_for_the_same_records(tmp_path: Path) -> None:
    """`Collection._on_changelog_sent`, mirrored by changelog_sent for a whole record batch: the
    same deliveries (aiokafka's own batch and record futures) leave the same persisted offset in
    the RocksDB store. Broken looks like: another offset (recovery then re-reads, or skips,
    changelog records), or Faust keeping it elsewhere."""
    assert not make_app(replace(load(), data_dir=tmp_path / "app")).in_transaction  # the branch mirrored

    async def main() -> tuple:
        faust_table, ours = table("rocksdb", tmp_path / "faust"), table("rocksdb", tmp_path / "ours")
        topic = faust_table.changelog_topic.get_topic_name()
        batch, records = delivered_batch(topic, 2, base_offset=100, count=5)
        for fut in records:
            faust_table._on_changelog_sent(fut)  # noqa: SLF001 - Faust's own, once per record
        changelog_sent(ours.data, batch, 5)
        failed = asyncio.get_running_loop().create_future()
        failed.set_exception(RuntimeError("not delivered"))
        changelog_sent(ours.data, failed, 1)
        return [(t.data.persisted_offset(TP(topic, 2)), t.data.persisted_offset(TP(topic, 3)))
                for t in (faust_table, ours)]

    assert asyncio.run(main()) == [(104, None), (104, None)]


def _worker() -> tuple[Any, list[str]]:
    worker = guarded_worker(faust.Worker, 5.0)(new_app(), loglevel="info", redirect_stdouts=False,
                                               override_logging=False, quiet=True)
    armed: list[str] = []
    worker._arm_watchdog = armed.append  # the watchdog would end the test process
    return worker, armed


def test_mode_installs_the_workers_signal_handlers_and_they_reach_our_overrides() -> None:
    """mode `Worker._on_sigterm` / `_on_sigint`: registered as the loop's signal handlers, and
    what they run is our override, then mode's shutdown. Broken looks like: a SIGTERM that stops
    the worker without the watchdog (a shutdown with no bound), or not at all."""
    async def main() -> tuple:
        worker, armed = _worker()
        loop = worker.loop = SignalLoop()
        shutdowns: list[int] = []
        worker._schedule_shutdown = shutdowns.append
        worker.install_signal_handlers()
        loop.handlers[signal.SIGTERM]()
        loop.handlers[signal.SIGINT]()
        return armed, shutdowns

    armed, shutdowns = asyncio.run(main())
    assert armed == ["SIGTERM", "SIGINT"] and shutdowns == [signal.SIGTERM, signal.SIGINT]


def test_a_crash_inside_the_app_reaches_the_workers_crash() -> None:
    """mode `Worker._crash`: a service under the worker (the app, its consumer) that crashes marks
    the root crashed through it. Broken looks like: a crashed join that leaves the worker running
    without the watchdog (a half-alive worker)."""
    async def main() -> tuple:
        worker, armed = _worker()
        for dep in worker.on_init_dependencies():  # mode's first step of start: the app joins the tree
            worker.add_dependency(dep)
        await worker.app.consumer.crash(RuntimeError("join failed"))
        return armed, worker.crashed

    assert asyncio.run(main()) == (["crashed (RuntimeError)"], True)


def test_force_metadata_update_is_what_makes_a_new_topic_known_to_a_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka `AIOKafkaConsumer._client`: its `force_metadata_update` (awaitable) fetches the
    metadata again, and `partitions_for_topic` answers from it; without it a topic created after
    the consumer started stays unknown (`mailsla status` right after a worker created its
    topics). Broken looks like: still None after the update."""
    broker = [(0, "127.0.0.1", 1, None)]
    before = MetadataResponse_v1(brokers=broker, controller_id=0, topics=[])
    after = MetadataResponse_v1(brokers=broker, controller_id=0,
                                topics=[(0, "new", False, [(0, 0, 0, [0], [0]), (0, 1, 0, [0], [0])])])
    answers = [before, after]

    async def create_conn(*args: Any, **kw: Any) -> Connection:  # the network edge
        return Connection(answers.pop(0) if len(answers) > 1 else answers[0])

    monkeypatch.setattr("aiokafka.client.create_conn", create_conn)

    async def main() -> tuple:
        consumer = RealAIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        client = consumer._client  # noqa: SLF001 - the name under test
        await client.bootstrap()
        unknown = consumer.partitions_for_topic("new")
        updated = await client.force_metadata_update()
        known = consumer.partitions_for_topic("new")
        await consumer.stop()  # closes the client
        return unknown, updated, known

    assert asyncio.run(main()) == (None, True, {0, 1})
