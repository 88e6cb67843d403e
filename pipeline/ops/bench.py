"""`make bench`: end-to-end throughput against the no-op agent on the join's own consumer path.

Not a test: it measures and prints. Steps, all in one run on this machine:
1. produce N events (N/2 messages, one simulated day) to a fresh topic pair, and the events of
   the pinned runs (at most PINNED_EVENTS) to one more pair per pinned process;
2. `--repeat K` rounds, each in this order, every run with a fresh consumer group: the ceiling (a
   bare aiokafka consumer + orjson, pipeline/ops/ceiling.py); the no-op agent on the join's batched
   consumer path and the one on Faust's per-record path (pipeline/stream/noop.py); the pipeline in
   three layouts until `status` shows everything written; 1 and 2 join processes, each pinned to
   its own core over its own topics (pipeline/ops/benchruns.py);
3. the sink alone, with revisions (pipeline/ops/sinkbench.py); the join state on both stores
   (pipeline/ops/statebench.py); the t-digest libraries.
Rounds interleave the figures, so a slow minute of the machine moves all of them, not the ratio.
Every rate is reported as the median of its K runs with min and max (pipeline/ops/benchresult.py).
Results are printed and saved to `$MAILSLA_DATA/bench/<time>.json`; with `--json` the object goes
to stdout and everything else to stderr. A run that does not finish exits 1 and names its logs.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import shutil
import sys
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable

import orjson

from pipeline.core.config import Settings
from pipeline.ops import benchruns, generator, procs, sinkbench, statebench
from pipeline.ops.benchresult import Measured, result, table
from pipeline.ops.ceiling import Short, ceiling
from pipeline.ops.ingestbench import measure as ingest_measure
from pipeline.ops.localkafka import LocalKafka
from pipeline.ops.replay import produce_all

SINK_RUNS = 3  # the sink alone runs at least this many times (seconds each), more with --repeat
SINK_MESSAGES = 100_000  # written twice per run: first verdicts, then revisions
STATE_MESSAGES = 1_000_000  # join-state memory is measured with this many messages
PINNED = (1, 2)  # join processes of the scaling runs, one core each (as many as the machine has)
PINNED_EVENTS = 200_000  # events per pinned process at most: keeps the scaling part to a minute or two a round
LAYOUTS: dict[str, tuple[list[list[str]], int]] = {  # name -> (processes, join processes among them)
    "in_process_sink": ([["worker"]], 1),
    "separate_sink": ([["worker", "--no-sink"], ["sink"]], 1),
    "two_join_processes": ([["worker", "--processes", "2"]], 2),
}


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


def _produce(s: Settings, events: int) -> int:
    """The bench's events (one simulated day, seed 11) to `s`'s input topics; the count acknowledged."""
    start_ms = int(datetime(2026, 10, 1, tzinfo=timezone.utc).timestamp() * 1000)
    topics = {"accepted": s.topic_accepted, "ready": s.topic_ready}
    records = ((topics[k], ev["message_id"].encode(), orjson.dumps(ev))
               for k, ev in generator.simulated(events // 2 / 86_400, 86_400, 11, start_ms))
    return asyncio.run(produce_all(s, records, events, "producing"))


def pinned_counts() -> tuple[tuple[int, ...], str | None]:
    """The N of the pinned scaling runs this machine can do, or why none."""
    if shutil.which("taskset") is None:
        return (), "taskset not found (util-linux)"
    ns = tuple(n for n in PINNED if n <= (os.cpu_count() or 1))
    return ns, None if len(ns) == len(PINNED) else f"{os.cpu_count()} core(s): N > cores not run"


def run(settings: Settings, events: int, as_json: bool = False, repeat: int = 1,
        sink_messages: int = SINK_MESSAGES, state_messages: int = STATE_MESSAGES) -> int:
    """The whole bench (see the module docstring); 0 when every run finished, 1 when one did not."""
    lk = LocalKafka(settings.data_dir / "kafka")
    started = not lk.running()
    addr = lk.up()
    tag = uuid.uuid4().hex[:6]
    data = settings.data_dir / "bench" / tag
    s = replace(settings, kafka=addr, data_dir=data, clickhouse=f"chdb://{data / 'clickhouse'}",
                app_id=f"bench-{tag}", topic_accepted=f"bench-{tag}.accepted",
                topic_ready=f"bench-{tag}.queue_ready", topic_results=f"bench-{tag}.results",
                topic_ticks=f"bench-{tag}.ticks", topic_dead_letters=f"bench-{tag}.dead_letters")
    say: Callable[[str], None] = lambda text: _say(as_json, text)  # noqa: E731 - --json: only the object on stdout
    say(f"bench: {events:,} events ({events // 2:,} messages), {s.partitions} partitions, broker {addr}, "
        f"{repeat} round(s)")
    t0 = time.perf_counter()
    produced = _produce(s, events)
    produce_rate = produced / (time.perf_counter() - t0)
    say(f"  produced      {produced:,} events at {produce_rate:,.0f} ev/s")
    ns, skipped = pinned_counts()
    pinned_events = min(produced, PINNED_EVENTS)
    pairs = [(s.topic_accepted, s.topic_ready)] if pinned_events == produced else []
    while len(pairs) < max(ns, default=0):  # each pinned process reads its own pair: the same events
        copy = replace(s, topic_accepted=f"bench-{tag}.p{len(pairs)}.accepted",
                       topic_ready=f"bench-{tag}.p{len(pairs)}.queue_ready")
        _produce(copy, pinned_events)
        pairs.append((copy.topic_accepted, copy.topic_ready))
    env = procs.child_env(MAILSLA_KAFKA=addr, MAILSLA_TOPIC_TICKS=s.topic_ticks,
                          MAILSLA_TOPIC_DEAD_LETTERS=s.topic_dead_letters, MAILSLA_IDLE_GRACE_S="0")
    m = Measured(events=produced, repeat=repeat, produce_eps=produce_rate, ceiling=[], noop_batched=[],
                 faust_take_events=[], layouts={name: [] for name in LAYOUTS},
                 join_processes={name: jp for name, (_, jp) in LAYOUTS.items()}, sink=[],
                 sink_messages=sink_messages, state={}, pinned={n: [] for n in ns}, pinned_skipped=skipped,
                 pinned_events=pinned_events)
    try:
        for k in range(repeat):
            say(f" round {k + 1} of {repeat}")
            try:
                count = asyncio.run(ceiling(s, produced))
            except Short as exc:
                say(f"  ceiling: {exc}; the topics hold fewer records than were produced? see {data}")
                return 1
            m.ceiling.append(count.per_s)
            say(f"  ceiling       {count.per_s:,.0f} ev/s ({count.records:,} records in {count.seconds:.2f}s, "
                f"{count.fetches} fetches; bare aiokafka consumer + orjson)")
            for path, into in (("batched", m.noop_batched), ("take_events", m.faust_take_events)):
                noop = benchruns.noop_run(s, env, produced, path)
                if noop is None:
                    say(f"  the no-op agent ({path}) did not finish (10 minutes at most); see {data}")
                    return 1
                into.append(noop)
                say(f"  no-op {path:<11} {noop['eps']:,.0f} ev/s over the second half "
                    f"({noop['eps_from_first_record']:,.0f} from the first record; Faust agent doing nothing)")
            for name, (layout, _) in LAYOUTS.items():
                r = benchruns.pipeline_run(s, env, layout, produced, name, say)
                if r is None:
                    say(f"  pipeline {name} did not finish; see {data}")
                    return 1
                m.layouts[name].append(r)
            for n in ns:
                r = benchruns.pinned_run(s, env, pairs[:n], pinned_events, say)
                if r is None:
                    say(f"  {n} pinned join process(es) did not finish; see {data}")
                    return 1
                m.pinned[n].append(r)
            ingest = ingest_measure(s)  # issue #19: `mailsla ingest`, Postfix log lines parsed and produced
            m.ingest.append(ingest)
            say(f"  ingest        {ingest['lines_per_s']:,.0f} Postfix log lines/s parsed and produced, acks=all "
                f"({ingest['lines']:,} lines; the parser alone {ingest['parse_lines_per_s']:,.0f} lines/s)")
    finally:
        if started:
            lk.down()
    m.sink = sinkbench.measure(s, sink_messages, max(SINK_RUNS, repeat))
    # a million messages, as a day of a mid-size provider: the per-partition fixed parts (1,024
    # fingerprint shards, the deadline buckets) spread over 100k messages add ~30 B to the finished figure
    m.state = statebench.measure(s, state_messages, statebench.STORES, repeat, parallel=os.cpu_count() or 1)
    m.digests = digest_compare()
    m.machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                 "load_avg_1m": os.getloadavg()[0], "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    doc = result(m)
    for line in table(doc):
        say(line)
    out = settings.data_dir / "bench" / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(doc, indent=2))
    say(f"  saved         {out}")
    if as_json:
        print(json.dumps(doc))
    return 0


def noop_worker(settings: Settings, out: str, events: int, path: str = "batched") -> int:
    """`bench --noop-worker PATH --noop-path P`: the child process of `benchruns.noop_run`."""
    from pathlib import Path

    from faust.worker import Worker

    from pipeline.stream.commands import fast_loop as _fast_loop
    from pipeline.stream.noop import noop_app

    _fast_loop()
    app = noop_app(settings, events, Path(out), path)
    worker = Worker(app, loglevel="warning", override_logging=True, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
