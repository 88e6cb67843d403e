"""Insert latency while an analyst query runs: `python -m pipeline.ops.sqlload [--seconds 60] [--locked]`.

A measurement, not a test. In a fresh embedded database (a temporary directory unless
MAILSLA_DATA is set) a writer thread writes batches of result rows the way the sink does
(`Store.write`: revision lookup, journal, insert, every `--every` seconds). After `--warmup`
seconds an ad-hoc query that would run for hours starts through `Store.adhoc` with
MAILSLA_SQL_MAX_SECONDS = `--seconds`, so the limit stops it; then the writer runs `--warmup`
seconds more. Prints p50/p95/max of the insert latency before, during and after the query,
and the query's one-line error. `--locked` runs the same query on the writer's connection
(`Store.query`, under its lock: what every query did before ad-hoc SQL had its own
connections), to compare. Uses both cores of a small machine for the duration.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

HEAVY = "SELECT count() FROM numbers(1000000000000) WHERE sipHash64(number) % 7 = 3"


def rows(n: int, base_ms: int) -> list[dict[str, Any]]:
    """`n` on-time result rows of fresh messages, as the join emits them."""
    out = []
    for i in range(n):
        accepted = base_ms + i
        out.append({"k": "m", "message_id": uuid.uuid4().hex, "account_id": f"acct-{i % 50}",
                    "message_class": "transactional", "priority": "normal", "source": "smtp", "mta": "mta-1",
                    "client_error": "", "accepted_at": accepted, "ready_at": accepted + 1500, "handling_ms": 1500,
                    "status": "on_time", "verdict_at": accepted + 1500, "clock_skew": False, "rev": 1})
    return out


def summary(lat: list[float]) -> str:
    if not lat:
        return "no inserts"
    ms = sorted(x * 1000 for x in lat)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"{len(ms)} inserts, p50 {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.ops.sqlload", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="the query's time limit (default 60)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds of inserts before and after (default 10)")
    ap.add_argument("--batch", type=int, default=500, help="rows per insert (default 500)")
    ap.add_argument("--every", type=float, default=0.5, help="seconds between inserts (default 0.5)")
    ap.add_argument("--locked", action="store_true", help="run the query on the writer connection (old way)")
    args = ap.parse_args(argv)

    from pipeline.core import config
    from pipeline.core.errors import first_line
    from pipeline.store.adhoc import QueryError
    from pipeline.store.clickhouse import Store

    os.environ.setdefault("MAILSLA_DATA", tempfile.mkdtemp(prefix="mailsla-sqlload-"))
    settings = replace(config.load(), sql_max_seconds=args.seconds)
    store = Store(settings)
    store.migrate()
    phases: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    phase, stop = ["before"], threading.Event()

    def writer() -> None:
        base = int(time.time() * 1000)
        while not stop.is_set():
            batch = rows(args.batch, base)
            base += args.batch
            t = time.monotonic()
            store.write(batch)
            phases[phase[0]].append(time.monotonic() - t)
            stop.wait(max(0.0, args.every - (time.monotonic() - t)))

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    time.sleep(args.warmup)
    phase[0] = "during"
    started, outcome = time.monotonic(), "finished"
    try:
        if args.locked:
            store.query(HEAVY + f" SETTINGS max_execution_time = {int(args.seconds)}", readonly=False)
        else:
            store.adhoc(HEAVY)
    except QueryError as exc:
        outcome = str(exc)
    except Exception as exc:  # noqa: BLE001 - the locked path raises ClickHouse's own error
        outcome = first_line(exc, 200)
    took = time.monotonic() - started
    phase[0] = "after"
    time.sleep(args.warmup)
    stop.set()
    th.join()
    _, n = store.query(f"SELECT count() FROM {settings.database}.handling_times_raw")
    store.close()
    print(f"query on the {'writer (locked)' if args.locked else 'reader'} connection: {took:.1f} s, {outcome}")
    for name, lat in phases.items():
        print(f"{name:>6}: {summary(lat)}")
    print(f"rows written: {n[0][0]}; cores: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
