"""The bench's reference agents: the join's input topics read with the worker's app settings, and
nothing done with them.

Run by `mailsla bench` as child processes (`bench --noop-worker PATH --noop-path P`), one run per
path and repeat; each writes the wall time of its first and last record to `out` once `events`
records were read, and then keeps running until the bench stops it (SIGTERM):

* `batched` (`noop_batched_eps`, the join's own consumer path): the input topics' records come
  through `fastconsume.install` + `fastconsume.batches` with `batching.JOIN_BATCH_EVENTS`, exactly
  as `create_app` wires the join; the agent only subscribes;
* `take_events` (`faust_take_events_eps`): Faust's own per-record delivery, `stream.take_events`
  of `batching.BATCH_EVENTS` within `BATCH_WITHIN_S`. The join does not take this path; its
  figure shows what the batched drain saves.

The join's ratio to `batched` is what the join itself costs; a ratio above 1 would mean the two
read differently, which is what this module exists to rule out. The figure is the rate over the
second half of the records (`benchruns.noop_run`): a reader this fast is bound by the fetch, and
its first records are what the consumer fetched in the background while the app started (up to
Faust's 1 MB per partition: up to half of 200k events here), so timed from the first record it
read 108-119k ev/s where the steady rate was 80k (three runs, 2026-12-03). The join, bound by
its own work, is not moved by that head start and is timed from its first record.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import faust

from pipeline.core import batching
from pipeline.core.config import Settings
from pipeline.stream.app import make_app
from pipeline.stream.faust_internals import fastconsume
from pipeline.stream.statusfile import write_json_atomic

PATHS = ("batched", "take_events")


class _Done:
    """Counts records; at the `events`-th writes to `out` the wall time of the first record, of the
    one that passed half of `events` (with the count then), and of the last."""

    def __init__(self, events: int, out: Path) -> None:
        self.events, self.out = events, out
        self.seen, self.first, self.half_at, self.half_seen = 0, 0.0, 0.0, 0

    def got(self, n: int) -> None:
        now = time.time()
        self.first = self.first or now
        self.seen += n
        if not self.half_at and self.seen * 2 >= self.events:
            self.half_at, self.half_seen = now, self.seen
        if self.seen >= self.events and not self.out.exists():
            write_json_atomic(self.out, {"first_at": self.first, "half_at": self.half_at, "half_seen": self.half_seen,
                                         "last_at": now, "events": self.seen})


def noop_app(settings: Settings, events: int, out: Path, path: str = "batched") -> faust.App:
    """The reference app for `path` (one of PATHS) over the accepted and queue-ready topics."""
    if path not in PATHS:
        raise ValueError(f"no-op path {path!r}: one of {', '.join(PATHS)}")
    app = make_app(settings, app_id=settings.app_id)
    s = settings
    source = app.topic(s.topic_accepted, s.topic_ready, acks=False,
                       partitions=s.partitions, key_serializer="raw", value_serializer="raw")
    done = _Done(events, out)
    if path == "take_events":
        @app.agent(source, name="noop")
        async def take(stream: Any) -> None:
            async for got in stream.take_events(batching.BATCH_EVENTS, within=batching.BATCH_WITHIN_S):
                done.got(len(got))
        return app

    inbox = fastconsume.install(app.consumer, {s.topic_accepted, s.topic_ready})

    @app.agent(source, name="noop")
    async def subscribe(stream: Any) -> None:
        """Subscribes to the input topics; their records go to `drain`, as the join's go to `join_loop`."""
        async for _ in stream:
            pass

    @app.task
    async def drain() -> None:
        while True:
            done.got(len(await fastconsume.batches(inbox, batching.JOIN_BATCH_EVENTS)))

    return app
