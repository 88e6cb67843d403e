"""`make demo`: local Kafka, a worker and the generator, with a live summary.

Runs for a bounded time (or until Ctrl-C), prints the month's SLA verdict,
stops everything it started and leaves the data for `mailsla sql`.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime, timezone

from pipeline.store import api
from pipeline.ops import procs
from pipeline.core import rates, sla
from pipeline.core.config import Settings
from pipeline.store.guard import read_token
from pipeline.ops.localkafka import LocalKafka
from pipeline.stream.status import collect, live_snapshots

SUMMARY_SQL = """
SELECT message_class,
       sumIf(messages, minute >= toStartOfMinute(now() - INTERVAL 1 MINUTE)) AS n_1m,
       quantilesTDigestMergeIf(0.5, 0.9, 0.99)(latency, minute >= toStartOfMinute(now() - INTERVAL 1 MINUTE)) AS q_1m,
       sum(messages) AS n, sum(within) AS w
FROM {db}.handling_minutely GROUP BY message_class ORDER BY message_class
"""


def fmt_ms(ms: float | None) -> str:
    if ms is None or ms != ms:
        return "-"
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms / 60_000:.1f}min"


def smoothed_rate(samples: list[list[float]], at: float, events: int) -> tuple[list[list[float]], float]:
    """Events/s over the last `rates.WINDOW_S` seconds, as the live page shows it: the worker's
    counters move every 2 s and the line prints every 5 s, so the change between two lines
    alternated between 0 and a burst. Returns the samples to keep for the next line."""
    if at <= 0:  # no worker has reported yet
        return samples, 0.0
    kept, (rate,) = rates.windowed(samples, [at, events])
    return kept, rate


def summary(settings: Settings, url: str, samples: list[list[float]]) -> str:
    """One terminal line; `samples` (the rate's window) is updated in place."""
    snaps = live_snapshots(settings)
    events = sum(s["counters"].get("events_accepted", 0) + s["counters"].get("events_ready", 0) for s in snaps)
    pending = sum(s.get("pending_messages", 0) for s in snaps)
    at = max((s.get("at", 0.0) for s in snaps), default=0.0)  # when the worker wrote its counters
    samples[:], rate = smoothed_rate(samples, at, events)
    parts = [f"{datetime.now(timezone.utc):%H:%M:%S}", f"{rate:7.0f} ev/s ({rates.WINDOW_S:.0f}s)",
             f"pending {pending:6d}"]
    try:
        _, rows = api.remote_query(url, SUMMARY_SQL.format(db=settings.database), read_token(settings), timeout=10)
    except Exception:  # noqa: BLE001 - the summary is best effort while things start
        rows = []
    for cls, n_1m, q, n, w in rows:
        share = f"{100 * w / n:.2f}%" if n else "-"
        p = " ".join(fmt_ms(v) for v in (q or [None] * 3)) if n_1m else "- - -"
        parts.append(f"{cls[:5]}: p50/p90/p99(1m) {p}  within {share}")
    return " | ".join(parts)


def print_sla(settings: Settings) -> None:
    """Once everything is in ClickHouse (or after 60 s): the month's verdict, from the worker's API."""
    procs.wait_for(lambda: asyncio.run(collect(settings))["total_lag"] == 0, 60, 1.0)
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    _, rows = api.remote_query(api.find(settings) or "", sla.monthly_sql(settings.database, month),
                               read_token(settings))
    target = settings.policy.objective if settings.policy else sla.TARGET
    print("\n" + sla.render(sla.verdict(month, rows, settings.threshold_ms, target)))
    print("\nmessages still waiting for queue-ready are not in these counts until their deadline.")


def run(settings: Settings, duration: float, rate: float) -> int:
    lk = LocalKafka(settings.data_dir / "kafka")
    started_kafka = not lk.running()
    addr = lk.up()
    settings = replace(settings, kafka=addr)
    print(f"kafka       {addr}{' (started)' if started_kafka else ' (already running)'}")
    env = procs.child_env(MAILSLA_KAFKA=addr, MAILSLA_DATA=str(settings.data_dir))
    log = settings.data_dir / "worker.log"
    worker = procs.spawn(["worker"], env, log)
    gen = None
    try:
        if not procs.wait_for(lambda: api.find(settings) is not None, 90):
            print(f"worker did not start; see {log}")
            return 1
        url = api.find(settings)
        print(f"worker      pid {worker.pid}, log {log}, ClickHouse {settings.redacted_dsn}")
        print(f"live page   {url}/   (open it in a browser now; /metrics for Prometheus; "
              f"`.venv/bin/mailsla top` in a terminal)")
        print(f"generator   {rate:.0f} messages/s for {duration:.0f}s (Ctrl-C stops early)\n")
        gen = procs.spawn(["generate", "--rate", str(rate), "--duration", str(duration)], env, None)
        samples: list[list[float]] = []
        while gen.poll() is None:
            time.sleep(5)
            print(summary(settings, url, samples), flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping")
    finally:
        if gen is not None:
            procs.stop(gen, 10)
    try:
        print_sla(settings)
    finally:
        procs.stop(worker)
        if started_kafka:
            lk.down()
    print(f"\nstopped. data left in {settings.data_dir}; try:\n"
          f"  .venv/bin/mailsla sql \"SELECT status, count() FROM mailsla.handling_times GROUP BY status\"")
    return 0
