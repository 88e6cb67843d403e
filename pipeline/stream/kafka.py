"""Kafka adapter: topic creation, producing, lag (the dead-letter record itself: `pipeline.core.deadletters`).

Thin wrappers over aiokafka used by the worker, the sink and the CLI. Every
function takes the bootstrap address explicitly; nothing here keeps state.
"""
from __future__ import annotations

import asyncio
import bisect
from typing import Any, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupCoordinatorNotAvailableError, TopicAlreadyExistsError

from pipeline.core.config import ConfigError, Settings


def ssl_context(settings: Settings) -> Any:
    """The TLS context for SSL and SASL_SSL (server verified against MAILSLA_KAFKA_SSL_CAFILE, else the
    system CAs; a client certificate when MAILSLA_KAFKA_SSL_CERTFILE is set); None otherwise."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=settings.kafka_ssl_cafile or None,
                              certfile=settings.kafka_ssl_certfile or None,
                              keyfile=settings.kafka_ssl_keyfile or None)


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for every aiokafka client (consumer, producer, admin).

    Built from the MAILSLA_KAFKA_* settings (validated in pipeline/core/config.py). The password is
    passed to aiokafka only: never log this dict."""
    protocol = settings.kafka_security_protocol
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        out |= {"sasl_mechanism": settings.kafka_sasl_mechanism,
                "sasl_plain_username": settings.kafka_sasl_username,
                "sasl_plain_password": settings.kafka_sasl_password}
    if protocol.endswith("SSL"):
        out["ssl_context"] = ssl_context(settings)
    return out


def broker_credentials(settings: Settings) -> Any:
    """The same security settings as Faust's `broker_credentials` (None for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    import faust

    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    # SASL_PLAINTEXT, or SASL_SSL when given a context (faust picks the protocol from that)
    return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                 mechanism=settings.kafka_sasl_mechanism, ssl_context=ssl_context(settings))


class PartitionsChanged(ConfigError):
    """A keyed topic's partition count is not MAILSLA_PARTITIONS: the worker refuses to start
    (one line, exit 2) or, mid-stream, stops; nothing is read from the grown partitions."""


def partitions_changed(settings: Settings, counts: dict[str, int], at_least: bool = False) -> str | None:
    """The one line that says why, or None when every keyed topic in `counts` has the configured
    partition count. Growing the inputs in place moves keys: a message's later events would hash
    to a partition that holds none of its state, and it would never join. `at_least`: the counts
    come from the partitions seen, not from the topic's metadata."""
    for topic, n in sorted(counts.items()):
        if n and n != settings.partitions:
            many = f"{'at least ' if at_least else ''}{n}"
            return (f"topic {topic} has {many} partitions, MAILSLA_PARTITIONS is {settings.partitions}: "
                    "keyed topics cannot change their partition count in place (a message's later events "
                    "would go to a partition without its state); see README, Scaling out: Partitions")
    return None


async def ensure_topics(settings: Settings, extra: Iterable[tuple[str, dict[str, str]]] = ()) -> None:
    """Create missing topics; inputs, results and ticks share one partition count."""
    specs = [
        (settings.topic_accepted, {}),
        (settings.topic_ready, {}),
        (settings.topic_results, {}),
        (settings.topic_ticks, {"retention.ms": "3600000"}),
        (settings.topic_dead_letters, {}),
        (settings.topic_accounts, {"cleanup.policy": "compact"}),  # latest facts per account
        (settings.topic_maintenance, {"cleanup.policy": "compact"}),  # latest per window id
        (settings.topic_faults, {}),
        (settings.topic_injections, {}),  # availability inputs, written straight to ClickHouse by the sink
        (settings.topic_probes, {}),
        *extra,
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka, request_timeout_ms=30000,
                                **client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        keyed = [t for t in (settings.topic_accepted, settings.topic_ready, settings.topic_results, settings.topic_ticks)
                 if t in existing]
        if keyed:
            counts = {}
            for doc in await admin.describe_topics(keyed):
                counts[doc.get("topic") or doc.get("name")] = len(doc.get("partitions") or ())
            wrong = partitions_changed(settings, counts)
            if wrong:
                raise PartitionsChanged(wrong)
        new = [NewTopic(name, settings.partitions, settings.replication, topic_configs=cfg)
               for name, cfg in specs if name not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def producer(settings: Settings, **kw: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=settings.kafka, linger_ms=20,
                            max_batch_size=512 * 1024, **(client_kwargs(settings) | kw))


async def end_offsets(settings: Settings, topics: list[str]) -> dict[TopicPartition, tuple[int, int]]:
    """(beginning, end) offsets per partition of existing topics."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka, enable_auto_commit=False,
                                **client_kwargs(settings))
    try:
        await consumer.start()
    except Exception:
        await consumer.stop()  # a consumer that could not start still holds a client: close it
        raise
    try:
        tps = []
        for t in topics:
            parts = consumer.partitions_for_topic(t)
            if parts is None:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - topic may be new
                parts = consumer.partitions_for_topic(t)
            tps += [TopicPartition(t, p) for p in sorted(parts or ())]
        if not tps:
            return {}
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        return {tp: (begin[tp], end[tp]) for tp in tps}
    finally:
        await consumer.stop()


async def group_lag(settings: Settings, group: str, topics: list[str]) -> int:
    """Records in `topics` not yet committed by consumer group `group`."""
    offsets = await end_offsets(settings, topics)
    if not offsets:
        return 0
    committed = await _group_offsets(settings, group)
    lag = 0
    for tp, (begin, end) in offsets.items():
        meta = committed.get(tp)
        pos = meta.offset if meta is not None and meta.offset >= 0 else begin
        lag += max(0, end - max(pos, begin))
    return lag


async def committed_offsets(settings: Settings, group: str,
                            tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Where `group` resumes each partition: its committed offset, else the partition's first offset."""
    wanted = {(t, p) for t, p in tps}
    if not wanted:
        return {}
    first = await end_offsets(settings, sorted({t for t, _ in wanted}))
    committed = await _group_offsets(settings, group)
    out = {}
    for tp, (begin, _end) in first.items():
        if (tp.topic, tp.partition) in wanted:
            meta = committed.get(tp)
            # below the log start (retention) the consumer resets to the first offset anyway
            out[(tp.topic, tp.partition)] = max(meta.offset, begin) if meta is not None and meta.offset >= 0 else begin
    return out


async def _group_offsets(settings: Settings, group: str) -> dict[TopicPartition, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka, **client_kwargs(settings))
    await admin.start()
    try:
        for attempt in range(10):
            try:
                return await admin.list_consumer_group_offsets(group)
            except GroupCoordinatorNotAvailableError:  # new group or broker just started
                await asyncio.sleep(0.3 * (attempt + 1))
        return {}
    finally:
        await admin.close()


def key_bytes(key: Any) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    return str(key).encode("utf-8")



class OffsetProbe:
    """Answers "where is the next record at or after offset N of this partition?" with a consumer of
    its own (no group, nothing committed, the same isolation level as Faust's), so the join agent can
    tell offsets Faust skipped from offsets that hold no record: deleted by retention, compacted away,
    or transaction markers. Started on the first question; `stop` at shutdown.

    Each fetch reads up to 1,000 records and remembers which offsets in that stretch hold one, so a
    producer writing in transactions (one marker offset per commit) costs one fetch per stretch,
    not one per transaction. Only "no record here" is answered from memory: that never changes,
    while a remembered record may since have been deleted, so "a record is here" is always re-read."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()  # one question at a time: each one re-assigns the consumer
        self._seen: dict[TopicPartition, tuple[int, int, list[int]]] = {}  # (first, last, offsets with records)
        self.fetches = 0

    async def next_offset(self, topic: str, partition: int, offset: int, timeout_s: float = 5.0) -> int | None:
        """The offset of the first record at or after `offset` (the log start when retention deleted
        `offset`), else the log end when no record follows `offset`; None when Kafka gave no answer
        within `timeout_s`: then nothing is concluded."""
        tp = TopicPartition(topic, partition)
        if tp in self._seen:
            lo, hi, present = self._seen[tp]
            i = bisect.bisect_left(present, offset)
            if lo <= offset <= hi and i < len(present) and present[i] > offset:
                return present[i]  # offset..present[i]-1 hold no record: that never changes
        async with self._lock:
            if self._consumer is None:
                consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka, group_id=None,
                                            enable_auto_commit=False, auto_offset_reset="earliest",
                                            max_partition_fetch_bytes=64 * 1024, **client_kwargs(self.settings))
                try:
                    await consumer.start()
                except Exception:
                    await consumer.stop()  # else every failed try during an outage logs "Unclosed AIOKafkaConsumer"
                    raise
                self._consumer = consumer
            consumer = self._consumer
            end = (await consumer.end_offsets([tp]))[tp]
            if end <= offset:
                return offset  # nothing at or after it yet
            consumer.assign([tp])
            consumer.seek(tp, offset)
            self.fetches += 1
            batch = await consumer.getmany(tp, timeout_ms=int(timeout_s * 1000), max_records=1000)
            if batch.get(tp):  # records come in offset order; the offsets between them hold none
                present = [r.offset for r in batch[tp]]
                self._seen[tp] = (offset, present[-1], present)
                return present[0]
            high = consumer.highwater(tp)  # a fetch answered with no record: none before its high watermark
            return high if high is not None and high > offset else None

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
