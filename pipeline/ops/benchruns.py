"""The bench's timed runs of real processes: the no-op reference agents, the pipeline layouts and
the pinned join processes of the scaling figures.

Called by `mailsla bench` (pipeline/ops/bench.py) once per run and repeat, after it produced its
events. Every run gets a fresh consumer group, data directory and results topic (`scoped`), so it
reads the input topics from the start and writes into its own engine. Each rate runs from the
first record a process read to the last thing done, so process start (seconds, and not what a
running worker pays) stays out of it; the time with start is kept beside it. A run that does not
finish in time (or whose process exits first) returns None: the bench says where the logs are
and exits 1.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import replace
from typing import Any, Callable

from pipeline.core.config import Settings
from pipeline.ops import procs
from pipeline.store import api
from pipeline.stream.kafka import group_lag
from pipeline.stream.status import collect, processes, snapshots

NOOP_TIMEOUT_S = 600
MIN_RUN_S, MIN_EPS = 300.0, 200.0  # a run slower than 200 ev/s (after 5 minutes at least) is stuck, not slow


def run_timeout_s(events: int) -> float:
    return max(MIN_RUN_S, events / MIN_EPS)


def scoped(s: Settings, env: dict[str, str], name: str, **topics: str) -> tuple[Settings, dict[str, str]]:
    """Settings and child environment of one run: its own group (app id), data directory, engine
    and results topic; `topics` (topic_accepted / topic_ready) point it at other input topics."""
    tag = uuid.uuid4().hex[:4]
    data = s.data_dir / f"{name}-{tag}"
    s = replace(s, app_id=f"{s.app_id}-{tag}", data_dir=data, clickhouse=f"chdb://{data / 'clickhouse'}",
                topic_results=f"{s.topic_results}-{tag}", **topics)
    return s, {**env, "MAILSLA_APP_ID": s.app_id, "MAILSLA_DATA": str(data), "MAILSLA_CLICKHOUSE": s.clickhouse,
               "MAILSLA_TOPIC_RESULTS": s.topic_results, "MAILSLA_TOPIC_ACCEPTED": s.topic_accepted,
               "MAILSLA_TOPIC_QUEUE_READY": s.topic_ready}


def noop_run(s: Settings, env: dict[str, str], produced: int, path: str) -> dict[str, float] | None:
    """One no-op reference agent (pipeline/stream/noop.py, `path`) over the input topics: `eps`
    over the second half of the records (from the record that passed half to the last: the
    steady rate, past the head start of what was fetched while the app started; the whole run
    when one batch held both), and `eps_from_first_record` for comparison."""
    s, env = scoped(s, env, f"noop-{path}")
    out = s.data_dir / "done.json"
    s.data_dir.mkdir(parents=True, exist_ok=True)
    child = procs.spawn(["bench", "--noop-worker", str(out), "--noop-path", path, "--events", str(produced)],
                        env, s.data_dir / "noop.log")
    try:
        if not procs.wait_for(lambda: out.exists() or child.poll() is not None, NOOP_TIMEOUT_S, 0.2):
            return None
    finally:
        procs.stop(child)
    if not out.exists():  # the agent exited before it had read everything: its log says why
        return None
    doc = json.loads(out.read_text())
    whole = doc["events"] / max(1e-6, doc["last_at"] - doc["first_at"])
    second = doc["events"] - doc["half_seen"]
    if second <= 0 or doc["last_at"] <= doc["half_at"]:  # one batch passed half and the end (few events): no second half to time
        return {"eps": whole, "eps_from_first_record": whole}
    return {"eps": second / max(1e-6, doc["last_at"] - doc["half_at"]), "eps_from_first_record": whole}


def pipeline_run(s: Settings, env: dict[str, str], layout: list[list[str]], produced: int,
                 name: str, say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Start the processes of one layout with fresh groups; time from the first record a join
    process read until `status` shows everything written (and from the start, for reference).
    `status` reads committed offsets: the end is seen up to about a second (the commit interval
    plus the poll) after the last row was written, which counts against the pipeline."""
    s, env = scoped(s, env, name)
    t0 = time.perf_counter()
    wall0 = time.time()
    children = [procs.spawn(args, env, s.data_dir / f"{args[0]}-{i}.log") for i, args in enumerate(layout)]
    try:
        procs.wait_for(lambda: api.find(s) is not None, 120)
        started = time.perf_counter() - t0
        if not procs.wait_for(lambda: _idle(s), run_timeout_s(produced), 0.3):
            st = asyncio.run(collect(s))
            say(f"  {name}: not done after {run_timeout_s(produced):.0f}s: input lag {st['input_lag']}, "
                f"pending writes {st['pending_writes']}, processed {sum(p.get('processed', 0) for p in snapshots(s))}")
            return None
        elapsed = time.perf_counter() - t0
        done_at = time.time()
        first = _first_record_at(s, wall0)
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


def pinned_run(s: Settings, env: dict[str, str], topic_pairs: list[tuple[str, str]], produced: int,
               say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """N = len(topic_pairs) join processes (`worker --no-sink`), process i pinned to core i with
    taskset and reading topic pair i alone (`produced` events each): per process, events/s from
    its first record until its group has committed everything."""
    runs = [scoped(s, env, f"pinned{len(topic_pairs)}-{i}", topic_accepted=acc, topic_ready=ready)
            for i, (acc, ready) in enumerate(topic_pairs)]
    wall0 = time.time()
    children = [procs.spawn(["worker", "--no-sink"], e, rs.data_dir / "worker.log", cpus=str(i))
                for i, (rs, e) in enumerate(runs)]
    done: dict[int, float] = {}
    try:
        deadline = time.monotonic() + run_timeout_s(produced)
        while len(done) < len(runs) and time.monotonic() < deadline:
            if any(c.poll() is not None for c in children):  # one exited before the end: see its log
                return None
            for i, (rs, _) in enumerate(runs):
                if i not in done and _input_lag(rs) == 0 and snapshots(rs):
                    done[i] = time.time()
            time.sleep(0.3)
        if len(done) < len(runs):
            return None
        firsts = [_first_record_at(rs, wall0) for rs, _ in runs]
    finally:
        for c in children:
            procs.stop(c)
    per = [produced / max(1e-6, done[i] - firsts[i]) for i in range(len(runs))]
    total = produced * len(runs) / max(1e-6, max(done.values()) - min(firsts))
    say(f"  pinned        {len(runs)} join process(es), one core each: "
        f"{', '.join(f'{e:,.0f}' for e in per)} ev/s per process, {total:,.0f} ev/s together")
    return {"processes": len(runs), "eps_per_process": per, "eps_total": total}


def _first_record_at(s: Settings, default: float) -> float:
    firsts = [snap.get("first_record_at") for snap in snapshots(s)]
    return min((f for f in firsts if f), default=default)


def _input_lag(s: Settings) -> int:
    return asyncio.run(group_lag(s, s.app_id, [s.topic_accepted, s.topic_ready]))


def _idle(s: Settings) -> bool:
    st = asyncio.run(collect(s))
    return st["total_lag"] == 0 and st["pending_writes"] == 0
