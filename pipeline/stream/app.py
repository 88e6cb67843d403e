"""The Faust app: made here and only here.

`create_app(settings)` wires the join agent (accepted + queue-ready + ticks,
co-partitioned by message id), the state table with its changelog, the
wall-clock ticker, a status file for the CLI, and (unless disabled) the
ClickHouse sink service. Start it with `mailsla worker`.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from typing import Any

import faust
from faust.types import TP

from pipeline.core import batching
from pipeline.stream import batchsend, stateslot
from pipeline.stream.faust_internals import fastconsume
from pipeline.stream.faust_internals.changelog import changelog_sent
from pipeline.stream.faust_internals.consumer import commit_quietly as _commit_quietly
from pipeline.stream.faust_internals.consumer import aiokafka_producer, keep_read_offsets, put_back_buffered
from pipeline.stream.faust_internals.sensors import QuietSensors, SendFailures as _SendFailures
from pipeline.core.config import Settings
from pipeline.core.errors import StoreError, first_line
from pipeline.stream.offsets import PROCESS, REWIND, OffsetTracker
from pipeline.stream.runtime import JoinRuntime, Out
from pipeline.core.deadletters import dead_letter
from pipeline.stream.kafka import (OffsetProbe, PartitionsChanged, broker_credentials, committed_offsets,
                                   partitions_changed)
from pipeline.stream.status import remove_stale
from pipeline.stream.statusfile import write_json_atomic
from pipeline.stream.tablestate import TableState
from pipeline.stream.writer import ResultWriter

log = logging.getLogger("mailsla.worker")
ERRORS_IN_A_ROW = 1000  # records failing with an internal error one after another: not a record's fault


def broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip())


def _offsets(tracker: OffsetTracker, probe: OffsetProbe) -> dict[str, Any]:
    """Per input partition, the next offset to process and the last committed (for `status`)."""
    return {
        "next": {f"{tp[0]}-{tp[1]}": o for tp, o in sorted(tracker.expected.items())},
        "committed": {f"{tp[0]}-{tp[1]}": o for tp, o in sorted(tracker.committed.items())},
        "rewinds": tracker.rewinds, "skipped_redeliveries": tracker.skipped, "absent": tracker.absent,
        "probe_fetches": probe.fetches,
    }


def make_app(settings: Settings, app_id: str | None = None) -> faust.App:
    """The Faust app with this project's settings (the join worker's, and the bench's no-op agents',
pipeline/stream/noop.py)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    session = settings.session_timeout_s  # 0: Faust's defaults (60 s session, 3 s heartbeat)
    timeouts = ({"broker_session_timeout": session, "broker_heartbeat_interval": session / 3}
                if session else {})
    if settings.producer_timeout_s:
        timeouts["producer_request_timeout"] = settings.producer_timeout_s
    app = faust.App(
        app_id or settings.app_id,
        broker=broker_url(settings.kafka),
        broker_credentials=broker_credentials(settings),  # MAILSLA_KAFKA_SECURITY_PROTOCOL etc.; None = PLAINTEXT
        store=settings.store,
        datadir=str(stateslot.acquire(settings.data_dir / "faust")),  # one per process (RocksDB locks)
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.02,
        producer_max_batch_size=256 * 1024,
        stream_buffer_maxsize=16384,
        broker_commit_every=5000,
        broker_commit_interval=1.0,
        table_cleanup_interval=3600.0,
        # partitions added to an input show within 30 s (not aiokafka's 5 min) and the join stops
        consumer_metadata_max_age_ms=30_000,
        **timeouts,
    )
    app.sensors = QuietSensors(app)
    return app


def create_app(settings: Settings, with_sink: bool = True) -> faust.App:
    app = make_app(settings)
    s = settings
    # acks off: the agent tracks and commits its input offsets itself (pipeline/stream/offsets.py)
    source = app.topic(s.topic_accepted, s.topic_ready, s.topic_ticks, acks=False,
                       partitions=s.partitions, key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(s.topic_dead_letters, partitions=s.partitions)
    inputs = {s.topic_accepted: app.topic(s.topic_accepted), s.topic_ready: app.topic(s.topic_ready)}
    ticks = app.topic(s.topic_ticks, partitions=s.partitions)
    table = app.Table("join-state", default=None, partitions=s.partitions,
                      key_type=bytes, value_type=bytes)
    table.key_serializer = table.value_serializer = "raw"  # before the changelog topic exists
    tstate = TableState(table.data)  # reads see the batch's writes; written once per batch
    runtime = JoinRuntime(settings, tstate.buffer)
    app.mailsla_runtime = runtime  # type: ignore[attr-defined]

    tracker = OffsetTracker()
    app.mailsla_offsets = tracker  # type: ignore[attr-defined]

    def lagging(partition: int) -> set[str]:
        """Input streams of `partition` with records not yet processed: the last fetch saw a log end
        (highwater) beyond the next offset to process, or nothing is known yet. Such a stream is
        never quiet, so the wall clock cannot move event time past records still unread (#14)."""
        out = set()
        for name, topic in (("accepted", s.topic_accepted), ("ready", s.topic_ready)):
            tp = TP(topic, partition)
            try:
                end = app.consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not assigned (yet): unknown counts as unread
                end = None
            want = tracker.expected.get(tp)
            if end is None or (end > 0 and (want is None or want < end)):
                out.add(name)
        return out

    runtime.lagging = lagging
    # finished states become fingerprints only once the record that finished them is committed
    tps: dict[tuple[str, int], TP] = {}  # asked per record: one TP per input partition, not one per call

    def committed(topic: str, partition: int) -> int:
        tp = tps.get((topic, partition))
        if tp is None:
            tp = tps[(topic, partition)] = TP(topic, partition)
        return tracker.committed.get(tp, -1)

    runtime.committed = committed
    keep_read_offsets(app.consumer, {s.topic_accepted, s.topic_ready, s.topic_ticks})

    probe = OffsetProbe(s)

    async def pass_absent(tp: Any, want: int, timeout_s: float) -> bool:
        """Ask Kafka where the first record at or after `want` is; if the offsets before it hold no
        record (retention, compaction, transaction markers), go past them and say so. A failed
        question concludes nothing."""
        try:
            first = await probe.next_offset(tp.topic, tp.partition, want, timeout_s)
        except Exception as exc:  # noqa: BLE001 - waiting is always safe
            log.warning("input %s-%d: could not check offset %d (%s)", tp.topic, tp.partition, want, exc)
            return False
        if first is None or first <= want or tracker.expected.get(tp) != want:
            return False
        # one offset: a transaction marker, routine; more: retention or compaction, worth a look
        log.log(logging.WARNING if first - want > 1 else logging.DEBUG,
                "input %s-%d: offsets %d..%d hold no records in Kafka; going on",
                tp.topic, tp.partition, want, first - 1)
        tracker.skip_absent(tp, first)
        return True

    async def rewind(tp: Any, offset: int, want: int) -> str:
        """A record above the expected offset arrived: either offsets with no record lie between
        (go past them), or Faust skipped records (seek back and wait for them)."""
        if await pass_absent(tp, want, 5.0):
            return tracker.check(tp, offset, time.monotonic())
        log.warning("input %s-%d: got offset %d, expected %d; seeking back", tp.topic, tp.partition, offset, want)
        await app.consumer.seek(tp, want)
        return REWIND

    failure: list[str | None] = [None]  # why the join stopped (status file; the sink's /healthz)
    processed = [0]  # input records processed (re-reads after a crash or rebalance included), for status
    rebalances: dict[str, Any] = {"count": 0, "partitions": []}  # assignments so far and the last one's, for status

    in_a_row = [0]  # records in a row that failed with an internal error

    def process(msg: Any) -> list[Any]:
        """The runtime's outputs for one record. A bug of ours on some record becomes that record's
        dead letter (with the error) and a counted, logged error, never a stopped partition. A
        failing store, or `ERRORS_IN_A_ROW` records failing one after another, is no record's
        fault: it raises, and the worker stops non-zero (join_loop) for a restart."""
        try:
            outs = runtime.handle(msg.topic, msg.partition, msg.offset, msg.key, msg.value)
            in_a_row[0] = 0
            return outs
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - see docstring
            runtime.counters["internal_errors"] += 1
            in_a_row[0] += 1
            if in_a_row[0] >= ERRORS_IN_A_ROW:
                raise RuntimeError(f"{in_a_row[0]} records in a row failed with an internal error, the last "
                                   f"{first_line(exc)}") from exc
            log.exception("input %s-%d offset %d: internal error; sent to the dead-letter topic",
                          msg.topic, msg.partition, msg.offset)
            return [Out("dead_letter", msg.key, dead_letter(msg.topic, msg.partition, msg.offset, msg.key,
                                                            msg.value or b"", f"internal error: {exc!r}"[:500]))]

    changelog = table.changelog_topic.get_topic_name()

    def _sent(fut: Any, count: int = 1) -> None:
        """Records this loop sent are delivered or failed: a failure counts as one of Faust's own
        (`_SendFailures`: no commit after it, the worker stops)."""
        if fut.cancelled() or fut.exception() is not None:
            send_failures.count += count
            send_failures.last = repr(fut.exception() if not fut.cancelled() else "cancelled")[:200]
            return

    def _persisted(fut: Any, count: int) -> None:
        """A record batch of the changelog is delivered (or failed): counted if it failed, and
        the store told the changelog offset it now holds, as Faust's own callback would."""
        _sent(fut, count)
        changelog_sent(table.data, fut, count)

    def _queued(fut: Any, count: int) -> None:
        fut.add_done_callback(lambda f: _persisted(f, count))

    async def send_batch(results_by_p: dict[int, list[bytes]], others: list[Any]) -> None:
        """Hand the batch's outputs to the producer: each state key once (its final value), the
        result rows as one record per results partition, dead letters and re-keyed records."""
        writes = tstate.flush()  # the store first, synchronously: reads after this see it
        producer = app.producer
        aio = aiokafka_producer(app)  # its batch API (pipeline/stream/batchsend.py)
        for p, kvs in writes.items():
            await batchsend.send_records(aio, changelog, p, kvs, _queued)
        for p, values in results_by_p.items():
            for value in batching.encode_results(values):
                fut = await producer.send(s.topic_results, None, value, p, None, None)
                fut.add_done_callback(_sent)
        for out in others:
            if out.kind == "dead_letter":
                await dead_letters.send(key=out.key, value=out.value)
            else:
                await inputs[out.topic].send(key=out.key, value=out.value)  # type: ignore[index]
        results_by_p.clear()
        others.clear()

    first_record_at: float | None = None  # for the bench: when this process got its first batch

    # the input topics' records come in lists, not through the agent's stream (faust_internals/fastconsume.py)
    inbox = fastconsume.install(app.consumer, {s.topic_accepted, s.topic_ready, s.topic_ticks})

    @app.agent(source, name="join")
    async def join_agent(stream: Any) -> None:
        """Subscribes the worker to the input topics; their records go to `join_loop`."""
        async for _ in stream:
            pass

    @app.task
    async def join_loop() -> None:
        """Runs the join; if it fails (a send Kafka refuses), the whole worker stops non-zero: a
        supervisor (Kubernetes, `worker --processes`) restarts it from the committed offsets. A
        half-alive worker with a stopped join would look healthy while its partitions stood still."""
        try:
            await _join_batches()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.critical("join agent failed: %r; stopping the worker (exit 1) so that it restarts", exc)
            failure[0] = first_line(exc)
            await write_status()  # the sink's /healthz says it until this process is gone
            await app.crash(exc)
            raise

    nparts = s.partitions
    grown: list[str | None] = [None]  # why the worker refuses: an input has more partitions than nparts

    async def _join_batches() -> None:
        """Works batches of input records of the partitions this worker owns; each partition's
        records in offset order. An input offset may be committed only once the outputs of its
        record are with the producer: the tracker holds commits at the offsets whose outputs
        were sent until the batch's outputs are sent too."""
        nonlocal first_record_at
        results_by_p: dict[int, list[bytes]] = {}
        others: list[Any] = []
        while True:
            batch = await fastconsume.batches(inbox, batching.JOIN_BATCH_EVENTS)
            if first_record_at is None:
                first_record_at = time.time()
                gc.freeze()  # start-up's objects live as long as the worker: kept out of every GC pass
            owned = app.consumer.assignment()
            tracker.hold()
            for msg in batch:
                tp = msg.tp
                if msg.partition >= nparts:  # the topic grew: join nothing there; `refuse` stops the worker
                    grown[0] = grown[0] or partitions_changed(s, {tp.topic: msg.partition + 1}, at_least=True)
                    failure[0] = failure[0] or grown[0]
                    continue
                if tp not in owned:
                    continue  # revoked since it was fetched: the next owner processes it
                want = tracker.expected.get(tp)
                action = tracker.check(tp, msg.offset, time.monotonic())
                if action == REWIND and want is not None:  # records skipped, or offsets with no record?
                    await send_batch(results_by_p, others)  # nothing unsent across an await
                    tracker.release()
                    action = await rewind(tp, msg.offset, want)
                    owned = app.consumer.assignment()
                    tracker.hold()
                    if tp not in owned:
                        continue
                if action != PROCESS:
                    continue
                tstate.enter(msg.partition)
                for out in process(msg):
                    if out.kind == "result":
                        results_by_p.setdefault(msg.partition, []).append(out.value)
                    else:
                        others.append(out)
                tracker.done(tp, msg.offset)  # committable once the batch's outputs are sent
                processed[0] += 1
            await send_batch(results_by_p, others)
            tracker.release()

    stalled_at: dict[Any, int] = {}
    refetched_at: dict[Any, float] = {}

    async def refetch_stalled(tp: Any, want: int) -> None:
        """No progress for 5 s, yet Kafka holds records at `want` and beyond: none of them is on
        its way (they all came while the start offset was unknown, or a seek did not take), and
        no later record will arrive to show the hole. Seek back to `want`."""
        try:
            end = app.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not assigned any more: nothing to fetch here
            return
        if end is None or end <= want or tp not in app.consumer.assignment():
            return
        if time.monotonic() - refetched_at.get(tp, -1e9) < 30.0:  # a refetch draining a full buffer
            return
        refetched_at[tp] = time.monotonic()
        log.warning("input %s-%d: no progress at offset %d for 5 s with the log end at %d; seeking back",
                    tp.topic, tp.partition, want, end)
        tracker.rewinds += 1
        await app.consumer.seek(tp, want)

    @app.timer(interval=5.0)
    async def pass_trailing_markers() -> None:
        """A partition that made no progress for 5 s may be waiting for offsets that hold no record:
        a transaction's commit marker after its last record is never delivered, so without this the
        input lag stays above zero for good. Ask Kafka; go past such offsets only on its answer."""
        for tp, want in list(tracker.expected.items()):
            if stalled_at.get(tp) == want and not await pass_absent(tp, want, 1.0):
                await refetch_stalled(tp, want)
        stalled_at.clear()
        stalled_at.update(tracker.expected)

    send_failures = _SendFailures()
    app.sensors.add(send_failures)

    async def commit_inputs() -> None:
        """Commit the input offsets processed so far, after their outputs are flushed."""
        offsets = tracker.to_commit()
        if offsets:
            await app.producer.flush()
            await asyncio.sleep(0)  # the delivery callbacks of what the flush waited for run first
            if send_failures.count:  # outputs lost: committing would lose them for good
                log.error("%d records could not be delivered to Kafka (%s); stopping without committing, "
                          "so a restart processes the input again from the last commit",
                          send_failures.count, send_failures.last)
                await app.crash(RuntimeError(f"{send_failures.count} records not delivered to Kafka"))
                return
            done = await _commit_quietly(app, offsets)
            if done:
                tracker.did_commit(done)

    @app.timer(interval=1.0)
    async def commit_timer() -> None:
        await commit_inputs()

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        try:
            await commit_inputs()  # so the next owner starts where this one stopped
        except Exception as exc:  # noqa: BLE001 - the next owner re-processes instead: harmless
            log.warning("commit at revoke failed: %s", exc)
        tracker.revoke(set(revoked))

    @app.timer(interval=1.0)
    async def refuse() -> None:
        """An input grew (seen at assignment or on a record of a new partition): stop the worker,
        once no rebalance is under way (a crash during one hung it for good)."""
        if grown[0] and not app.rebalancing:
            log.critical("%s; stopping the worker", grown[0])
            await write_status()
            await app.crash(PartitionsChanged(grown[0]))

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        more = {tp.topic: tp.partition + 1 for tp in assigned
                 if tp.topic in (s.topic_accepted, s.topic_ready, s.topic_ticks) and tp.partition >= s.partitions}
        if more:  # partitions added to an input mid-stream: refuse at once, read nothing of them
            grown[0] = partitions_changed(s, more, at_least=True)
            failure[0] = grown[0]
            return
        mine = {tp.partition for tp in assigned if tp.topic == s.topic_accepted}
        rebalances.update(count=rebalances["count"] + 1, partitions=sorted(mine))
        runtime.reset(mine)
        inputs_tps = [tp for tp in assigned if tp.topic in (s.topic_accepted, s.topic_ready, s.topic_ticks)]
        try:
            start = await committed_offsets(s, s.app_id, inputs_tps)
        except Exception as exc:  # noqa: BLE001 - fall back to trusting the first record seen
            log.warning("could not read committed offsets (%s); trusting the first record per partition", exc)
            start = {}
        tracker.assign({TP(t, p): o for (t, p), o in start.items()})

    if s.idle_grace_s > 0:
        @app.timer(interval=1.0)
        async def tick() -> None:
            """Wall-clock ticks: let quiet partitions' watermarks advance (live mode)."""
            for p in range(s.partitions):
                await ticks.send(key=None, value=b"", partition=p)

    remove_stale(s)
    @app.timer(interval=2.0)
    async def unstick_fetcher() -> None:
        """faust-streaming takes a partition out of the fetcher when its stream buffer fills and
        can miss putting it back (seen here after a SIGKILL and restart: one partition with lag,
        never fetched again). Put such partitions back every 2 s; if the buffer is really still
        full, Faust takes them out again on the next record."""
        put_back_buffered(app.consumer)

    status_path = s.data_dir / "run" / f"join-{os.getpid()}.json"

    async def write_status() -> None:
        """The CLI's `status` reads pending messages from here. Called by `status_timer` and before
        a stop (a function under @app.timer is its endless timer loop: never await one)."""
        snap = runtime.snapshot() | {"pid": os.getpid(), "at": time.time(), "offsets": _offsets(tracker, probe),
                                     "processed": processed[0], "first_record_at": first_record_at,
                                     "assignments": rebalances["count"], "partitions": rebalances["partitions"],
                                     "failure": failure[0]}
        write_json_atomic(status_path, snap)

    @app.timer(interval=2.0)
    async def status_timer() -> None:
        await write_status()

    @app.on_before_shutdown.connect
    async def _final_status(sender: Any, **kwargs: Any) -> None:
        await write_status()
        await probe.stop()

    if with_sink:
        writer = ResultWriter(settings)

        @app.task
        async def start_sink() -> None:
            """The sink stops with the app: it flushes and commits on SIGTERM."""
            await app.add_runtime_dependency(writer)
    return app
