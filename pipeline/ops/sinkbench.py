"""The bench's sink figure: result rows decoded and written into a fresh embedded engine.

Run by `mailsla bench` after the pipeline layouts, each run in its own child process and its own
engine (one chDB engine per process). A run writes two phases over the same message ids, as the
sink sees them in production:

1. first verdicts (rev 1) into an empty table: a third of the messages `overdue` (no queue-ready
   yet), the rest `on_time` or `late`;
2. revisions (rev 2) of every message: the overdue ones become `late` (queue-ready came), the
   others are re-sent at a higher rev (a duplicate or conflict that changed the row), so the
   revision lookup finds each row and the aggregate views retract its first contribution.

Each phase goes the sink's way: batch records (`encode_results`) decoded, batches of
`MAILSLA_BATCH_ROWS`, `Store.write` (lookup, prepare, insert with every aggregate view). A child
that fails puts its error on the queue: the bench then reports it and exits 1.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import replace
from typing import Any

import orjson

from pipeline.core.config import Settings

BASE_MS = 1_790_000_000_000
THRESHOLD_MS = 600_000  # the rows' own on_time/late split; the store does not judge


def result_rows(n: int, rev: int) -> list[bytes]:
    """n encoded result rows, message ids sink-000000000.. ; rev 1: first verdicts (every third
    `overdue`), rev 2: the same messages, the overdue ones now `late`."""
    rows = []
    for i in range(n):
        acc = BASE_MS + i * 500
        ready: int | None = acc + (i * 7919) % 900_000
        if rev == 1 and i % 3 == 0:  # deadline passed, queue-ready not yet seen
            ready, status = None, "overdue"
        elif i % 3 == 0:
            ready, status = acc + THRESHOLD_MS + (i % 50_000), "late"
        else:
            status = "on_time" if ready - acc < THRESHOLD_MS else "late"  # type: ignore[operator]
        rows.append(orjson.dumps({
            "k": "m", "message_id": f"sink-{i:09d}", "account_id": f"acct-{i % 500}",
            "message_class": "transactional" if i % 3 else "campaign", "priority": "normal", "source": "api",
            "mta": f"mta-{i % 4}", "client_error": "", "accepted_at": acc, "ready_at": ready,
            "handling_ms": None if ready is None else ready - acc, "status": status,
            "verdict_at": acc + THRESHOLD_MS if ready is None else min(ready, acc + THRESHOLD_MS),
            "clock_skew": False, "rev": rev}))
    return rows


def measure(s: Settings, n: int, runs: int) -> list[dict[str, float]]:
    """`runs` runs of `n` messages (2n rows), each in a fresh child process and engine: per run
    rows/s of the first phase, of the revisions, and of both together."""
    ctx = mp.get_context("spawn")
    out = []
    for i in range(runs):
        q: Any = ctx.Queue()
        p = ctx.Process(target=_run, args=(replace(s, data_dir=s.data_dir / f"sink-alone-{i}"), n, q))
        p.start()
        got = q.get()
        p.join()
        if "error" in got:
            raise RuntimeError(f"sink bench run {i}: {got['error']}")
        out.append(got)
    return out


def _run(s: Settings, n: int, q: Any) -> None:
    """Child process: one run into its own engine; its figures (or its error) on `q`."""
    try:
        q.put(_phases(s, n))
    except Exception as exc:  # noqa: BLE001 - reported by the parent, which exits 1
        q.put({"error": repr(exc)})


def _phases(s: Settings, n: int) -> dict[str, float]:
    from pipeline.core.batching import encode_results
    from pipeline.store.clickhouse import Store

    s = replace(s, clickhouse=f"chdb://{s.data_dir / 'clickhouse'}")
    store = Store(s)
    store.migrate()
    store.start_writing()
    try:
        warm = dict(orjson.loads(result_rows(1, 1)[0]), message_id="warm-up")  # first-use imports: start-up
        store.write([warm])
        first, revised = encode_results(result_rows(n, 1)), encode_results(result_rows(n, 2))
        t1 = _write(store, first, s.batch_rows)
        t2 = _write(store, revised, s.batch_rows)
        _, rows = store.query(f"SELECT count(), countIf(status = 'late') FROM {s.database}.handling_times_raw FINAL "
                              "WHERE message_id LIKE 'sink-%'")
        _, agg = store.query(f"SELECT sum(messages) FROM {s.database}.handling_minutely")
    finally:
        store.close()
    late = sum(1 for i in range(n) if i % 3 == 0)
    # the revisions landed and the views retracted each first contribution (the warm-up row is one more)
    if rows[0][0] != n or rows[0][1] < late or agg[0][0] != n + 1:
        raise RuntimeError(f"after both phases: {rows[0][0]} messages, {rows[0][1]} late, {agg[0][0]} counted in "
                           f"the aggregates; expected {n}, >= {late}, {n + 1}")
    return {"first_rows_per_s": n / t1, "revision_rows_per_s": n / t2, "rows_per_s": 2 * n / (t1 + t2)}


def _write(store: Any, records: list[bytes], batch_rows: int) -> float:
    """Seconds to decode `records` and write their rows in batches of `batch_rows`."""
    from pipeline.core.batching import decode_results

    t0 = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for rec in records:
        batch += decode_results(rec)
        if len(batch) >= batch_rows:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    return time.perf_counter() - t0
