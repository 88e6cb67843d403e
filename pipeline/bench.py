"""`make bench`: end-to-end throughput against the raw aiokafka ceiling.

Not a test: it measures and prints. Steps, all in one run on this machine:
1. produce N events (N/2 messages, simulated time) to a fresh topic pair;
2. ceiling: a bare aiokafka consumer reads the same topics from the start;
3. pipeline: one `mailsla worker` (join + ClickHouse sink) from start until
   `status` shows everything written; events/s and the ratio to the ceiling;
4. t-digest libraries: `tdigest` (pure Python) vs `fastdigest` (compiled) on
   the same values, speed and agreement with exact quantiles.
Results are printed and saved to `$MAILSLA_DATA/bench/<time>.json`.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from pipeline import api, generator, procs
from pipeline.config import Settings
from pipeline.localkafka import LocalKafka
from pipeline.replay import produce_all
from pipeline.status import collect


async def _ceiling(s: Settings, n: int) -> float:
    c = AIOKafkaConsumer(s.topic_accepted, s.topic_ready, bootstrap_servers=s.kafka,
                         group_id=f"ceiling-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
                         enable_auto_commit=False, max_poll_records=10_000)
    await c.start()
    try:
        got, t0 = 0, time.perf_counter()
        while got < n:
            batch = await c.getmany(timeout_ms=1000, max_records=10_000)
            for recs in batch.values():
                for r in recs:  # touch each value as the worker would
                    orjson.loads(r.value)
                got += sum(len(v) for v in batch.values())
        return n / (time.perf_counter() - t0)
    finally:
        await c.stop()


def digest_compare(n: int = 200_000) -> dict[str, Any]:
    rng = random.Random(3)
    values = [rng.lognormvariate(7.8, 1.0) for _ in range(n)]
    exact = sorted(values)
    truth = {q: exact[int(q * (n - 1))] for q in (0.5, 0.9, 0.99)}
    out: dict[str, Any] = {}
    try:
        from fastdigest import TDigest as Fast

        t0 = time.perf_counter()
        d = Fast.from_values(values)
        qs = {q: d.quantile(q) for q in truth}
        out["fastdigest"] = {"seconds": time.perf_counter() - t0,
                             "max_rel_error": max(abs(qs[q] - truth[q]) / truth[q] for q in truth)}
    except ImportError:
        out["fastdigest"] = None
    try:
        from tdigest import TDigest as Slow

        sample = values[: n // 10]  # the pure-Python one is slow: time a tenth, scale up
        t0 = time.perf_counter()
        d = Slow()
        d.batch_update(sample)
        elapsed = (time.perf_counter() - t0) * 10
        qs = {q: d.percentile(q * 100) for q in truth}
        out["tdigest"] = {"seconds": elapsed, "max_rel_error": max(abs(qs[q] - truth[q]) / truth[q] for q in truth)}
    except ImportError:
        out["tdigest"] = None
    return out


def run(settings: Settings, events: int) -> int:
    lk = LocalKafka(settings.data_dir / "kafka")
    started = not lk.running()
    addr = lk.up()
    tag = uuid.uuid4().hex[:6]
    data = settings.data_dir / "bench" / tag
    s = replace(settings, kafka=addr, data_dir=data, clickhouse=f"chdb://{data / 'clickhouse'}",
                app_id=f"bench-{tag}", topic_accepted=f"bench-{tag}.accepted",
                topic_ready=f"bench-{tag}.queue_ready", topic_results=f"bench-{tag}.results",
                topic_ticks=f"bench-{tag}.ticks", topic_dead_letters=f"bench-{tag}.dead_letters")
    messages = events // 2
    print(f"bench: {events:,} events ({messages:,} messages), {s.partitions} partitions, broker {addr}")
    start_ms = int(datetime(2026, 10, 1, tzinfo=timezone.utc).timestamp() * 1000)
    rate = messages / 86_400  # one day of simulated traffic
    topics = {"accepted": s.topic_accepted, "ready": s.topic_ready}
    records = ((topics[k], ev["message_id"].encode(), orjson.dumps(ev))
               for k, ev in generator.simulated(rate, 86_400, 11, start_ms))
    t0 = time.perf_counter()
    produced = asyncio.run(produce_all(s, records, events, "producing"))
    produce_rate = produced / (time.perf_counter() - t0)
    print(f"  produced      {produced:,} events at {produce_rate:,.0f} ev/s")
    ceiling = asyncio.run(_ceiling(s, produced))
    print(f"  ceiling       {ceiling:,.0f} ev/s (bare aiokafka consumer + orjson, same topics)")
    env = procs.child_env(
        MAILSLA_KAFKA=addr, MAILSLA_DATA=str(data), MAILSLA_CLICKHOUSE=s.clickhouse, MAILSLA_APP_ID=s.app_id,
        MAILSLA_TOPIC_ACCEPTED=s.topic_accepted, MAILSLA_TOPIC_QUEUE_READY=s.topic_ready,
        MAILSLA_TOPIC_RESULTS=s.topic_results, MAILSLA_TOPIC_TICKS=s.topic_ticks,
        MAILSLA_TOPIC_DEAD_LETTERS=s.topic_dead_letters, MAILSLA_IDLE_GRACE_S="0")
    runs = {}
    try:
        for name, layout in (("in_process_sink", [["worker"]]),
                             ("separate_sink", [["worker", "--no-sink"], ["sink"]])):
            runs[name] = _pipeline_run(s, env, layout, produced, name)
            if runs[name] is None:
                print("  pipeline did not finish within an hour; see", data)
                return 1
    finally:
        if started:
            lk.down()
    best = max(runs.values(), key=lambda r: r["eps"])  # type: ignore[union-attr]
    e2e = best["eps"]  # type: ignore[index]
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "events": produced, "produce_eps": produce_rate, "ceiling_eps": ceiling,
        "pipeline_eps": e2e, "ratio": e2e / ceiling, "runs": runs, "digests": digest_compare(),
    }
    print(f"  ratio         {result['ratio']:.3f} of the aiokafka ceiling (best layout)")
    for name, d in result["digests"].items():
        if d:
            print(f"  t-digest      {name:<10} 200k values in {d['seconds']:.3f}s, "
                  f"max rel. error p50/p90/p99 {d['max_rel_error']:.4f}")
    out = settings.data_dir / "bench" / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"  saved         {out}")
    return 0


def _pipeline_run(s: Settings, env: dict[str, str], layout: list[list[str]], produced: int,
                  name: str) -> dict[str, Any] | None:
    """Start the processes of one layout with fresh groups; time until all is written."""
    tag = uuid.uuid4().hex[:4]
    data = s.data_dir / name
    s = replace(s, app_id=f"{s.app_id}-{tag}", data_dir=data, clickhouse=f"chdb://{data / 'clickhouse'}",
                topic_results=f"{s.topic_results}-{tag}")
    env = {**env, "MAILSLA_APP_ID": s.app_id, "MAILSLA_DATA": str(data), "MAILSLA_CLICKHOUSE": s.clickhouse,
           "MAILSLA_TOPIC_RESULTS": s.topic_results}
    t0 = time.perf_counter()
    children = [procs.spawn(args, env, data / f"{args[0]}.log") for args in layout]
    try:
        procs.wait_for(lambda: api.find(s) is not None, 120)
        started = time.perf_counter() - t0
        if not procs.wait_for(lambda: _idle(s), 3600, 2.0):
            return None
        elapsed = time.perf_counter() - t0
        rss = {args[0] + ("-no-sink" if "--no-sink" in args else ""): procs.peak_rss_mb(c.pid)
               for args, c in zip(layout, children)}
    finally:
        for c in children:
            procs.stop(c)
    eps = produced / elapsed
    print(f"  pipeline      {eps:,.0f} ev/s end to end, {name} ({' + '.join(a[0] for a in layout)}): "
          f"{elapsed:.1f}s incl. {started:.1f}s start; peak RSS MB {rss}")
    return {"eps": eps, "elapsed_s": elapsed, "start_s": started, "peak_rss_mb": rss}


def _idle(s: Settings) -> bool:
    st = asyncio.run(collect(s))
    return st["total_lag"] == 0 and st["pending_writes"] == 0
