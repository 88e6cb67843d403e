"""An independent oracle for availability (issue #12): brute force, second by second, from the
records as produced. Shares no code with pipeline/core/availability.py. Assumes whole-second times
(what the tests generate) and the UTC policy time zone."""
from __future__ import annotations

import calendar
from datetime import datetime, timezone
from typing import Any


def _sec(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


def _month_of(s: int) -> str:
    return datetime.fromtimestamp(s, tz=timezone.utc).strftime("%Y-%m")


def _month_range(month: str) -> tuple[int, int]:
    y, m = map(int, month.split("-"))
    start = calendar.timegm((y, m, 1, 0, 0, 0))
    return start, start + calendar.monthrange(y, m)[1] * 86400


def oracle(records: list[dict[str, Any]], windows: list[tuple[str, str]], month: str,
           account: str | None = None) -> dict[str, Any]:
    maint = set()
    for a, b in windows:
        maint |= set(range(_sec(a), _sec(b)))
    lo, hi = _month_range(month)
    period = hi - lo
    maint_s = len([s for s in maint if lo <= s < hi])
    measured = period - maint_s
    attempts: dict[str, dict] = {}
    checks: dict[tuple, bool] = {}
    for r in records:
        if "attempt_id" in r:
            attempts[r["attempt_id"]] = r
        else:
            k = (r["target"], r.get("location") or "", _sec(r["at"]))
            checks[k] = checks.get(k, True) and r["ok"]
    cells: dict[tuple[str, int], list[str]] = {}
    for a in attempts.values():
        if account is not None and (a.get("account_id") or "") != account:
            continue
        s = _sec(a["at"])
        if lo <= s < hi and s not in maint:
            cells.setdefault((a["channel"], s), []).append(a["outcome"])
    down: dict[str, set[int]] = {"api": set(), "smtp": set()}
    counts = {c: [0, 0] for c in down}
    for (ch, s), outs in cells.items():
        counts[ch][0] += len(outs)
        failed = sum(o in ("server_error", "timeout") for o in outs)
        counts[ch][1] += failed
        if failed == len(outs):
            down[ch].add(s)
    any_down = down["api"] | down["smtp"]
    chans: dict[str, Any] = {}
    for ch in ("api", "smtp"):
        av = 1 - len(down[ch]) / measured
        chans[ch] = {"attempts": counts[ch][0], "failed": counts[ch][1], "unavailable_s": len(down[ch]),
                     "availability": av, "target": 0.9999, "met": av >= 0.9999}
    av = 1 - len(any_down) / measured
    chans["any"] = {"unavailable_s": len(any_down), "availability": av, "target": 0.9999, "met": av >= 0.9999}
    beyond = max(0.0, len(any_down) - 0.0001 * measured)
    credit = min(100, 5 * int(beyond // 1800))
    probes: dict[str, Any] = {}
    by_target: dict[str, list] = {}
    for (t, loc, s), ok in checks.items():
        by_target.setdefault(t, []).append((s, loc, ok))
    for t, rows in sorted(by_target.items()):
        rows.sort()
        n = sum(1 for s, _, _ in rows if lo <= s < hi)
        failed = sum(1 for s, _, ok in rows if lo <= s < hi and not ok)
        incidents, downtime, run = 0, 0, []
        for s, _, ok in rows + [(None, "", True)]:
            if not ok:
                run.append(s)
                continue
            if len(run) >= 2:
                secs = {x for x in range(run[0], run[-1]) if lo <= x < hi and x not in maint}
                inside = run[0] < hi and run[-1] > lo or lo <= run[0] < hi
                if inside:
                    incidents += 1
                    downtime += len(secs)
            run = []
        if n == 0 and incidents == 0:
            continue
        pav = 1 - downtime / measured
        probes[t] = {"checks": n, "failed": failed, "incidents": incidents, "downtime_s": downtime,
                     "availability": pav, "target": 0.99, "met": pav >= 0.99}
    doc: dict[str, Any] = {"month": month}
    if account is not None:
        doc["account_id"] = account
    doc |= {"period_s": period, "maintenance_s": maint_s, "measured_s": measured, "channels": chans,
            "credit_pct": credit, "probes": probes}
    return doc


def critical_oracle(records: list[dict[str, Any]], windows: list[tuple[str, str]]) -> list[tuple[str, int, int | None]]:
    """(subject, opened second, resolved second or None) of every critical fault, by simulating
    each channel second by second (60 s unavailable opens, 60 s available resolves) and each
    probe target check by check."""
    maint = set()
    for a, b in windows:
        maint |= set(range(_sec(a), _sec(b)))
    attempts = {r["attempt_id"]: r for r in records if "attempt_id" in r}
    cells: dict[tuple[str, int], list[str]] = {}
    for a in attempts.values():
        cells.setdefault((a["channel"], _sec(a["at"])), []).append(a["outcome"])
    now = max(_sec(r["at"]) for r in records)
    out = []
    for ch in ("api", "smtp"):
        down = {s for (c, s), o in cells.items() if c == ch and s not in maint
                and all(x in ("server_error", "timeout") for x in o)}
        if not down:
            continue
        is_open, bad, good, opened = False, 0, 0, 0
        for s in range(min(down), now + 1):
            if s in down:
                bad, good = bad + 1, 0
            else:
                bad, good = 0, good + 1
            if not is_open and bad >= 60:
                is_open, opened = True, s + 1
            elif is_open and good >= 60:
                out.append((f"channel:{ch}", opened, s + 1))
                is_open = False
        if is_open:
            out.append((f"channel:{ch}", opened, None))
    checks: dict[tuple, bool] = {}
    for r in records:
        if "target" in r:
            k = (r["target"], _sec(r["at"]), r.get("location") or "")
            checks[k] = checks.get(k, True) and r["ok"]
    for t in sorted({k[0] for k in checks}):
        rows = sorted((s, loc, ok) for (tt, s, loc), ok in checks.items() if tt == t)
        run = []
        for s, _, ok in rows:
            if not ok:
                run.append(s)
                continue
            if len(run) >= 2:
                out.append((f"probe:{t}", run[1], s))
            run = []
        if len(run) >= 2:
            out.append((f"probe:{t}", run[1], None))
    return sorted(out, key=lambda x: (x[1], x[0]))


def _iso(s: int) -> str:
    return datetime.fromtimestamp(s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


WINDOW = ("2026-11-01T02:00:00Z", "2026-11-01T03:00:00Z")


def scenario(seed: int = 12) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Attempts and checks over days across the October/November boundary: outages (one across
    the boundary, one inside the maintenance window), partial failures, client errors,
    duplicates, a short blip that opens no fault; plus malformed records. Shuffled."""
    import random

    rng = random.Random(seed)
    recs: list[dict[str, Any]] = []
    n = 0

    def att(s: int, ch: str, outcome: str) -> None:
        nonlocal n
        n += 1
        r = {"attempt_id": f"a{n}", "at": _iso(s), "channel": ch, "outcome": outcome}
        acct = rng.choice(["acme", "beta", None])
        if acct:
            r["account_id"] = acct
        recs.append(r)

    day0 = _sec("2026-10-29T00:00:00Z")
    for s in range(day0, day0 + 5 * 86400, 300):  # sparse background over five days
        att(s + rng.randrange(300), rng.choice(["api", "smtp"]), rng.choice(["ok", "ok", "client_error"]))
    b = _sec("2026-11-01T00:00:00Z")
    outages = {"api": [(b - 90, b + 90), (b + 7800, b + 8100)], "smtp": [(b + 3600, b + 3645)]}
    for s in range(b - 4 * 3600, b + 4 * 3600, 3):  # dense around the boundary
        t, ch = s + rng.randrange(3), rng.choice(["api", "smtp"])
        down = any(lo <= t < hi for lo, hi in outages[ch])
        att(t, ch, "timeout" if down else rng.choices(["ok", "client_error", "server_error", "timeout"],
                                                      [80, 10, 5, 5])[0])
    for s in range(b - 90, b + 90):  # api down across the boundary: a critical fault
        att(s, "api", rng.choice(["server_error", "timeout"]))
    for s in range(b + 3600, b + 3645):  # smtp down 45 s: unavailable seconds, no fault
        att(s, "smtp", "timeout")
    for s in range(b + 5000, b + 5100):  # smtp partial: a failure and an answer each second
        att(s, "smtp", "timeout")
        att(s, "smtp", rng.choice(["ok", "client_error"]))
    for s in range(b + 7800, b + 8100):  # api down inside maintenance: not counted
        att(s, "api", "server_error")
    for s in range(b - 7200, b - 7000):  # acme only: its own seconds are unavailable
        recs.append({"attempt_id": f"acme-{s}", "at": _iso(s), "channel": "smtp", "outcome": "server_error",
                     "account_id": "acme"})
    for loc in ("eu", "us"):
        off = 0 if loc == "eu" else 30
        for s in range(b - 3 * 3600, b + 4 * 3600, 60):
            t = s + off
            for target in ("api", "smtp", "admin"):
                ok = True
                if target == "admin" and b - 600 <= t <= b + 600:
                    ok = False  # incident across the boundary
                if target == "smtp" and loc == "eu" and t == b + 1800:
                    ok = False  # one failed check: no incident
                if target == "api" and b + 7200 + 300 <= t <= b + 7200 + 1500:
                    ok = False  # during maintenance
                rec = {"target": target, "at": _iso(t), "ok": ok, "location": loc}
                if rng.random() < 0.5:
                    rec["latency_ms"] = round(rng.uniform(5, 500), 1)
                recs.append(rec)
    recs += [dict(r) for r in rng.sample(recs, len(recs) // 20)]  # duplicates
    rng.shuffle(recs)
    bad = [b'{"attempt_id":"x1","at":"yesterday","channel":"api","outcome":"ok"}',
           b'{"attempt_id":"x2","at":"2026-11-01T00:00:00Z","channel":"fax","outcome":"ok"}',
           b'{"attempt_id":"","at":"2026-11-01T00:00:00Z","channel":"api","outcome":"ok"}',
           b'{"target":"api","at":"2026-11-01T00:00:00Z","ok":"yes"}',
           b'{"target":"","at":"2026-11-01T00:00:00Z","ok":false}']
    return recs, bad
