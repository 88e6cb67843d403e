"""The live numbers: one snapshot behind the web page, /metrics and `mailsla top`.

`collect(settings, query)` runs a handful of ClickHouse queries (through
whichever path the process has), reads the join workers' status files and the
Kafka lag, and returns plain JSON-able data. "Now" is event time: the join's
newest watermark (or, with no worker running, the newest verdict minute), so
a replayed month looks the way it looked live. Rates (events/s, verdicts/s) are over the last
30 s of snapshots: pass the previous one.
Takes ~tens of ms on small data; callers cache it for a second or two.
"""
from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo
from typing import Any, Callable, Sequence

from pipeline.core import faults as fault_core
from pipeline.core import rates
from pipeline.core import sla
from pipeline.core.config import Settings
from pipeline.core.events import CLASSES, format_ts
from pipeline.store.reports import fault_series_sql
from pipeline.stream.status import clock_suspects, ingest_snapshots, ingest_summary, live_snapshots

Query = Callable[[str], tuple[list[str], list[Sequence[Any]]]]
MINUTE = 60_000
WINDOWS = {"1m": 1, "5m": 5, "60m": 60}
QS = "0.5, 0.9, 0.99, 0.999"


def _num(v: Any) -> float | None:
    """A digest of no values gives NaN, which JSON cannot carry: None."""
    f = float(v)
    return None if f != f else round(f, 1)


def _ts(ms: int) -> str:
    return f"toDateTime({ms // 1000}, 'UTC')"


def collect(settings: Settings, query: Query, prev: dict[str, Any] | None = None,
            lag: dict[str, int] | None = None) -> dict[str, Any]:
    db, policy = settings.database, settings.policy
    assert policy is not None
    workers = live_snapshots(settings)
    clock = event_now(workers)
    if clock is not None:  # the join's event clock: the newest watermark of the live workers
        newest = clock // MINUTE * MINUTE
    else:  # no worker here: the newest verdict minute stored
        _, rows = query(f"SELECT toUnixTimestamp(max(minute)) * 1000 FROM {db}.handling_minutely")
        newest = int(rows[0][0]) if rows and rows[0][0] else 0
    now = newest + MINUTE if newest else int(time.time() * 1000) // MINUTE * MINUTE
    snap: dict[str, Any] = {"at": time.time(), "event_time": format_ts(now), "event_time_ms": now}

    # percentiles over the last 1, 5, 60 minutes of verdict time, per class
    merges = ", ".join(f"quantilesTDigestMergeIf({QS})(latency, minute >= {_ts(now - n * MINUTE)}) AS q{k}, "
                       f"sumIf(messages, minute >= {_ts(now - n * MINUTE)}) AS n{k}" for k, n in WINDOWS.items())
    _, rows = query(f"SELECT message_class, {merges} FROM {db}.handling_minutely "
                    f"WHERE minute >= {_ts(now - 60 * MINUTE)} GROUP BY message_class")
    classes: dict[str, Any] = {c: {"percentiles_ms": {k: None for k in WINDOWS}, "verdicts": {k: 0 for k in WINDOWS}}
                               for c in CLASSES}
    for r in rows:
        c = classes.setdefault(str(r[0]), {"percentiles_ms": {}, "verdicts": {}})
        for i, k in enumerate(WINDOWS):
            q, n = r[1 + 2 * i], int(r[2 + 2 * i])
            c["percentiles_ms"][k] = [_num(v) for v in q] if n else None
            c["verdicts"][k] = n
    snap["classes"] = classes

    # the last hour per minute, for the charts
    _, rows = query(f"SELECT toUnixTimestamp(minute) * 1000, message_class, quantilesTDigestMerge(0.5, 0.9, 0.99)"
                    f"(latency), sum(delayed), sum(messages) FROM {db}.handling_minutely "
                    f"WHERE minute >= {_ts(now - 60 * MINUTE)} GROUP BY minute, message_class ORDER BY minute")
    snap["series"] = [{"t": int(t), "class": c, "p50": _num(q[0]), "p90": _num(q[1]), "p99": _num(q[2]),
                       "delayed": int(d), "messages": int(n)} for t, c, q, d, n in rows]

    # the fault rule's window and the burn rates, from eligible verdicts (exclusions applied)
    since = now - max(t.long_ms for t in policy.burn_tiers) if policy.burn_tiers else now - 86_400_000
    since = min(since, now - max(policy.fault_window_ms.values()))
    # the series `faults` and the fault monitor read; `since` is at or before every window's start,
    # so its exact-millisecond bound counts the same verdicts as the minutes below use
    _, rows = query(fault_series_sql(db, since))
    snap["fault_window"], snap["burn_rates"] = {}, []
    for cls in CLASSES:
        v = fault_core.Verdicts()
        for c, m, d, e in rows:
            if c == cls:
                v.add(int(m), int(d), int(e))
        d, e = v.window(now, policy.fault_window_ms[cls])
        snap["fault_window"][cls] = {"window_ms": policy.fault_window_ms[cls], "delayed": d, "eligible": e,
                                     "share": d / e if e else 0.0, "line": policy.fault_share,
                                     "min_volume": policy.fault_min_volume}
        if cls == "transactional":
            snap["burn_rates"] = fault_core.burn_rates(policy, v, now)

    # month to date (the event-time month)
    month = datetime.fromtimestamp(now / 1000 - 1, tz=ZoneInfo(policy.timezone)).strftime("%Y-%m")
    _, rows = query(sla.monthly_sql(db, month))
    doc = sla.verdict(month, rows, settings.threshold_ms, policy.objective)
    for c in doc["classes"].values():
        allowed = c["eligible"] * (1 - c["target"])
        c["budget_consumed"] = c["delayed"] / allowed if allowed else 0.0
    snap["month"] = doc

    # availability (issue #12): month to date per channel and probe target
    from pipeline.core import availability

    snap["availability"] = availability.live(query, db, policy, month)

    # stuck mail and open faults
    _, rows = query(f"SELECT message_class, count(), toUnixTimestamp64Milli(min(accepted_at)) "
                    f"FROM {db}.handling_times_raw FINAL WHERE status = 'overdue' GROUP BY message_class")
    overdue = {str(c): (int(n), int(a)) for c, n, a in rows}
    snap["pending"] = {
        "messages": int(sum(w.get("pending_messages", 0) for w in workers)),
        "overdue": {c: overdue.get(c, (0, 0))[0] for c in CLASSES},
        "oldest_overdue_age_ms": {c: (now - overdue[c][1]) if c in overdue else None for c in CLASSES},
        "oldest_pending_age_ms": oldest_pending_age(workers, now),
    }
    _, rows = query(f"SELECT kind, severity, message_class, toUnixTimestamp64Milli(opened_at), peak_share "
                    f"FROM {db}.faults FINAL WHERE resolved_at IS NULL ORDER BY opened_at")
    snap["open_faults"] = [{"kind": k, "severity": s, "message_class": c, "opened_at": format_ts(int(o)),
                            "peak_share": float(p)} for k, s, c, o, p in rows]

    counters: dict[str, int] = {}
    for w in workers:
        for k, n in w.get("counters", {}).items():
            counters[k] = counters.get(k, 0) + int(n)
    snap["counters"] = counters
    snap["clock_suspects"] = clock_suspects(workers)
    snap["ingest"] = ingest_summary(ingest_snapshots(settings))  # MTA logs (issue #19): lines, garbled per reason
    snap["workers"] = len(workers)
    snap["lag"] = lag or {}
    snap["rates"] = _rates(snap, prev)
    return snap


RATE_WINDOW_S = rates.WINDOW_S


def _rates(snap: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, float]:
    """Per second over the last RATE_WINDOW_S seconds, from the workers' counters
    (`pipeline.core.rates.windowed`; the samples are kept in `snap["rate_samples"]`, [at, events,
    verdicts])."""
    def events(s: dict[str, Any]) -> int:
        c = s.get("counters", {})
        return int(c.get("events_accepted", 0) + c.get("events_ready", 0))

    def verdicts(s: dict[str, Any]) -> int:
        return int(sum(n for k, n in s.get("counters", {}).items() if k.startswith("verdict_")))

    samples, (ev, ve) = rates.windowed((prev or {}).get("rate_samples", []),
                                       [snap["at"], events(snap), verdicts(snap)], RATE_WINDOW_S)
    snap["rate_samples"] = samples
    return {"events_per_s": ev, "verdicts_per_s": ve}


def oldest_pending_age(workers: list[dict[str, Any]], now: int) -> dict[str, int | None]:
    """Event-time age of the oldest message still waiting for queue-ready, per class."""
    out: dict[str, int | None] = {}
    for cls in CLASSES:
        times = [int(t) for w in workers for c, t in w.get("oldest_pending_accepted_at", {}).items()
                 if c == cls and t is not None]
        out[cls] = max(0, now - min(times)) if times else None
    return out


def event_now(workers: list[dict[str, Any]]) -> int | None:
    clocks = [int(v) for w in workers for v in w.get("watermarks", {}).values() if v is not None]
    return max(clocks) if clocks else None
