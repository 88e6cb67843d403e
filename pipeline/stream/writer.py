"""The ClickHouse sink: consumes the results topic in batches and writes them.

Runs inside `mailsla worker` (default) or alone as `mailsla sink`. It owns the
process's ClickHouse connection, so it also serves the local API the CLI uses
while the embedded database is taken. Offsets are committed only after a
batch is in ClickHouse; a failing write is retried with backoff for as long
as it fails (Kafka keeps the rows), never skipped.

Outages: the sink outlives a Kafka outage and a lost group membership. A failed
commit (CommitFailedError after a rebalance, UnknownMemberIdError after the
session timed out, a coordinator that does not answer) is logged and left
alone: the rows are in ClickHouse, the consumer re-joins by itself and reads
again from the last committed offset, and rows re-read are revisioned and
de-duplicated downstream. A stop (SIGTERM) ends the retries: what is not
written by then is not committed either, so the next sink writes it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from mode import Service

from pipeline.store import api
from pipeline.core.batching import decode_results
from pipeline.core.config import Settings
from pipeline.core.errors import first_line
from pipeline.core.events import BadEvent, parse_account, parse_injection, parse_probe
from pipeline.store.clickhouse import Store, maintenance_record_row
from pipeline.core.deadletters import dead_letter
from pipeline.stream.kafka import client_kwargs, producer
from pipeline.stream.status import join_failures
from pipeline.stream.statusfile import write_json_atomic

log = logging.getLogger("mailsla.sink")

COMMIT_TIMEOUT_S = 10.0  # a commit waits for the group coordinator; Kafka down: try again with the next batch
REVOKE_FLUSH_S = 10.0  # at a rebalance, write what is buffered for this long; else leave it uncommitted
STOP_SHARE = 0.6  # of MAILSLA_SHUTDOWN_S for the last write at a stop; the rest is for leaving the group


class _FlushOnRevoke(ConsumerRebalanceListener):
    def __init__(self, writer: "ResultWriter") -> None:
        self.writer = writer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Bounded: a rebalance must not wait for a ClickHouse that is down. Rows not written are
        # dropped from the buffer uncommitted, and read again by whoever owns their partition.
        await self.writer.flush(give_up_at=time.monotonic() + REVOKE_FLUSH_S)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.writer.assignments += 1
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
        # counters for the status file (run/sink-<pid>.json): what an outage cost
        self.consumed = 0  # records read from Kafka, re-reads included
        self.write_failures = 0
        self.commit_failures = 0
        self.fetch_errors = 0
        self.assignments = 0  # partition assignments received (1 + one per rebalance)
        self.dropped = 0  # rows given up (stop, or a rebalance while ClickHouse failed): uncommitted, re-read
        self.monitor: Any = None  # the fault monitor, when this sink runs one
        self.flushing = False  # a batch is being written (the status file says so: drills kill it there)
        self._stop_started: float | None = None
        self._wake = asyncio.Event()  # set at stop: backoff sleeps end at once
        super().__init__(**kwargs)

    def horizon(self, idle_s: float = 60.0) -> int | None:
        """Event time up to which every active results partition's verdicts are in ClickHouse.

        The fault monitor evaluates only up to here, so a replay catching up partition by
        partition never announces a fault that the complete data would not have. Partitions
        without results for `idle_s` do not hold it back (None: nothing to hold back)."""
        now = time.time()
        active = [v for v, at in self.progress.values() if now - at <= idle_s]
        return min(active) if active else None

    def status_path(self) -> Any:
        return self.settings.data_dir / "run" / f"sink-{os.getpid()}.json"

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "at": time.time(), "consumed": self.consumed, "written": self.written,
                "write_failures": self.write_failures, "commit_failures": self.commit_failures,
                "fetch_errors": self.fetch_errors, "assignments": self.assignments, "dropped": self.dropped,
                "flushing": self.flushing,
                "fault_rounds": None if self.monitor is None else self.monitor.rounds,
                "fault_rounds_skipped": None if self.monitor is None else self.monitor.skipped}

    def write_status(self) -> None:
        if self.api_runner is None:  # not started as a service (tests): no file
            return
        write_json_atomic(self.status_path(), self.status())

    @Service.timer(2.0)
    async def _status(self) -> None:
        self.write_status()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the service stops."""
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def on_start(self) -> None:
        delay = 0.5
        while True:  # a ClickHouse server may still be starting
            if self.should_stop:
                return
            try:
                self.store = self.store or Store(self.settings)
                await asyncio.to_thread(self.store.migrate)
                await asyncio.to_thread(self.store.start_writing)
                break
            except Exception as exc:  # noqa: BLE001
                log.warning("ClickHouse not ready (%s); retrying in %.1fs", first_line(exc, 200), delay)
                await self._pause(delay)
                delay = min(delay * 2, 10.0)
        session = self.settings.session_timeout_s
        timeouts = ({"session_timeout_ms": int(session * 1000), "heartbeat_interval_ms": int(session * 1000 / 3)}
                    if session else {})
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka, group_id=self.settings.group_sink,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=5000,
            **timeouts, **client_kwargs(self.settings),
        )
        self.consumer.subscribe([self.settings.topic_results, self.settings.topic_accounts,
                                 self.settings.topic_maintenance, self.settings.topic_injections,
                                 self.settings.topic_probes], listener=_FlushOnRevoke(self))
        self.dl_producer = producer(self.settings, acks="all")  # malformed availability records
        await self.dl_producer.start()
        await self.consumer.start()
        self.api_runner = await api.serve(self.settings, self.store, health=lambda: join_failures(self.settings))
        if self.settings.fault_interval_s > 0:
            from pipeline.live.monitor import FaultMonitor

            self.monitor = FaultMonitor(self.settings, self.store, self.settings.fault_interval_s, horizon=self.horizon)
            await self.add_runtime_dependency(self.monitor)
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
            try:
                batch = await self.consumer.getmany(timeout_ms=100, max_records=self.settings.batch_rows)
            except KafkaError as exc:  # the consumer reconnects and re-joins by itself: wait and ask again
                self.fetch_errors += 1
                log.warning("reading results failed (%s); retrying", first_line(exc, 200))
                await self._pause(1.0)
                continue
            for records in batch.values():
                self.consumed += len(records)
                for rec in records:
                    if not self.buffer:
                        self.first_at = time.monotonic()
                    for row in self.to_rows(rec.topic, rec.offset, rec.key, rec.value, rec.partition):
                        self.buffer.append(row)
                        if row.get("k") == "m":
                            best = self.seen.get(rec.partition, (0, 0.0))[0]
                            self.seen[rec.partition] = (max(best, row["verdict_at"]), time.time())
            due = self.buffer and (time.monotonic() - self.first_at) * 1000 >= self.settings.batch_ms
            if len(self.buffer) >= self.settings.batch_rows or due:
                await self.flush()

    def to_rows(self, topic: str, offset: int, key: bytes | None, value: bytes | None,
                partition: int = -1) -> list[dict[str, Any]]:
        """A record -> its rows: a results record may carry a batch of rows (pipeline/core/batching.py)."""
        if topic == self.settings.topic_results:
            return decode_results(value)
        row = self.to_row(topic, offset, key, value, partition)
        return [] if row is None else [row]

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

    async def flush(self, give_up_at: float | None = None) -> None:
        """Write the buffer, then commit what was consumed. Retries while the write fails, until
        `give_up_at` (monotonic) or a stop: then the buffer is dropped and nothing committed, so
        the rows are read again from Kafka (by this sink after a rebalance, or the next one)."""
        async with self.flush_lock:
            if not self.buffer:
                return
            rows = self.buffer
            self.flushing = True
            self.write_status()  # before and after each batch: a SIGKILL leaves counts exact to the batch
            try:
                await self._write_and_commit(rows, give_up_at)
            finally:
                self.flushing = False
                self.write_status()

    async def _write_and_commit(self, rows: list[dict[str, Any]], give_up_at: float | None) -> None:
        """The flush under its lock: retry the write (see `flush`), then commit."""
        delay, failing_since, logged = 0.5, 0.0, 0.0
        while True:
            try:
                assert self.store is not None
                await asyncio.to_thread(self.store.write, rows)
                await self.send_dead_letters(rows)
                break
            except Exception as exc:  # noqa: BLE001 - any ClickHouse failure: keep rows, retry
                self.write_failures += 1
                now = time.monotonic()
                failing_since = failing_since or now
                if now - logged >= 30.0:  # one line per 30 s, however fast it fails
                    log.warning("ClickHouse write of %d rows failing for %.0fs (%s); retrying with backoff "
                                "(up to 10 s), nothing committed meanwhile", len(rows), now - failing_since,
                                first_line(exc, 200))
                    logged = now
                limit = self._give_up_at(give_up_at)
                if limit is not None and now >= limit:
                    log.error("giving up the write of %d rows (%s); they stay in Kafka, uncommitted, and "
                              "are written by the next owner of their partitions", len(rows),
                              "stopping" if self.should_stop else "partitions revoked")
                    self.dropped += len(rows)
                    self.buffer = []
                    return
                pause = delay if limit is None else max(0.0, min(delay, limit - now))
                if self._stop_started is None:
                    await self._pause(pause)  # a stop wakes it at once
                else:  # stopping: the last tries keep their backoff (no spin against a failing server)
                    await asyncio.sleep(pause)
                delay = min(delay * 2, 10.0)
        if failing_since:
            log.warning("ClickHouse write succeeded again after %.0fs", time.monotonic() - failing_since)
        self.buffer = []
        self.progress.update(self.seen)
        self.written += len(rows)
        await self._commit(len(rows))

    def _give_up_at(self, give_up_at: float | None) -> float | None:
        """The earlier of the caller's limit and, once stopping, the stop's share of MAILSLA_SHUTDOWN_S."""
        if self._stop_started is None and self.should_stop:
            self._stop_started = time.monotonic()
        stop_at = None if self._stop_started is None else self._stop_started + STOP_SHARE * self.settings.shutdown_s
        limits = [t for t in (give_up_at, stop_at) if t is not None]
        return min(limits) if limits else None

    async def _commit(self, rows: int) -> None:
        """Commit what was consumed. A failure is harmless (rows are in ClickHouse; re-reads are
        de-duplicated) and never stops the sink: after a rebalance or a lost membership the consumer
        re-joins by itself and resumes from the last committed offset."""
        assert self.consumer is not None
        try:
            await asyncio.wait_for(self.consumer.commit(), COMMIT_TIMEOUT_S)
        except (KafkaError, asyncio.TimeoutError) as exc:
            self.commit_failures += 1
            log.warning("commit after writing %d rows failed (%s); they will be read again and de-duplicated",
                        rows, first_line(exc, 200))

    async def send_dead_letters(self, rows: list[dict[str, Any]]) -> None:
        """Malformed availability records (rows of kind `dl`) to the dead-letter topic, before the
        batch is committed: at-least-once, like the join's dead letters."""
        letters = [r["record"] for r in rows if r.get("k") == "dl"]
        if letters:
            futures = [await self.dl_producer.send(self.settings.topic_dead_letters, v) for v in letters]
            await asyncio.gather(*futures)

    async def on_stop(self) -> None:
        self._stop_started = self._stop_started or time.monotonic()
        self._wake.set()
        if self.consumer is not None:
            try:
                await self.flush()  # gives up at STOP_SHARE of MAILSLA_SHUTDOWN_S
            finally:
                left = self.settings.shutdown_s * (1 - STOP_SHARE) - 2.0
                try:  # leave the group: bounded, Kafka may be down
                    await asyncio.wait_for(self.consumer.stop(), max(1.0, left))
                except (KafkaError, asyncio.TimeoutError) as exc:
                    log.warning("leaving the consumer group did not finish (%s); the group notices by its "
                                "session timeout", first_line(exc, 200))
                self.write_status()
        if getattr(self, "dl_producer", None) is not None:
            try:  # bounded, like the group leave: Kafka may be down
                await asyncio.wait_for(self.dl_producer.stop(), 2.0)
            except (KafkaError, asyncio.TimeoutError):
                log.warning("the dead-letter producer did not stop cleanly")
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
