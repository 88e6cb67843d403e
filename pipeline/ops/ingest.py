"""`mailsla ingest postfix|exim LOG...`: follow MTA logs and produce their events.

Per log: a `LogFollower` (pipeline/ops/logfollow.py) gives complete lines, the pure parser
(pipeline/core/mta/) turns them into events, the events go to the input topics keyed by message_id
with acks=all, and only once Kafka acknowledged all of them are the position and the parser's state
saved together (`$MAILSLA_DATA/ingest/<kind>-<hash of the path>.json`, written atomically). A SIGKILL
thus repeats at most the batch in flight (its events are duplicates, which the join counts once)
and loses nothing. Kafka away: the batch is sent again with backoff until it is taken; nothing
more is read meanwhile. SIGTERM/SIGINT: the batch in flight is finished and saved, exit 0.

The process writes its counters to `$MAILSLA_DATA/run/ingest-<pid>.json` (every 2 s and at exit),
which `mailsla status` and the live page show.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from pipeline.core.config import Settings
from pipeline.core.mta.exim import EximLog
from pipeline.core.mta.mapping import IngestConfig
from pipeline.core.mta.postfix import PostfixLog
from pipeline.core.mta.source import LogSource
from pipeline.ops.logfollow import LogFollower
from pipeline.store.owner import pid_alive
from pipeline.stream.batchsend import send_records
from pipeline.stream.kafka import ensure_topics, producer

BATCH_LINES = 20_000
POLL_S = 0.2
STATUS_EVERY_S = 2.0
SAVE_IDLE_EVERY_S = 1.0  # a batch without events moves the position at most this often


def checkpoint_path(settings: Settings, kind: str, log: Path) -> Path:
    digest = hashlib.sha1(str(log.resolve()).encode()).hexdigest()[:12]
    return settings.data_dir / "ingest" / f"{kind}-{log.name}-{digest}.json"


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())  # a checkpoint must not come back older than what Kafka has
    tmp.replace(path)


class LogIngest:
    """One log: its follower, its parser, its saved checkpoint."""

    def __init__(self, settings: Settings, kind: str, path: Path, cfg: IngestConfig, from_start: bool,
                 follow: bool, host: str) -> None:
        self.path, self.kind = path, kind
        self.saved_at = checkpoint_path(settings, kind, path)
        saved = None
        if not from_start and self.saved_at.exists():
            try:
                saved = json.loads(self.saved_at.read_text())
            except (OSError, ValueError):
                saved = None  # a checkpoint cut by a crash of the disk: start as new, say so in status
        self.follower = LogFollower(path, saved["position"] if saved else None, from_start, follow)
        now = int(time.time() * 1000)
        self.parser: LogSource = PostfixLog(cfg, now) if kind == "postfix" else EximLog(cfg, now, host)
        if saved:
            self.parser.restore(saved.get("state") or {})
        self.last_line = time.monotonic()
        self.last_save = 0.0
        self.dirty = False

    def batch(self) -> tuple[list[tuple[str, str, dict[str, Any]]], bool]:
        """(the events of the next lines and of the time that passed, whether there were lines)."""
        lines = self.follower.read(BATCH_LINES)
        now = time.monotonic()
        if lines:
            if self.parser.years.year is None:
                self.parser.years.reference_ms = self.follower.reference_ms() if not self.follower.follow or \
                    self.follower.current != self.path else int(time.time() * 1000)
            feed = self.parser.feed
            for line in lines:
                feed(line)
            self.last_line, self.dirty = now, True
        self.parser.tick(int((now - self.last_line) * 1000))
        return self.parser.take(), bool(lines)

    def snapshot(self) -> bytes:
        """The checkpoint as of the lines read so far (position and parser state, encoded now: the
        parser goes on while Kafka acknowledges)."""
        return orjson.dumps({"path": str(self.path), "kind": self.kind, "saved_at": time.time(),
                             "position": self.follower.position(), "state": self.parser.state()})

    def save(self, snapshot: bytes | None = None) -> None:
        """Write a checkpoint (atomically, fsynced): only once Kafka acknowledged every event before it."""
        _write_bytes(self.saved_at, snapshot if snapshot is not None else self.snapshot())
        # a batch's checkpoint may be behind what was read since: the idle save writes the rest
        self.last_save, self.dirty = time.monotonic(), snapshot is not None

    def status(self) -> dict[str, Any]:
        pos = self.follower.position()
        try:
            behind = max(0, os.stat(self.path).st_size - pos["offset"]) if pos["file"] == str(self.path) else None
        except OSError:
            behind = None
        return {"path": str(self.path), "file": pos["file"], "offset": pos["offset"], "bytes_behind": behind,
                "lost": self.follower.lost, "error": self.follower.error, "truncations": self.follower.truncations,
                "in_flight": self.parser.in_flight, **self.parser.counters()}  # type: ignore[attr-defined]


class Batch(NamedTuple):
    """Events queued to Kafka, and the checkpoint to write once all of them are acknowledged."""

    log: LogIngest
    snapshot: bytes
    events: list[tuple[str, str, dict[str, Any]]]
    futures: list[Any]


class Ingest:
    """The whole command: several logs, one producer, one status file."""

    def __init__(self, settings: Settings, kind: str, paths: list[Path], cfg: IngestConfig, *, from_start: bool,
                 follow: bool, host: str | None) -> None:
        self.settings, self.kind, self.follow = settings, kind, follow
        host = host or cfg.exim_host or socket.gethostname().split(".")[0]
        self.logs = [LogIngest(settings, kind, p, cfg, from_start, follow, host) for p in paths]
        self.status_path = settings.data_dir / "run" / f"ingest-{os.getpid()}.json"
        self.stopping = False
        self.kafka_error: str | None = None
        self.sent = 0
        self._partitioner = DefaultPartitioner()  # the producer's own: murmur2 of the key, as Java's
        self._partitions: dict[str, int] = {}  # message_id -> partition (the two topics have the same count)
        self._count = 0

    async def run(self) -> int:
        for old in self.status_path.parent.glob("ingest-*.json"):  # reports of ingests that are gone
            try:
                if not pid_alive(int(old.stem.split("-")[1])):
                    old.unlink()
            except (OSError, ValueError):
                pass
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        await ensure_topics(self.settings)
        prod = producer(self.settings, acks="all")
        await prod.start()
        topics = {"accepted": self.settings.topic_accepted, "ready": self.settings.topic_ready}
        last_status = 0.0
        clean = False
        inflight: Batch | None = None  # queued to Kafka, its checkpoint not yet written
        try:
            while not self.stopping:
                busy = False
                for log in self.logs:
                    events, read = log.batch()
                    if events:
                        # this batch was parsed while Kafka acknowledged the previous one; that one is
                        # settled (saved) before this one is queued, so a SIGKILL repeats one batch at most
                        snapshot = log.snapshot()
                        if inflight is not None and not await self._settle(prod, topics, inflight):
                            return 1  # stopped while Kafka was away: the batch is read again next time
                        inflight = Batch(log, snapshot, events, await self._queue(prod, topics, events))
                    elif log.dirty and time.monotonic() - log.last_save > SAVE_IDLE_EVERY_S and (
                            inflight is None or inflight.log is not log):
                        log.save()  # lines without events: the position moves on now and then
                    busy = busy or read
                if not busy and inflight is not None:
                    if not await self._settle(prod, topics, inflight):
                        return 1
                    inflight = None
                if time.monotonic() - last_status > STATUS_EVERY_S:
                    self.write_status()
                    last_status = time.monotonic()
                if not self.follow and inflight is None and all(log.follower.finished for log in self.logs):
                    break
                if not busy:
                    await asyncio.sleep(POLL_S)
            if inflight is not None and not await self._settle(prod, topics, inflight):
                return 1
            clean = True
        finally:
            for log in self.logs:
                if clean:  # everything read was acknowledged: the position may move on
                    log.save()
                log.follower.close()
            self.write_status()
            try:
                await asyncio.wait_for(prod.stop(), 10)
            except (KafkaError, OSError, asyncio.TimeoutError):
                pass
        return 0

    def _stop(self) -> None:
        self.stopping = True

    async def _settle(self, prod: Any, topics: dict[str, str], batch: "Batch") -> bool:
        """Wait until Kafka acknowledged the batch (acks=all), then write its checkpoint. A failure
        sends the same events again with backoff; nothing is written before. False: asked to stop
        while Kafka kept failing (the checkpoint stays where it was, so the lines are read again)."""
        pause, futures = 0.5, batch.futures
        while True:
            try:
                await asyncio.gather(*futures)
                break
            except (KafkaError, OSError) as exc:
                if self.kafka_error is None:
                    print(f"mailsla ingest: Kafka at {self.settings.kafka} failed ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); sending the batch again until it is taken", file=sys.stderr, flush=True)
                self.kafka_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                self.write_status()
                if self.stopping:
                    print(f"mailsla ingest: stopped with {len(batch.events)} events not acknowledged by Kafka; "
                          "their lines are read again at the next start", file=sys.stderr)
                    return False
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)
                try:
                    futures = await self._queue(prod, topics, batch.events)
                except (KafkaError, OSError):
                    futures = []
                    continue
        self.sent += len(batch.events)
        self.kafka_error = None
        batch.log.save(batch.snapshot)
        return True

    async def _queue(self, prod: Any, topics: dict[str, str], events: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
        """The events as whole record batches per partition (pipeline/stream/batchsend.py: one future
        per batch, not per record), partitioned by message_id as `send(key=...)` would: the join's
        co-partitioning of the two topics holds, and each message's events keep their order."""
        by_partition: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        parts = {t: sorted(await prod.partitions_for(t)) for t in {topics[k] for k, _, _ in events}}
        cache = self._partitions
        if len(cache) > 100_000:
            cache.clear()
        for kind, key, doc in events:
            topic, kb = topics[kind], key.encode()
            p = cache.get(key)  # both events of a message: one murmur2 (pure Python, ~10 us)
            if p is None or len(parts[topic]) != self._count:
                p = cache[key] = self._partitioner(kb, parts[topic], parts[topic])
                self._count = len(parts[topic])
            by_partition.setdefault((topic, p), []).append((kb, orjson.dumps(doc)))
        futures: list[Any] = []
        for (topic, partition), records in by_partition.items():
            await send_records(prod, topic, partition, records, lambda f, _n: futures.append(f))
        return futures

    def write_status(self) -> None:
        doc = {"pid": os.getpid(), "at": time.time(), "kind": self.kind, "produced": self.sent,
               "kafka_error": self.kafka_error, "logs": [log.status() for log in self.logs]}
        try:
            _write_bytes(self.status_path, orjson.dumps(doc))
        except OSError:
            pass  # the status is for people; a full disk must not stop the ingest


def run(settings: Settings, kind: str, paths: list[Path], cfg: IngestConfig, *, from_start: bool, follow: bool,
        host: str | None) -> int:
    ingest = Ingest(settings, kind, paths, cfg, from_start=from_start, follow=follow, host=host)
    for log in ingest.logs:
        if log.follower.lost:
            print(f"mailsla ingest: saved position of {log.path} lost: {log.follower.lost}; reading the current "
                  "file from its start", file=sys.stderr)
    return asyncio.run(ingest.run())
