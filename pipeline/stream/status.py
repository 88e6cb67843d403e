"""`mailsla status`: is everything received in ClickHouse yet?

Reads committed offsets from Kafka (works with or without a running worker)
and the pending-message count the join workers write under `$MAILSLA_DATA/run`.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pipeline.store.owner import pid_alive
from pipeline.core.config import Settings
from pipeline.stream.kafka import end_offsets, group_lag


def snapshots(settings: Settings) -> list[dict[str, Any]]:
    """What each join worker last wrote (every 2 s and at exit)."""
    snaps = []
    for f in (settings.data_dir / "run").glob("join-*.json"):
        try:
            snaps.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    return snaps


def live_snapshots(settings: Settings) -> list[dict[str, Any]]:
    return [s for s in snapshots(settings) if pid_alive(int(s.get("pid", -1)))]


def join_failures(settings: Settings) -> list[str]:
    """What live join processes of this data dir report as failing (`failure` in their status
    file): the sink's /healthz answers 503 while there is any. Read per health check."""
    return [f"join {snap.get('pid')}: {snap['failure']}" for snap in live_snapshots(settings) if snap.get("failure")]


def remove_stale(settings: Settings) -> None:
    """At worker start: forget what workers that are gone reported."""
    for f in (settings.data_dir / "run").glob("join-*.json"):
        try:
            if not pid_alive(int(json.loads(f.read_text()).get("pid", -1))):
                f.unlink()
        except (OSError, ValueError):
            f.unlink(missing_ok=True)


def _chosen(settings: Settings) -> list[dict[str, Any]]:
    """Live workers' snapshots; with none alive, what the last ones reported at exit."""
    snaps = snapshots(settings)
    return [s for s in snaps if pid_alive(int(s.get("pid", -1)))] or snaps


def pending_messages(settings: Settings) -> int:
    return int(sum(s.get("pending_messages", 0) for s in _chosen(settings)))


def counters(settings: Settings) -> dict[str, int]:
    """Join counters (duplicates, conflicts, orphans, clock skew, ...) since the workers started."""
    total: Counter[str] = Counter()
    for snap in _chosen(settings):
        total.update(snap.get("counters", {}))
    return dict(sorted(total.items()))


def clock_suspects(workers: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Events whose timestamps were kept out of event time, per MTA and kind (ahead / behind)."""
    out: dict[str, dict[str, int]] = {}
    for w in workers:
        for mta, kinds in w.get("clock_suspects", {}).items():
            for kind, n in kinds.items():
                out.setdefault(mta, {})[kind] = out.get(mta, {}).get(kind, 0) + int(n)
    return out


async def lags(settings: Settings) -> tuple[int, int]:
    """(input records the join has not processed, records the sink has not written to ClickHouse)."""
    s = settings
    return (await group_lag(s, s.app_id, [s.topic_accepted, s.topic_ready]),
            await group_lag(s, s.group_sink, [s.topic_results, s.topic_accounts, s.topic_maintenance,
                                              s.topic_injections, s.topic_probes]))


def processes(settings: Settings) -> list[dict[str, Any]]:
    """Every worker process: from a live `worker --processes N` supervisor (with restart counts),
    else the join processes that report."""
    out: list[dict[str, Any]] = []
    for f in (settings.data_dir / "run").glob("supervisor-*.json"):
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(int(doc.get("pid", -1))):
            out += [dict(p, supervisor=doc["pid"]) for p in doc.get("processes", [])]
    if out:
        return out
    return [{"name": "join", "pid": s.get("pid"), "alive": pid_alive(int(s.get("pid", -1)))}
            for s in snapshots(settings)]


def ingest_snapshots(settings: Settings) -> list[dict[str, Any]]:
    """What each `mailsla ingest` process last wrote (every 2 s and at exit): the live ones, else
    the last report of those that are gone (marked `alive: false`)."""
    out = []
    for f in sorted((settings.data_dir / "run").glob("ingest-*.json")):
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        out.append(dict(doc, alive=pid_alive(int(doc.get("pid", -1)))))
    return [d for d in out if d["alive"]] or out


def ingest_summary(snaps: list[dict[str, Any]]) -> dict[str, Any]:
    """The ingest processes' counters summed: lines, events, skipped and garbled lines per reason."""
    total: dict[str, Any] = {"processes": len(snaps), "lines": 0, "in_flight": 0,
                             "events": Counter(), "skipped": Counter(), "garbled": Counter(), "errors": []}
    for snap in snaps:
        for log in snap.get("logs", []):
            total["lines"] += int(log.get("lines", 0))
            total["in_flight"] += int(log.get("in_flight", 0))
            for key in ("events", "skipped", "garbled"):
                total[key].update({k: int(v) for k, v in (log.get(key) or {}).items()})
            total["errors"] += [f"{log.get('path')}: {e}" for e in (log.get("error"), log.get("lost")) if e]
        if snap.get("kafka_error"):
            total["errors"].append(f"kafka: {snap['kafka_error']}")
    return {k: dict(sorted(v.items())) if isinstance(v, Counter) else v for k, v in total.items()}


async def collect(settings: Settings) -> dict[str, Any]:
    s = settings
    input_lag, pending_writes = await lags(s)
    dlq = await end_offsets(s, [s.topic_dead_letters])
    unsettled = int(sum(w.get("unsettled_partitions", 0) for w in live_snapshots(s)))
    return {
        "total_lag": input_lag + pending_writes + unsettled,
        "input_lag": input_lag,
        "pending_writes": pending_writes,
        "unsettled_partitions": unsettled,
        "dead_letters": sum(end - begin for begin, end in dlq.values()),
        "pending_messages": pending_messages(s),
        "counters": counters(s),
        "clock_suspects": clock_suspects(_chosen(s)),
        "processes": processes(s),
        "ingest": ingest_snapshots(s),
    }
