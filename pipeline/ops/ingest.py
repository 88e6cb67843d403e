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
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from pipeline.core.config import Settings
from pipeline.core.mta.exim import EximLog
from pipeline.core.mta.mapping import IngestConfig
from pipeline.core.mta.postfix import PostfixLog
from pipeline.core.mta.source import LogSource
from pipeline.ops.logfollow import LogFollower
from pipeline.stream.kafka import ensure_topics, producer

BATCH_LINES = 20_000
POLL_S = 0.2
STATUS_EVERY_S = 2.0
SAVE_IDLE_EVERY_S = 1.0  # a batch without events moves the position at most this often


def checkpoint_path(settings: Settings, kind: str, log: Path) -> Path:
    digest = hashlib.sha1(str(log.resolve()).encode()).hexdigest()[:12]
    return settings.data_dir / "ingest" / f"{kind}-{log.name}-{digest}.json"


def _write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(doc))
        f.flush()
        os.fsync(f.fileno())  # the position must not come back older than what Kafka has
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

    def batch(self) -> list[tuple[str, str, dict[str, Any]]]:
        lines = self.follower.read(BATCH_LINES)
        now = time.monotonic()
        if lines:
            if self.parser.years.year is None:
                self.parser.years.reference_ms = self.follower.reference_ms() if not self.follower.follow or \
                    self.follower.current != self.path else int(time.time() * 1000)
            feed = self.parser.feed
            for raw in lines:
                feed(raw.decode("utf-8", "replace"))
            self.last_line, self.dirty = now, True
        self.parser.tick(int((now - self.last_line) * 1000))
        return self.parser.take()

    def save(self, force: bool = False) -> None:
        if not self.dirty and not force:
            return
        _write_json(self.saved_at, {"path": str(self.path), "kind": self.kind, "saved_at": time.time(),
                                    "position": self.follower.position(), "state": self.parser.state()})
        self.last_save, self.dirty = time.monotonic(), False

    def status(self) -> dict[str, Any]:
        pos = self.follower.position()
        try:
            behind = max(0, os.stat(self.path).st_size - pos["offset"]) if pos["file"] == str(self.path) else None
        except OSError:
            behind = None
        return {"path": str(self.path), "file": pos["file"], "offset": pos["offset"], "bytes_behind": behind,
                "lost": self.follower.lost, "error": self.follower.error, "truncations": self.follower.truncations,
                "in_flight": self.parser.in_flight, **self.parser.counters()}  # type: ignore[attr-defined]


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

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        await ensure_topics(self.settings)
        prod = producer(self.settings, acks="all")
        await prod.start()
        topics = {"accepted": self.settings.topic_accepted, "ready": self.settings.topic_ready}
        last_status = 0.0
        clean = False
        try:
            while not self.stopping:
                busy = False
                for log in self.logs:
                    events = log.batch()
                    if events:
                        if not await self._send(prod, topics, events):
                            return 1  # stopped while Kafka was away: the batch is read again next time
                        log.save(force=True)
                    elif log.dirty and time.monotonic() - log.last_save > SAVE_IDLE_EVERY_S:
                        log.save()
                    busy = busy or log.dirty
                if time.monotonic() - last_status > STATUS_EVERY_S:
                    self.write_status()
                    last_status = time.monotonic()
                if not self.follow and all(log.follower.finished for log in self.logs):
                    break
                if not busy:
                    await asyncio.sleep(POLL_S)
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

    async def _send(self, prod: Any, topics: dict[str, str], events: list[tuple[str, str, dict[str, Any]]]) -> bool:
        """Every event acknowledged (acks=all), else sent again with backoff: nothing is saved before.
        False: asked to stop while Kafka kept failing (the batch is not saved, so it is read again)."""
        pause = 0.5
        while not self.stopping or self.kafka_error is None:
            try:
                futures = [await prod.send(topics[kind], orjson.dumps(doc), key=key.encode())
                           for kind, key, doc in events]
                await asyncio.gather(*futures)
                self.sent += len(events)
                self.kafka_error = None
                return True
            except (KafkaError, OSError) as exc:
                if self.kafka_error is None:
                    print(f"mailsla ingest: Kafka at {self.settings.kafka} failed ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); sending the batch again until it is taken", file=sys.stderr, flush=True)
                self.kafka_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                self.write_status()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)
        print(f"mailsla ingest: stopped with {len(events)} events not acknowledged by Kafka; their lines are "
              "read again at the next start", file=sys.stderr)
        return False

    def write_status(self) -> None:
        doc = {"pid": os.getpid(), "at": time.time(), "kind": self.kind, "produced": self.sent,
               "kafka_error": self.kafka_error, "logs": [log.status() for log in self.logs]}
        try:
            _write_json(self.status_path, doc)
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
