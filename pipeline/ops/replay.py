"""`mailsla replay FILE`: produce a JSONL file of events to the input topics.

Each line is one event object, routed by field (`accepted_at` -> accepted
topic, `ready_at` -> queue-ready topic, `attempt_id` -> injections topic keyed by
attempt id, `target` + `ok` -> probes topic keyed by target) and keyed by its message id; account
facts (`account_id` with `first_send_at`/`rate_limited`, no message id) go to
the accounts topic keyed by account id. Lines
that break the contract are reported with their line numbers; the ones that
can be routed are still produced (the worker dead-letters them with the
reason), the others go straight to the dead-letter topic: nothing is lost.
"""
from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson
from aiokafka.errors import KafkaError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pipeline.core.config import Settings
from pipeline.core.errors import first_line
from pipeline.core.events import BadEvent, parse_account, parse_accepted, parse_injection, parse_probe, parse_ready
from pipeline.core.deadletters import dead_letter
from pipeline.stream.kafka import ensure_topics, producer


def route(settings: Settings, line: bytes) -> tuple[str | None, bytes | None, str | None]:
    """(topic, key, problem) for one line; topic None = cannot be routed."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return None, None, f"invalid JSON: {exc}"
    if not isinstance(obj, dict):
        return None, None, f"expected a JSON object, got {type(obj).__name__}"
    id_field = "message_id"
    if "accepted_at" in obj:
        topic, parse = settings.topic_accepted, parse_accepted
    elif "ready_at" in obj:
        topic, parse = settings.topic_ready, parse_ready
    elif "attempt_id" in obj:  # availability: a submission attempt
        topic, parse, id_field = settings.topic_injections, parse_injection, "attempt_id"
    elif "target" in obj and "ok" in obj:  # availability: a synthetic check
        topic, parse, id_field = settings.topic_probes, parse_probe, "target"
    elif "message_id" not in obj and "account_id" in obj and ("first_send_at" in obj or "rate_limited" in obj):
        try:  # account facts mixed into a traffic file: to the compacted accounts topic
            return settings.topic_accounts, parse_account(line).account_id.encode("utf-8"), None
        except BadEvent as exc:
            return None, None, f"account record: {exc}"
    else:
        return None, None, "neither accepted_at, ready_at, attempt_id nor target+ok: cannot route"
    mid = obj.get(id_field)
    key = mid.encode("utf-8") if isinstance(mid, str) and mid else None
    try:
        parse(line)
    except BadEvent as exc:
        return topic, key, str(exc)
    return topic, key, None


def lines_of(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line:
                yield n, line


def progress(total: int | None, label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    disable=not sys.stderr.isatty(), transient=False)


class ProduceFailed(Exception):
    """Kafka failed part-way: `acked` records were acknowledged (acks=all) before it did,
    `sent` were handed to the producer. Producing the same input again is safe: the join
    de-duplicates by message id and rows are revisioned."""

    def __init__(self, sent: int, acked: int, cause: BaseException) -> None:
        self.sent, self.acked = sent, acked
        self.reason = first_line(cause, 200)
        super().__init__(f"{acked} acknowledged of {sent} sent: {self.reason}")


STOP_TIMEOUT_S = 10.0  # closing the producer flushes; with the broker gone that would take its request timeout
SEND_EVERY_S = 0.2  # a paced source's records go out at least this often (see produce_all)


async def produce_all(settings: Settings, records: Iterable[tuple[str, bytes | None, bytes]],
                      total: int | None = None, label: str = "producing") -> int:
    """Send (topic, key, value) records; waits for every delivery. Returns the count.

    Raises ProduceFailed (with how many records Kafka acknowledged) when Kafka cannot be reached
    or stops answering part-way."""
    sent = acked = 0
    futures: list[Any] = []

    def settled() -> int:
        return sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None)

    prod = None
    try:
        await ensure_topics(settings)
        prod = producer(settings, acks="all")
        await prod.start()
        with progress(total, label) as bar:
            task = bar.add_task(label, total=total)
            waited = time.monotonic()
            for topic, key, value in records:
                futures.append(await prod.send(topic, value, key=key))
                sent += 1
                # the producer sends only while this loop waits: a paced source (generate's live
                # mode sleeps between events) would otherwise go out in bursts of 5,000
                if len(futures) >= 5000 or time.monotonic() - waited > SEND_EVERY_S:
                    await asyncio.gather(*futures)
                    bar.update(task, advance=len(futures))
                    acked += len(futures)
                    futures = []
                    waited = time.monotonic()
            await asyncio.gather(*futures)
            bar.update(task, advance=len(futures))
            acked += len(futures)
            futures = []
    except (KafkaError, OSError) as exc:
        raise ProduceFailed(sent, acked + settled(), exc) from None
    finally:
        if prod is not None:
            try:
                await asyncio.wait_for(prod.stop(), STOP_TIMEOUT_S)
            except (KafkaError, OSError, asyncio.TimeoutError):
                pass
        for f in futures:  # no "exception was never retrieved" noise for the ones that failed
            if f.done() and not f.cancelled():
                f.exception()
    return acked


def replay(settings: Settings, path: Path, out: Any = sys.stderr) -> dict[str, int]:
    """Produce the file; returns counts. On a Kafka failure part-way, raises ProduceFailed with
    `stats` attached (its `acked` counts records, lines of the file in order of production)."""
    total = sum(1 for _ in lines_of(path))
    stats = {"lines": 0, "produced": 0, "invalid": 0, "dead_lettered": 0}

    def records() -> Iterator[tuple[str, bytes | None, bytes]]:
        for n, line in lines_of(path):
            stats["lines"] += 1
            topic, key, problem = route(settings, line)
            if problem:
                stats["invalid"] += 1
                print(f"{path}:{n}: {problem}", file=out)
            if topic is None:
                stats["dead_lettered"] += 1
                yield settings.topic_dead_letters, None, dead_letter(
                    f"replay:{path.name}", -1, n, None, line, problem or "unroutable")
            else:
                stats["produced"] += 1
                yield topic, key, line

    try:
        stats["acknowledged"] = asyncio.run(produce_all(settings, records(), total, f"replay {path.name}"))
    except ProduceFailed as exc:
        exc.stats = stats | {"acknowledged": exc.acked}  # type: ignore[attr-defined]
        raise
    return stats
