"""The ClickHouse sink: consumes the results topic in batches and writes them.

Runs inside `mailsla worker` (default) or alone as `mailsla sink`. It owns the
process's ClickHouse connection, so it also serves the local API the CLI uses
while the embedded database is taken. Offsets are committed only after a
batch is in ClickHouse; a failing write is retried with backoff for as long
as it fails (Kafka keeps the rows), never skipped.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from mode import Service

from pipeline import api
from pipeline.config import Settings
from pipeline.events import BadEvent, parse_account, parse_injection, parse_probe
from pipeline.sinks.clickhouse import Store, maintenance_record_row
from pipeline.sinks.kafka import client_kwargs, dead_letter, producer

log = logging.getLogger("mailsla.sink")


class _FlushOnRevoke(ConsumerRebalanceListener):
    def __init__(self, writer: "ResultWriter") -> None:
        self.writer = writer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.writer.flush()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class ResultWriter(Service):
    """Batches results (flush at `batch_rows` rows or `batch_ms`, whichever first)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.buffer: list[dict[str, Any]] = []
        self.first_at = 0.0
        self.written = 0
        self.flush_lock = asyncio.Lock()
        self.api_runner: Any = None
        self.dl_producer: Any = None
        self.seen: dict[int, tuple[int, float]] = {}  # results partition -> (max verdict_at consumed, wall time)
        self.progress: dict[int, tuple[int, float]] = {}  # the same, for rows already in ClickHouse
        super().__init__(**kwargs)

    def horizon(self, idle_s: float = 60.0) -> int | None:
        """Event time up to which every active results partition's verdicts are in ClickHouse.

        The fault monitor evaluates only up to here, so a replay catching up partition by
        partition never announces a fault that the complete data would not have. Partitions
        without results for `idle_s` do not hold it back (None: nothing to hold back)."""
        now = time.time()
        active = [v for v, at in self.progress.values() if now - at <= idle_s]
        return min(active) if active else None

    async def on_start(self) -> None:
        delay = 0.5
        while True:  # a ClickHouse server may still be starting
            try:
                self.store = self.store or Store(self.settings)
                await asyncio.to_thread(self.store.migrate)
                await asyncio.to_thread(self.store.start_writing)
                break
            except Exception as exc:  # noqa: BLE001
                log.warning("ClickHouse not ready (%s); retrying in %.1fs", str(exc).strip().splitlines()[0][:200], delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka, group_id=self.settings.group_sink,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=5000,
            **client_kwargs(self.settings),
        )
        self.consumer.subscribe([self.settings.topic_results, self.settings.topic_accounts,
                                 self.settings.topic_maintenance, self.settings.topic_injections,
                                 self.settings.topic_probes], listener=_FlushOnRevoke(self))
        self.dl_producer = producer(self.settings, acks="all")  # malformed availability records
        await self.dl_producer.start()
        await self.consumer.start()
        self.api_runner = await api.serve(self.settings, self.store)
        if self.settings.fault_interval_s > 0:
            from pipeline.monitor import FaultMonitor

            await self.add_runtime_dependency(FaultMonitor(self.settings, self.store, self.settings.fault_interval_s,
                                                           horizon=self.horizon))
        log.info("sink writing to %s", self.settings.redacted_dsn)

    @Service.timer(300.0)
    async def _recover(self) -> None:
        """With a ClickHouse server, batches of sinks that died are repaired here (see Store)."""
        if self.store is not None and not self.settings.clickhouse.startswith("chdb://"):
            await asyncio.to_thread(self.store.recover, 60)

    @Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        while not self.should_stop:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=self.settings.batch_rows)
            for records in batch.values():
                for rec in records:
                    if not self.buffer:
                        self.first_at = time.monotonic()
                    row = self.to_row(rec.topic, rec.offset, rec.key, rec.value, rec.partition)
                    if row is not None:
                        self.buffer.append(row)
                        if row.get("k") == "m":
                            best = self.seen.get(rec.partition, (0, 0.0))[0]
                            self.seen[rec.partition] = (max(best, row["verdict_at"]), time.time())
            due = self.buffer and (time.monotonic() - self.first_at) * 1000 >= self.settings.batch_ms
            if len(self.buffer) >= self.settings.batch_rows or due:
                await self.flush()

    def to_row(self, topic: str, offset: int, key: bytes | None, value: bytes | None,
               partition: int = -1) -> dict[str, Any] | None:
        """A record of the results, accounts or maintenance topic -> a row for `Store.write`.

        A bad account or maintenance record is logged and skipped: it stays in its
        compacted topic, where `mailsla accounts load` can overwrite it."""
        s = self.settings
        if topic == s.topic_results:
            return orjson.loads(value or b"null")
        if topic in (s.topic_injections, s.topic_probes):
            return availability_row(topic == s.topic_injections, topic, partition, offset, key, value)
        try:
            if topic == s.topic_accounts:
                if value is None:  # tombstone: the account's facts are withdrawn
                    return {"k": "acct", "account_id": (key or b"").decode(), "first_send_at": None,
                            "rate_limited": False, "updated_at": None, "version": offset}
                a = parse_account(value)
                return {"k": "acct", "account_id": a.account_id, "first_send_at": a.first_send_at,
                        "rate_limited": a.rate_limited, "updated_at": a.updated_at, "version": offset}
            if value is None:
                return None  # maintenance tombstones carry no window; `maintenance remove` writes deleted=true
            return maintenance_record_row(value)
        except (BadEvent, ValueError, KeyError) as exc:
            log.warning("skipping bad record %s@%d: %s", topic, offset, exc)
            return None

    async def flush(self, give_up_after: float | None = None) -> None:
        """Write the buffer, then commit what was consumed. Retries while the write fails;
        with `give_up_after` (at shutdown) it stops trying and commits nothing, so the
        rows are read again from Kafka by the next sink."""
        async with self.flush_lock:
            if not self.buffer:
                return
            rows, delay, started = self.buffer, 0.5, time.monotonic()
            while True:
                try:
                    assert self.store is not None
                    await asyncio.to_thread(self.store.write, rows)
                    await self.send_dead_letters(rows)
                    break
                except Exception as exc:  # noqa: BLE001 - any ClickHouse failure: keep rows, retry
                    log.warning("ClickHouse write of %d rows failed (%s); retrying in %.1fs",
                                len(rows), str(exc).strip().splitlines()[0][:200], delay)
                    if give_up_after is not None and time.monotonic() - started > give_up_after:
                        log.error("giving up at shutdown; %d rows stay in Kafka, uncommitted", len(rows))
                        self.buffer = []
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            self.buffer = []
            self.progress.update(self.seen)
            self.written += len(rows)
            assert self.consumer is not None
            await self.consumer.commit()

    async def send_dead_letters(self, rows: list[dict[str, Any]]) -> None:
        """Malformed availability records (rows of kind `dl`) to the dead-letter topic, before the
        batch is committed: at-least-once, like the join's dead letters."""
        letters = [r["record"] for r in rows if r.get("k") == "dl"]
        if letters:
            futures = [await self.dl_producer.send(self.settings.topic_dead_letters, v) for v in letters]
            await asyncio.gather(*futures)

    async def on_stop(self) -> None:
        if self.consumer is not None:
            try:
                await self.flush(give_up_after=20.0)
            finally:
                await self.consumer.stop()
        if getattr(self, "dl_producer", None) is not None:
            await self.dl_producer.stop()
        if self.api_runner is not None:
            await api.stop(self.settings, self.api_runner)
        if self.store is not None:
            self.store.close()


def availability_row(injection: bool, topic: str, partition: int, offset: int, key: bytes | None,
                     value: bytes | None) -> dict[str, Any]:
    """A record of mta.injections or mailsla.probes -> its table row; a malformed one -> a row of
    kind `dl` carrying its dead-letter record (sent once the batch is written)."""
    try:
        if value is None:
            raise BadEvent("empty record (tombstone)")
        if injection:
            a = parse_injection(value)
            return {"k": "inj", "attempt_id": a.attempt_id, "at": a.at, "channel": a.channel,
                    "outcome": a.outcome, "account_id": a.account_id}
        p = parse_probe(value)
        return {"k": "probe", "target": p.target, "location": p.location, "at": p.at, "ok": p.ok,
                "latency_ms": p.latency_ms}
    except BadEvent as exc:
        return {"k": "dl", "record": dead_letter(topic, partition, offset, key, value or b"", str(exc))}
    except Exception as exc:  # noqa: BLE001 - a bug on one record becomes its dead letter, not a stuck sink
        log.exception("availability record %s@%d:%d", topic, partition, offset)
        return {"k": "dl", "record": dead_letter(topic, partition, offset, key, value or b"",
                                                 f"internal error: {type(exc).__name__}: {str(exc)[:200]}")}
