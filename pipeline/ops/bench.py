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
import multiprocessing as mp
import platform
import random
import sys
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from pipeline.store import api
from pipeline.ops import generator, procs
from pipeline.core.config import Settings
from pipeline.ops.localkafka import LocalKafka
from pipeline.ops.replay import produce_all
from pipeline.stream.status import collect, processes, snapshots


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

SINK_RUNS = 3  # the sink-alone measure: best of this many
STATE_MESSAGES = 1_000_000  # join-state memory is measured with this many messages


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


def _say(quiet: bool, text: str) -> None:
    print(text, file=sys.stderr if quiet else sys.stdout, flush=True)


def run(settings: Settings, events: int, as_json: bool = False) -> int:
    lk = LocalKafka(settings.data_dir / "kafka")
    started = not lk.running()
    addr = lk.up()
    tag = uuid.uuid4().hex[:6]
    data = settings.data_dir / "bench" / tag
    s = replace(settings, kafka=addr, data_dir=data, clickhouse=f"chdb://{data / 'clickhouse'}",
                app_id=f"bench-{tag}", topic_accepted=f"bench-{tag}.accepted",
                topic_ready=f"bench-{tag}.queue_ready", topic_results=f"bench-{tag}.results",
                topic_ticks=f"bench-{tag}.ticks", topic_dead_letters=f"bench-{tag}.dead_letters")
    say = lambda text: _say(as_json, text)  # noqa: E731 - with --json only the object goes to stdout
    messages = events // 2
    say(f"bench: {events:,} events ({messages:,} messages), {s.partitions} partitions, broker {addr}")
    start_ms = int(datetime(2026, 10, 1, tzinfo=timezone.utc).timestamp() * 1000)
    rate = messages / 86_400  # one day of simulated traffic
    topics = {"accepted": s.topic_accepted, "ready": s.topic_ready}
    records = ((topics[k], ev["message_id"].encode(), orjson.dumps(ev))
               for k, ev in generator.simulated(rate, 86_400, 11, start_ms))
    t0 = time.perf_counter()
    produced = asyncio.run(produce_all(s, records, events, "producing"))
    produce_rate = produced / (time.perf_counter() - t0)
    say(f"  produced      {produced:,} events at {produce_rate:,.0f} ev/s")
    ceiling = asyncio.run(_ceiling(s, produced))
    say(f"  ceiling       {ceiling:,.0f} ev/s (bare aiokafka consumer + orjson, same topics)")
    env = procs.child_env(
        MAILSLA_KAFKA=addr, MAILSLA_DATA=str(data), MAILSLA_CLICKHOUSE=s.clickhouse, MAILSLA_APP_ID=s.app_id,
        MAILSLA_TOPIC_ACCEPTED=s.topic_accepted, MAILSLA_TOPIC_QUEUE_READY=s.topic_ready,
        MAILSLA_TOPIC_RESULTS=s.topic_results, MAILSLA_TOPIC_TICKS=s.topic_ticks,
        MAILSLA_TOPIC_DEAD_LETTERS=s.topic_dead_letters, MAILSLA_IDLE_GRACE_S="0")
    runs: dict[str, Any] = {}
    try:
        noop = _noop_run(s, env, produced)
        if noop is None:
            say("  the no-op Faust agent did not finish within 10 minutes; see " + str(data))
            return 1
        say(f"  faust no-op   {noop:,.0f} ev/s (Faust agent doing nothing, same app settings, batches)")
        for name, layout in (("in_process_sink", [["worker"]]),
                             ("separate_sink", [["worker", "--no-sink"], ["sink"]]),
                             ("two_join_processes", [["worker", "--processes", "2"]])):
            runs[name] = _pipeline_run(s, env, layout, produced, name, say)
            if runs[name] is None:
                say("  pipeline did not finish within an hour; see " + str(data))
                return 1
        from pipeline.ops.ingestbench import measure as ingest_measure  # issue #19: `mailsla ingest`

        ingest = ingest_measure(s)
        say(f"  ingest        {ingest['lines_per_s']:,.0f} Postfix log lines/s parsed and produced, acks=all "
            f"({ingest['lines']:,} lines; the parser alone {ingest['parse_lines_per_s']:,.0f} lines/s)")
    finally:
        if started:
            lk.down()
    sink = _sink_rows_per_s(s, 100_000)
    say(f"  sink alone    {sink:,.0f} rows/s into the embedded engine with the aggregate views (100k rows, best of {SINK_RUNS})")
    # a million messages, as a day of a mid-size provider: the per-partition fixed parts (1,024
    # fingerprint shards, the deadline buckets) spread over 100k messages add ~30 B to the finished figure
    state = _state_bytes(s, STATE_MESSAGES)

    best = max(runs.values(), key=lambda r: r["eps"])
    result = {
        "events": produced, "produce_eps": produce_rate, "ceiling_eps": ceiling, "faust_noop_eps": noop,
        "layouts": runs, "best_eps": best["eps"], "ratio_to_ceiling": best["eps"] / ceiling,
        "ratio_to_faust_noop": best["eps"] / noop, "sink_rows_per_s": sink,
        "state_bytes_per_pending": state["pending"], "state_bytes_per_finished": state["finished"],
        "ingest_lines_per_s": ingest["lines_per_s"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_1m": os.getloadavg()[0], "at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
    }
    say(f"  ratio         {result['ratio_to_faust_noop']:.2f} of the Faust no-op agent, "
        f"{result['ratio_to_ceiling']:.3f} of the aiokafka ceiling (best layout)")
    say(f"  state         {state['pending']:.0f} B per pending message, {state['finished']:.0f} B per finished "
        f"({STATE_MESSAGES:,} messages, memory store, RSS growth)")
    if not as_json:
        result["digests"] = digest_compare()
        for name, d in result["digests"].items():
            if d:
                say(f"  t-digest      {name:<10} 200k values in {d['seconds']:.3f}s, "
                    f"max rel. error p50/p90/p99 {d['max_rel_error']:.4f}")
    out = settings.data_dir / "bench" / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2))
    say(f"  saved         {out}")
    if as_json:
        print(json.dumps(result))
    return 0


def _noop_run(s: Settings, env: dict[str, str], produced: int) -> float | None:
    """A no-op Faust agent (pipeline.stream.app.noop_app) over the same topics: events/s from its first
    record to its last."""
    out = s.data_dir / "noop" / "done.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    child = procs.spawn(["bench", "--noop-worker", str(out), "--events", str(produced)],
                        {**env, "MAILSLA_DATA": str(out.parent)}, out.parent / "noop.log")
    try:
        if not procs.wait_for(out.exists, 600, 0.2):
            return None
    finally:
        procs.stop(child)
    doc = json.loads(out.read_text())
    return doc["events"] / max(1e-6, doc["last_at"] - doc["first_at"])


def noop_worker(settings: Settings, out: str, events: int) -> int:
    """`bench --noop-worker PATH`: the child process of `_noop_run`."""
    from pathlib import Path

    from faust.worker import Worker

    from pipeline.stream.app import noop_app
    from pipeline.stream.commands import fast_loop as _fast_loop

    _fast_loop()
    app = noop_app(settings, events, Path(out))
    worker = Worker(app, loglevel="warning", override_logging=True, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


def _sink_rows_per_s(s: Settings, n: int, runs: int = SINK_RUNS) -> float:
    """The sink alone: batch records of result rows decoded and written (revision lookup,
    prepare, insert with the aggregate views) into a fresh embedded engine, in a child process
    (one chDB engine per process). The best of `runs` runs, each into its own fresh engine, as
    timeit reports: one 1-second run moved by a quarter when the broker or the layouts' processes
    were still stopping alongside it."""
    ctx = mp.get_context("spawn")
    rates = []
    for i in range(runs):
        q: Any = ctx.Queue()
        p = ctx.Process(target=_sink_measure, args=(replace(s, data_dir=s.data_dir / f"sink-alone-{i}"), n, q))
        p.start()
        rates.append(q.get())
        p.join()
    return max(rates)


def _sink_measure(s: Settings, n: int, q: Any) -> None:
    from pipeline.core.batching import decode_results, encode_results
    from pipeline.store.clickhouse import Store

    data = s.data_dir
    s = replace(s, clickhouse=f"chdb://{data / 'clickhouse'}")
    store = Store(s)
    store.migrate()
    store.start_writing()
    base = 1_790_000_000_000
    rows = []
    for i in range(n):
        acc = base + i * 500
        ready = acc + (i * 7919) % 900_000
        status = "on_time" if ready - acc < 600_000 else "late"
        rows.append(orjson.dumps({
            "k": "m", "message_id": f"sink-{i:09d}", "account_id": f"acct-{i % 500}",
            "message_class": "transactional" if i % 3 else "campaign", "priority": "normal", "source": "api",
            "mta": f"mta-{i % 4}", "client_error": "", "accepted_at": acc, "ready_at": ready,
            "handling_ms": ready - acc, "status": status, "verdict_at": min(ready, acc + 600_000),
            "clock_skew": False, "rev": 1}))
    records = encode_results(rows)
    warm = dict(orjson.loads(rows[0]), message_id="warm-up")  # first-use imports are start-up, not rows/s
    store.write([warm])
    t0 = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for rec in records:
        batch += decode_results(rec)
        if len(batch) >= s.batch_rows:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    q.put(n / (time.perf_counter() - t0))
    store.close()


def _state_bytes(s: Settings, n: int) -> dict[str, float]:
    """Join state per message (statebench, memory store, RSS): pending and finished."""
    from pipeline.ops.statebench import measure

    m = measure(s, n)
    return {"pending": m["state_bytes_per_pending"], "finished": m["state_bytes_per_finished"]}


def _pipeline_run(s: Settings, env: dict[str, str], layout: list[list[str]], produced: int,
                  name: str, say: Any = print) -> dict[str, Any] | None:
    """Start the processes of one layout with fresh groups; time from the first record a join
    process read until `status` shows everything written (and from the start, for reference)."""
    tag = uuid.uuid4().hex[:4]
    data = s.data_dir / name
    s = replace(s, app_id=f"{s.app_id}-{tag}", data_dir=data, clickhouse=f"chdb://{data / 'clickhouse'}",
                topic_results=f"{s.topic_results}-{tag}")
    env = {**env, "MAILSLA_APP_ID": s.app_id, "MAILSLA_DATA": str(data), "MAILSLA_CLICKHOUSE": s.clickhouse,
           "MAILSLA_TOPIC_RESULTS": s.topic_results}
    t0 = time.perf_counter()
    wall0 = time.time()
    children = [procs.spawn(args, env, data / f"{args[0]}-{i}.log") for i, args in enumerate(layout)]
    try:
        procs.wait_for(lambda: api.find(s) is not None, 120)
        started = time.perf_counter() - t0
        if not procs.wait_for(lambda: _idle(s), 3600, 0.3):
            return None
        elapsed = time.perf_counter() - t0
        done_at = time.time()
        firsts = [snap.get("first_record_at") for snap in snapshots(s)]
        first = min((f for f in firsts if f), default=wall0)
        rss = {f"{i}:{args[0]}" + ("-no-sink" if "--no-sink" in args else ""): procs.peak_rss_mb(c.pid)
               for i, (args, c) in enumerate(zip(layout, children))}
        for p in processes(s):  # the children of `worker --processes N`
            if p.get("supervisor") and p.get("pid"):
                rss[p["name"]] = procs.peak_rss_mb(p["pid"])
    finally:
        for c in children:
            procs.stop(c)
    eps = produced / max(1e-6, done_at - first)
    say(f"  pipeline      {eps:,.0f} ev/s from the first record to all written, {name} "
        f"({' + '.join(a[0] + (' --no-sink' if '--no-sink' in a else '') for a in layout)}): "
        f"{done_at - first:.1f}s; {elapsed:.1f}s incl. {started:.1f}s start; peak RSS MB {rss}")
    return {"eps": eps, "eps_incl_start": produced / elapsed, "elapsed_s": done_at - first,
            "start_s": started, "peak_rss_mb": max((v for v in rss.values() if v), default=None),
            "rss_mb_by_process": rss}


def _idle(s: Settings) -> bool:
    st = asyncio.run(collect(s))
    return st["total_lag"] == 0 and st["pending_writes"] == 0
