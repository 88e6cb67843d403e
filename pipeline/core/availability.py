"""Availability beside handling time (issue #12): a pure core.

Takes the policy and plain data (unavailable-second counts, probe incidents, maintenance
windows) and returns the numbers and decisions; it imports neither Kafka nor ClickHouse.
The adapters (`availability_sql`, `mailsla availability`, the fault monitor) read the
ClickHouse views of pipeline/store/ddl/003_availability.sql and hand their rows to this module.

Definitions (SLA.md; numbers in the policy file):

- an unavailable second of a channel: a UTC second with at least one attempt on that channel,
  every one of them server_error or timeout (client_error is an answer); seconds without
  attempts are available; `any`: seconds in which at least one channel is unavailable;
- seconds inside maintenance windows (`[start, end)`, a second belongs to the window its start
  lies in) are not counted at all: not as unavailable, not as attempts, not in measured_s;
- probe downtime of a target: checks ordered by `at` (then location); each run of >= 2
  consecutive failed checks is one incident, downtime = last - first failed check, clipped to
  the month and without the maintenance time inside it;
- period_s: seconds of the calendar month (policy time zone); measured_s = period_s -
  maintenance_s; availability = 1 - unavailable_s / measured_s (1.0 when nothing is measured);
- credit_pct = min(cap, step x floor(max(0, any.unavailable_s - free_share x measured_s) / per));
- critical fault (live): a channel unavailable for `open_after` consecutive seconds opens one at
  the end of that stretch; it resolves once `resolve_after` seconds passed without an unavailable
  second. A probe incident opens one at its second failed check and resolves at the next ok check.
"""
from __future__ import annotations

import math
import zoneinfo
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from pipeline.core.policy import Policy
from pipeline.core.sla import month_bounds

CHANNELS = ("api", "smtp")
FAILED = ("server_error", "timeout")
Window = tuple[int, int]  # [start_ms, end_ms)


def month_span(month: str, tz: str = "UTC") -> tuple[int, int]:
    """'2026-10' -> [start_ms, end_ms) of that calendar month in `tz`. ValueError when malformed."""
    start, end = month_bounds(month)
    zone = zoneinfo.ZoneInfo(tz)
    lo = start.replace(tzinfo=zone).astimezone(timezone.utc)
    hi = end.replace(tzinfo=zone).astimezone(timezone.utc)
    return int(lo.timestamp()) * 1000, int(hi.timestamp()) * 1000


def months_between(first_ms: int, last_ms: int, tz: str = "UTC") -> list[str]:
    """Every 'YYYY-MM' (in `tz`) from the month of first_ms to the month of last_ms."""
    zone = zoneinfo.ZoneInfo(tz)
    a = datetime.fromtimestamp(first_ms / 1000, tz=zone)
    b = datetime.fromtimestamp(last_ms / 1000, tz=zone)
    out, y, m = [], a.year, a.month
    while (y, m) <= (b.year, b.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = y + (m == 12), m % 12 + 1
    return out


def merge(windows: Iterable[Window]) -> list[Window]:
    """Overlapping (or touching) windows merged, sorted."""
    out: list[list[int]] = []
    for s, e in sorted((int(s), int(e)) for s, e in windows if e > s):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _ceil_s(ms: int) -> int:
    return -(-ms // 1000)


def maintenance_seconds(windows: Iterable[Window], start_ms: int, end_ms: int) -> int:
    """Seconds of [start_ms, end_ms) whose start lies inside a window."""
    n = 0
    for s, e in merge(windows):
        lo, hi = max(s, start_ms), min(e, end_ms)
        if hi > lo:
            n += _ceil_s(hi) - _ceil_s(lo)
    return n


def in_maintenance(second: int, merged: Sequence[Window]) -> bool:
    """Whether the UTC second `second` (epoch seconds) starts inside a (merged) window."""
    ms = second * 1000
    return any(s <= ms < e for s, e in merged)


def overlap_ms(lo: int, hi: int, windows: Iterable[Window]) -> int:
    """Milliseconds of [lo, hi] covered by the windows."""
    return sum(max(0, min(hi, e) - max(lo, s)) for s, e in merge(windows))


def unavailable_seconds(attempts: Iterable[Mapping[str, Any]], account: str | None = None
                        ) -> dict[str, set[int]]:
    """Reference computation from attempt records ({attempt_id, at (ms), channel, outcome,
    account_id}): duplicates by attempt_id count once (the greatest copy wins, as in the view).
    Returns channel -> unavailable UTC seconds (epoch seconds), maintenance not yet removed."""
    best: dict[str, tuple] = {}
    for a in attempts:
        t = (int(a["at"]), a["channel"], a["outcome"], a.get("account_id") or "")
        if a["attempt_id"] not in best or t > best[a["attempt_id"]]:
            best[a["attempt_id"]] = t
    cells: dict[tuple[str, int], list[int]] = {}
    for at, channel, outcome, acct in best.values():
        if account is not None and acct != account:
            continue
        cell = cells.setdefault((channel, at // 1000), [0, 0])
        cell[0] += 1
        cell[1] += outcome in FAILED
    out: dict[str, set[int]] = {c: set() for c in CHANNELS}
    for (channel, second), (n, failed) in cells.items():
        if n == failed:
            out.setdefault(channel, set()).add(second)
    return out


def runs(seconds: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted seconds -> [(first, last)] of consecutive stretches."""
    out: list[list[int]] = []
    for s in sorted(set(seconds)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return [(a, b) for a, b in out]


def probe_incidents(checks: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Reference computation from check records ({target, location, at (ms), ok}): duplicates of
    (target, location, at) count once (a failed copy wins, as in the view). Returns target ->
    incidents {first_ms, second_ms, last_ms, failed_checks, next_ok_ms}, oldest first."""
    best: dict[tuple[str, str, int], bool] = {}
    for c in checks:
        k = (c["target"], c.get("location") or "", int(c["at"]))
        best[k] = best.get(k, True) and bool(c["ok"])
    by_target: dict[str, list[tuple[int, str, bool]]] = {}
    for (target, loc, at), ok in best.items():
        by_target.setdefault(target, []).append((at, loc, ok))
    out: dict[str, list[dict[str, Any]]] = {}
    for target, rows in by_target.items():
        rows.sort()
        incidents, run = [], []  # type: ignore[var-annotated]
        for i, (at, _, ok) in enumerate(rows + [(None, "", True)]):  # type: ignore[list-item]
            if not ok:
                run.append(at)
                continue
            if len(run) >= 2:
                incidents.append({"first_ms": run[0], "second_ms": run[1], "last_ms": run[-1],
                                  "failed_checks": len(run), "next_ok_ms": at})
            run = []
        out[target] = incidents
    return out


def clip_incident(first_ms: int, last_ms: int, start_ms: int, end_ms: int,
                  windows: Sequence[Window] = ()) -> int | None:
    """Downtime (ms) of one incident inside [start_ms, end_ms), maintenance time removed;
    None when the incident does not fall in the month (an incident ending exactly at the
    month's first instant belongs to the month before)."""
    lo, hi = max(first_ms, start_ms), min(last_ms, end_ms)
    if first_ms >= end_ms or last_ms < start_ms or (hi <= lo and not start_ms <= first_ms < end_ms):
        return None
    return max(0, hi - lo) - overlap_ms(lo, hi, windows)


def seconds_number(ms: int) -> int | float:
    """Milliseconds as seconds: a whole number when whole."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def ratio(unavailable_s: float, measured_s: int) -> float:
    return 1.0 - unavailable_s / measured_s if measured_s > 0 else 1.0


def credit_pct(policy: Policy, any_unavailable_s: int, measured_s: int) -> float | int:
    """Service credit owed for the month, in percent of the monthly fee."""
    a = policy.availability
    beyond = max(0.0, any_unavailable_s - a.credit_free_share * measured_s)
    pct = min(a.credit_cap_pct, a.credit_step_pct * math.floor(beyond / a.credit_per_s + 1e-9))
    return int(pct) if float(pct).is_integer() else pct


def document(policy: Policy, month: str, windows: Sequence[Window],
             channels: Mapping[str, Mapping[str, int]],
             probe_checks: Mapping[str, tuple[int, int]],
             incidents: Mapping[str, Sequence[Mapping[str, Any]]],
             account: str | None = None) -> dict[str, Any]:
    """The `mailsla availability --json` document.

    `channels`: api/smtp/any -> {attempts, failed, unavailable_s} for the month, maintenance
    seconds already left out (rows of the availability_monthly view). `probe_checks`: target ->
    (checks, failed) with `at` in the month. `incidents`: target -> every incident
    {first_ms, last_ms, ...} (any month; clipped here)."""
    start, end = month_span(month, policy.timezone)
    period_s = (end - start) // 1000
    maint = maintenance_seconds(windows, start, end)
    measured = period_s - maint
    a = policy.availability
    doc: dict[str, Any] = {"month": month}
    if account is not None:
        doc["account_id"] = account
    doc |= {"period_s": period_s, "maintenance_s": maint, "measured_s": measured, "channels": {}}
    for ch in (*CHANNELS, "any"):
        c = channels.get(ch, {})
        av = ratio(int(c.get("unavailable_s", 0)), measured)
        entry: dict[str, Any] = {} if ch == "any" else {"attempts": int(c.get("attempts", 0)),
                                                        "failed": int(c.get("failed", 0))}
        entry |= {"unavailable_s": int(c.get("unavailable_s", 0)), "availability": av,
                  "target": a.channel_target, "met": av >= a.channel_target}
        doc["channels"][ch] = entry
    doc["credit_pct"] = credit_pct(policy, doc["channels"]["any"]["unavailable_s"], measured)
    merged = merge(windows)
    probes: dict[str, Any] = {}
    for target in sorted(set(probe_checks) | {t for t, inc in incidents.items() if inc}):
        clipped = [d for d in (clip_incident(int(i["first_ms"]), int(i["last_ms"]), start, end, merged)
                               for i in incidents.get(target, ())) if d is not None]
        checks, failed = probe_checks.get(target, (0, 0))
        if not clipped and not checks:
            continue
        down_ms = sum(clipped)
        av = ratio(down_ms / 1000, measured)
        probes[target] = {"checks": int(checks), "failed": int(failed), "incidents": len(clipped),
                          "downtime_s": seconds_number(down_ms), "availability": av,
                          "target": a.probe_target, "met": av >= a.probe_target}
    doc["probes"] = probes
    return doc


# -- critical faults ---------------------------------------------------------------------------
def channel_faults(policy: Policy, channel: str, outages: Iterable[tuple[int, int]],
                   now_s: int | None = None) -> list[dict[str, Any]]:
    """Critical faults of one channel from its runs of unavailable seconds [(first, last)],
    maintenance seconds already left out. Opens at first + open_after (the end of the
    open_after-th consecutive unavailable second); resolves at last + 1 + resolve_after of the
    last unavailable second followed by resolve_after available ones; open (resolved_at None)
    while `now_s` (event time, epoch seconds) has not reached that."""
    a = policy.availability
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    last_down = None
    for first, last in sorted(outages):
        if current is not None and first - (last_down + 1) >= a.critical_resolve_s:  # type: ignore[operator]
            current["resolved_at"] = (last_down + 1 + a.critical_resolve_s) * 1000  # type: ignore[operator]
            current = None
        if current is not None:
            current["delayed"] += last - first + 1
            last_down = last
            continue
        if last - first + 1 >= a.critical_open_s:
            current = critical(channel_subject(channel), (first + a.critical_open_s) * 1000, last - first + 1)
            out.append(current)
            last_down = last
    if current is not None:
        resolve = last_down + 1 + a.critical_resolve_s  # type: ignore[operator]
        if now_s is None or now_s >= resolve:
            current["resolved_at"] = resolve * 1000
    return out


def probe_faults(target: str, incidents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Critical faults of one probe target: each incident ({first_ms, second_ms, failed_checks,
    next_ok_ms}) opens one at its second failed check (`second_ms`, when the incident is known)
    and resolves at the next ok check (open while there is none)."""
    out = []
    for i in sorted(incidents, key=lambda i: int(i["first_ms"])):
        f = critical(probe_subject(target), int(i["second_ms"]), int(i["failed_checks"]))
        f["resolved_at"] = None if i.get("next_ok_ms") is None else int(i["next_ok_ms"])
        out.append(f)
    return out


def channel_subject(channel: str) -> str:
    return f"channel:{channel}"


def probe_subject(target: str) -> str:
    return f"probe:{target}"


def critical(subject: str, opened_at: int, count: int) -> dict[str, Any]:
    """A critical fault record, shaped like the semi-critical ones (`message_class` names what
    is down: `channel:api`, `probe:admin`; `delayed` counts unavailable seconds or failed checks)."""
    return {"kind": "critical", "severity": "critical", "message_class": subject, "opened_at": opened_at,
            "resolved_at": None, "peak_share": 1.0, "delayed": count, "eligible": 0}


def response(policy: Policy, fault: Mapping[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    """The response target of the fault's class and whether it was resolved within it
    (None while open and still within it)."""
    kind = str(fault.get("kind"))
    cls = "critical" if kind == "critical" else "semi_critical" if kind == "semi_critical" else "non_critical"
    target = policy.response_target_ms[cls]
    opened, resolved = int(fault["opened_at"]), fault.get("resolved_at")
    if resolved is not None:
        met: bool | None = int(resolved) - opened <= target
    elif now_ms is not None and now_ms - opened > target:
        met = False
    else:
        met = None
    return {"response_class": cls, "response_target_s": target // 1000, "response_met": met}


def settled_before(found: Sequence[Mapping[str, Any]], outages: Mapping[str, Sequence[tuple[int, int]]],
                   at_s: int, policy: Policy) -> int:
    """A second S <= at_s where no critical channel fault is open, S is not inside an outage and
    the resolve_after seconds before S hold no unavailable second: evaluating the outages from S
    on gives the faults of the full evaluation opened at or after S (bounded live reading)."""
    s, moved = at_s, True
    hold = policy.availability.critical_resolve_s
    while moved:
        moved = False
        for runs_ in outages.values():
            for first, last in runs_:
                if first < s <= last + hold:
                    s, moved = first, True
        for f in found:
            o, r = int(f["opened_at"]) // 1000, f.get("resolved_at")
            if o < s and (r is None or s < int(r) // 1000):
                s, moved = o - policy.availability.critical_open_s, True
    return s


# -- the adapters' SQL (over the views of ddl/003) and the shaping of its rows ----------------------
def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ms(col: str) -> str:
    return f"toUnixTimestamp64Milli({col})"


def _at(ms: int) -> str:
    return f"fromUnixTimestamp64Milli(toInt64({int(ms)}), 'UTC')"


def channel_sql(db: str, month: str, account: str | None = None) -> str:
    month_bounds(month)  # validates
    if account is None:
        return f"SELECT channel, attempts, failed, unavailable_s FROM {db}.availability_monthly WHERE month = '{month}'"
    return (f"SELECT channel, attempts, failed, unavailable_s FROM {db}.availability_monthly_by_account "
            f"WHERE month = '{month}' AND account_id = {_quote(account)}")


def windows_sql(db: str) -> str:
    return f"SELECT {_ms('start_at')}, {_ms('end_at')} FROM {db}.maintenance_merged ORDER BY 1"


def checks_sql(db: str, start_ms: int, end_ms: int) -> str:
    return (f"SELECT target, count(), countIf(ok = 0) FROM {db}.probe_checks "
            f"WHERE at >= {_at(start_ms)} AND at < {_at(end_ms)} GROUP BY target ORDER BY target")


def incidents_sql(db: str, start_ms: int | None = None, end_ms: int | None = None) -> str:
    where = "" if start_ms is None else f" WHERE last_failed_at >= {_at(start_ms)} AND first_failed_at < {_at(end_ms or 0)}"
    return (f"SELECT target, {_ms('first_failed_at')}, {_ms('second_failed_at')}, {_ms('last_failed_at')}, "
            f"failed_checks, {_ms('next_ok_at')} FROM {db}.probe_incidents{where} ORDER BY target, 2")


def outages_sql(db: str, since_s: int = 0) -> str:
    return (f"SELECT channel, toUnixTimestamp(first_second), toUnixTimestamp(last_second) "
            f"FROM {db}.availability_outages WHERE last_second >= toDateTime({int(since_s)}, 'UTC') "
            f"ORDER BY channel, 2")


def now_sql(db: str) -> str:
    """Event time: the newest attempt or check (epoch ms; 0 when there is none)."""
    return (f"SELECT greatest((SELECT ifNull(max({_ms('at')}), 0) FROM {db}.injections_raw), "
            f"(SELECT ifNull(max({_ms('at')}), 0) FROM {db}.probes_raw))")


def incident_rows(rows: Iterable[Sequence[Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for target, first, second, last, n, nxt in rows:
        out.setdefault(str(target), []).append({"first_ms": int(first), "second_ms": int(second),
                                                "last_ms": int(last), "failed_checks": int(n),
                                                "next_ok_ms": None if nxt is None else int(nxt)})
    return out


def compute(query: Any, db: str, policy: Policy, month: str, account: str | None = None) -> dict[str, Any]:
    """`mailsla availability` (and the report): the month's document from the views.
    `query(sql) -> (columns, rows)` is whichever ClickHouse path the caller has."""
    start, end = month_span(month, policy.timezone)
    _, rows = query(channel_sql(db, month, account))
    channels = {str(c): {"attempts": int(a), "failed": int(f), "unavailable_s": int(u)} for c, a, f, u in rows}
    _, rows = query(windows_sql(db))
    windows = [(int(s), int(e)) for s, e in rows]
    _, rows = query(checks_sql(db, start, end))
    checks = {str(t): (int(n), int(f)) for t, n, f in rows}
    _, rows = query(incidents_sql(db, start, end))
    return document(policy, month, windows, channels, checks, incident_rows(rows), account)


def critical_faults(query: Any, db: str, policy: Policy, since_s: int = 0,
                    now_ms: int | None = None) -> list[dict[str, Any]]:
    """Every critical fault (channels, then probe targets) from the views, from `since_s` on."""
    _, rows = query(outages_sql(db, since_s))
    outages: dict[str, list[tuple[int, int]]] = {c: [] for c in CHANNELS}
    for c, first, last in rows:
        if int(last) >= since_s:
            outages.setdefault(str(c), []).append((max(int(first), since_s), int(last)))
    if now_ms is None:
        _, rows = query(now_sql(db))
        now_ms = int(rows[0][0]) if rows else 0
    found: list[dict[str, Any]] = []
    for c, runs_ in outages.items():
        found += channel_faults(policy, c, runs_, now_ms // 1000 + 1)
    _, rows = query(incidents_sql(db))
    for target, incs in incident_rows(rows).items():
        found += [f for f in probe_faults(target, incs) if int(f["opened_at"]) >= since_s * 1000]
    found.sort(key=lambda f: (f["opened_at"], f["message_class"]))
    return found


def render(doc: Mapping[str, Any]) -> str:
    """The text form of `mailsla availability`."""
    head = f"Availability {doc['month']}" + (f", account {doc['account_id']}" if "account_id" in doc else "")
    lines = [head, f"period {doc['period_s']} s, maintenance {doc['maintenance_s']} s, measured {doc['measured_s']} s",
             f"{'channel':<10}{'attempts':>10}{'failed':>9}{'unavail s':>11}{'availability':>14}  target   met"]
    for ch, c in doc["channels"].items():
        lines.append(f"{ch:<10}{c.get('attempts', ''):>10}{c.get('failed', ''):>9}{c['unavailable_s']:>11}"
                     f"{c['availability'] * 100:>13.4f}%  {c['target'] * 100:.2f}%  {'yes' if c['met'] else 'NO'}")
    lines.append(f"credit owed: {doc['credit_pct']}% of the monthly fee")
    if doc["probes"]:
        lines.append(f"{'probe':<10}{'checks':>10}{'failed':>9}{'incidents':>11}{'down s':>9}{'availability':>14}"
                     f"  target  met")
        for t, p in doc["probes"].items():
            lines.append(f"{t:<10}{p['checks']:>10}{p['failed']:>9}{p['incidents']:>11}{p['downtime_s']:>9}"
                         f"{p['availability'] * 100:>13.4f}%  {p['target'] * 100:.0f}%    {'yes' if p['met'] else 'NO'}")
    return "\n".join(lines)


def live(query: Any, db: str, policy: Policy, fallback_month: str) -> dict[str, Any]:
    """The live view's availability (page, /metrics, `top`): the month to date of the newest
    attempt or check (event time, so a replayed month looks as it did live), all-time unavailable
    seconds per channel (a counter), and whether each probe target's latest check passed."""
    _, rows = query(now_sql(db))
    now_ms = int(rows[0][0]) if rows and rows[0][0] else 0
    zone = zoneinfo.ZoneInfo(policy.timezone)
    month = datetime.fromtimestamp(now_ms / 1000, tz=zone).strftime("%Y-%m") if now_ms else fallback_month
    doc = compute(query, db, policy, month)
    _, rows = query(f"SELECT channel, sum(unavailable_s) FROM {db}.availability_monthly GROUP BY channel")
    totals = {c: 0 for c in (*CHANNELS, "any")} | {str(c): int(n) for c, n in rows}
    _, rows = query(f"SELECT target, argMax(ok, tuple(at, location)) FROM {db}.probe_checks GROUP BY target "
                    f"ORDER BY target")
    return {"month": doc, "unavailable_total": totals, "probe_up": {str(t): int(ok) for t, ok in rows}}
