"""The Faust app: made here and only here.

`create_app(settings)` wires the join agent (accepted + queue-ready + ticks,
co-partitioned by message id), the state table with its changelog, the
wall-clock ticker, a status file for the CLI, and (unless disabled) the
ClickHouse sink service. Start it with `mailsla worker`.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import faust

from pipeline.config import Settings
from pipeline.runtime import JoinRuntime
from pipeline.status import remove_stale
from pipeline.writer import ResultWriter

log = logging.getLogger("mailsla.worker")


def broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip())


def create_app(settings: Settings, with_sink: bool = True) -> faust.App:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=broker_url(settings.kafka),
        store=settings.store,
        datadir=str(settings.data_dir / "faust"),
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
    )
    s = settings
    source = app.topic(s.topic_accepted, s.topic_ready, s.topic_ticks,
                       partitions=s.partitions, key_serializer="raw", value_serializer="raw")
    results = app.topic(s.topic_results, partitions=s.partitions)
    dead_letters = app.topic(s.topic_dead_letters, partitions=s.partitions)
    inputs = {s.topic_accepted: app.topic(s.topic_accepted), s.topic_ready: app.topic(s.topic_ready)}
    ticks = app.topic(s.topic_ticks, partitions=s.partitions)
    table = app.Table("join-state", default=None, partitions=s.partitions,
                      key_type=bytes, value_type=bytes)
    table.key_serializer = table.value_serializer = "raw"  # before the changelog topic exists
    runtime = JoinRuntime(settings, table)
    app.mailsla_runtime = runtime  # type: ignore[attr-defined]

    @app.agent(source, name="join")
    async def join_agent(stream: Any) -> None:
        """Runs for every input record of the partitions this worker owns."""
        async for event in stream.events():
            msg = event.message
            for out in runtime.handle(msg.topic, msg.partition, msg.offset, msg.key, msg.value):
                if out.kind == "result":
                    await results.send(key=out.key, value=out.value)
                elif out.kind == "dead_letter":
                    await dead_letters.send(key=out.key, value=out.value)
                else:
                    await inputs[out.topic].send(key=out.key, value=out.value)  # type: ignore[index]

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        runtime.reset({tp.partition for tp in assigned if tp.topic == s.topic_accepted})

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
        consumer = app.consumer
        for tp in list(getattr(consumer, "_buffered_partitions", ())):
            consumer.on_buffer_drop(tp)

    status_path = s.data_dir / "run" / f"join-{os.getpid()}.json"

    @app.timer(interval=2.0)
    async def write_status() -> None:
        """The CLI's `status` reads pending messages from here."""
        status_path.parent.mkdir(parents=True, exist_ok=True)
        snap = runtime.snapshot() | {"pid": os.getpid(), "at": time.time()}
        tmp = status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snap))
        tmp.replace(status_path)

    @app.on_before_shutdown.connect
    async def _final_status(sender: Any, **kwargs: Any) -> None:
        await write_status()

    if with_sink:
        writer = ResultWriter(settings)

        @app.task
        async def start_sink() -> None:
            """The sink stops with the app: it flushes and commits on SIGTERM."""
            await app.add_runtime_dependency(writer)
    return app
