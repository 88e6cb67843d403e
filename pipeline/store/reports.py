"""What the read-only commands print: SQL result formats and the fault list.

Runs in the CLI process; `query` is whichever ClickHouse path the CLI has (the
owner's local API or its own connection), so nothing here opens a database.
"""
from __future__ import annotations

import csv
import io
import sys
from typing import Any, Callable, Sequence

import orjson

from pipeline.core import faults as fault_core
from pipeline.core.config import Settings
from pipeline.core.events import CLASSES, format_ts
from pipeline.core.policy import Policy

Query = Callable[[str], tuple[list[str], list[Sequence[Any]]]]

# eligible verdicts (exclusions applied) per class and minute of verdict time; a verdict decided by an
# untrusted future timestamp (clock_suspect = 'ahead') is left out, so no wrong MTA clock can open a
# fault or stretch the minutes the rules walk (one 2099 timestamp once made `faults` walk 70 years)
FAULT_SERIES_SQL = """
SELECT message_class, toUnixTimestamp(toStartOfMinute(verdict_at)) * 1000 AS m,
       countIf(status IN ('overdue', 'late', 'never_ready')) AS d, count() AS e
FROM {db}.handling_times WHERE NOT excluded AND clock_suspect != 'ahead'
  AND verdict_at >= fromUnixTimestamp64Milli({since}, 'UTC')
GROUP BY message_class, m ORDER BY m
"""


def fault_series_sql(db: str, since_ms: int = 0) -> str:
    """Eligible verdicts per class and minute of verdict time, from `since_ms` on (0: all history)."""
    return FAULT_SERIES_SQL.format(db=db, since=f"toInt64({int(since_ms)})")


def print_rows(cols: list[str], rows: list[Sequence[Any]], fmt: str) -> None:
    if fmt == "json":
        sys.stdout.buffer.write(orjson.dumps([dict(zip(cols, r)) for r in rows], default=str) + b"\n")
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        w.writerows(rows)
        sys.stdout.write(buf.getvalue())
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(*cols)
        for r in rows:
            t.add_row(*("NULL" if v is None else str(v) for v in r))
        Console().print(t)


def find_faults(policy: Policy, rows: list[Sequence[Any]], start: int | None = None) -> list[dict[str, Any]]:
    """Every semi-critical fault (both classes) and burn-rate alert (transactional: the class the
    99% objective is for) in a verdict series of (class, minute_ms, delayed, eligible) rows;
    with `start`, evaluated from that minute on (see `faults.settled_before`)."""
    found: list[dict[str, Any]] = []
    for cls in CLASSES:
        series = [(int(m), int(d), int(e)) for c, m, d, e in rows if c == cls]
        found += fault_core.detect(policy, cls, series, start)
        if cls == "transactional":
            found += fault_core.burn_alerts(policy, cls, series, start)
    found.sort(key=lambda f: (f["opened_at"], f["kind"]))
    return found


def faults(settings: Settings, policy: Policy, query: Query, open_only: bool = False,
           kinds: str = "semi_critical") -> list[dict[str, Any]]:
    """Faults and alerts from the exact per-minute verdict counts, oldest first."""
    _, rows = query(fault_series_sql(settings.database))
    found = [f for f in find_faults(policy, list(rows)) if kinds == "all" or f["kind"] == kinds]
    if kinds in ("critical", "all"):
        from pipeline.core import availability

        found += availability.critical_faults(query, settings.database, policy)
        found.sort(key=lambda f: (f["opened_at"], f["kind"]))
    if kinds in ("oldest_pending", "all"):  # state-based: only what the live monitor announced
        _, rows = query(f"SELECT message_class, toUnixTimestamp64Milli(opened_at), toUnixTimestamp64Milli(resolved_at), "
                        f"peak_share FROM {settings.database}.faults FINAL WHERE kind = 'oldest_pending'")
        found += [{"kind": "oldest_pending", "severity": "ticket", "message_class": c, "opened_at": int(o),
                   "resolved_at": None if r is None else int(r), "peak_share": float(p), "delayed": 0,
                   "eligible": 0} for c, o, r, p in rows]
        found.sort(key=lambda f: (f["opened_at"], f["kind"]))
    if open_only:
        found = [f for f in found if f["resolved_at"] is None]
    from pipeline.core import availability

    return [public(f) | availability.response(policy, f) for f in found]


def public(f: dict[str, Any]) -> dict[str, Any]:
    """A fault as `mailsla faults --json`, the faults topic and the webhook show it: RFC 3339 times."""
    out = dict(f)
    out["opened_at"] = format_ts(int(f["opened_at"]))
    out["resolved_at"] = format_ts(int(f["resolved_at"])) if f["resolved_at"] is not None else None
    return out


def render_faults(found: list[dict[str, Any]]) -> str:
    if not found:
        return "no faults"
    def detail(f: dict[str, Any]) -> str:
        if f["kind"] == "critical":  # delayed = unavailable seconds (channel) or failed checks (probe)
            what = "failed checks" if str(f["message_class"]).startswith("probe:") else "unavailable s"
            met = {True: "met", False: "MISSED", None: "open"}[f.get("response_met")]
            return f"{f['delayed']} {what}, response {met}"
        return f"peak {100 * f['peak_share']:.1f}% ({f['delayed']}/{f['eligible']})"
    return "\n".join(
        f"{f['kind']:<14} {f.get('severity', ''):<13} {f['message_class']:<14} opened {f['opened_at']}  resolved "
        f"{f['resolved_at'] or 'OPEN':<24}  {detail(f)}"
        for f in found)
