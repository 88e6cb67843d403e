"""`mailsla report`: the monthly SLA report a provider sends a customer (issue #12).

One self-contained HTML file (inline CSS and SVG, no script, no external asset, printable):
handling-time compliance per class with exclusions by reason, daily compliance and daily
p50/p99 charts, availability per channel and probe target with the list of incidents, faults
with their response targets, and the credit owed. `gather` reads everything through the CLI's
query path; `render` is pure (data in, HTML out). Every number carries `data-key`, so a test
can read the page and compare it with `sla --json` and `availability --json`.
`print_pdf` prints the HTML with headless Chromium when one is installed.
"""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline.core import availability as av
from pipeline.core import sla
from pipeline.live.charts import human_ms
from pipeline.core.config import Settings
from pipeline.core.policy import Policy

Query = Callable[[str], tuple[list[str], list[Sequence[Any]]]]
COLORS = {"transactional": "#2b6cb0", "campaign": "#805ad5"}


def _q(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def daily_sql(db: str, month: str, tz: str, account: str | None) -> str:
    """Per day (policy time zone) and class: eligible, within, exact p50 and p99 of the eligible
    completed messages' handling time (ms)."""
    acct = "" if account is None else f" AND account_id = {_q(account)}"
    return (f"SELECT toString(toDate(accepted_at, '{tz}')) AS day, message_class, countIf(NOT excluded) AS eligible, "
            f"countIf(NOT excluded AND status = 'on_time') AS within, "
            f"quantileExactIf(0.5)(assumeNotNull(handling_ms), handling_ms IS NOT NULL AND NOT excluded) AS p50, "
            f"quantileExactIf(0.99)(assumeNotNull(handling_ms), handling_ms IS NOT NULL AND NOT excluded) AS p99 "
            f"FROM {db}.handling_times WHERE formatDateTime(accepted_at, '%Y-%m', '{tz}') = '{month}'{acct} "
            f"GROUP BY day, message_class ORDER BY day, message_class")


def outages_sql(db: str, month: str, account: str | None) -> str:
    """Runs of consecutive unavailable seconds per channel inside the month (maintenance left out)."""
    src = f"{db}.availability_seconds" if account is None else f"{db}.availability_seconds_by_account"
    acct = "" if account is None else f" AND account_id = {_q(account)}"
    return (f"SELECT channel, toUnixTimestamp(min(second)), toUnixTimestamp(max(second)), count() FROM "
            f"(SELECT channel, second, toInt64(toUnixTimestamp(second)) - toInt64(row_number() OVER "
            f"(PARTITION BY channel ORDER BY second)) AS grp FROM {src} "
            f"WHERE unavailable = 1 AND maintenance = 0 AND month = '{month}'{acct}) "
            f"GROUP BY channel, grp ORDER BY 2, channel")


def gather(settings: Settings, policy: Policy, query: Query, month: str, account: str | None = None) -> dict[str, Any]:
    from pipeline.store import reports

    db, tz = settings.database, policy.timezone
    start, end = av.month_span(month, tz)
    _, rows = query(sla.monthly_sql(db, month, account=account))
    sla_doc = sla.verdict(month, rows, settings.threshold_ms, policy.objective, account=account)
    _, rows = query(daily_sql(db, month, tz, account))
    daily = [{"day": str(d), "class": str(c), "eligible": int(e), "within": int(w),
              "p50": None if not e else float(p50), "p99": None if not e else float(p99)}
             for d, c, e, w, p50, p99 in rows]
    avail = av.compute(query, db, policy, month, account)
    _, rows = query(outages_sql(db, month, account))
    outages = [{"channel": str(c), "start": int(a) * 1000, "end": (int(b) + 1) * 1000, "seconds": int(n)}
               for c, a, b, n in rows]
    _, rows = query(av.windows_sql(db))
    windows = [(int(s), int(e)) for s, e in rows]
    _, rows = query(av.incidents_sql(db, start, end))
    incidents = []
    for target, incs in av.incident_rows(rows).items():
        for i in incs:
            down = av.clip_incident(i["first_ms"], i["last_ms"], start, end, windows)
            if down is not None:
                incidents.append({"target": target, "first": i["first_ms"], "last": i["last_ms"],
                                  "failed_checks": i["failed_checks"], "downtime_ms": down})
    incidents.sort(key=lambda i: (i["first"], i["target"]))
    found = reports.faults(settings, policy, query, kinds="all")

    def ms(ts: str | None) -> int | None:
        from pipeline.core.events import parse_ts

        return None if ts is None else parse_ts(ts, "t")
    faults = [f for f in found if ms(f["opened_at"]) < end and (f["resolved_at"] is None  # type: ignore[operator]
                                                                or ms(f["resolved_at"]) >= start)]  # type: ignore[operator]
    return {"month": month, "account_id": account, "timezone": tz, "sla": sla_doc, "daily": daily,
            "availability": avail, "outages": outages, "incidents": incidents, "faults": faults,
            "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


# -- rendering (pure) -------------------------------------------------------------------------------
def _num(key: str, value: Any, text: str | None = None, cls: str = "") -> str:
    shown = text if text is not None else str(value)
    c = f' class="{cls}"' if cls else ""
    return f'<td data-key="{escape(key)}" data-value="{escape(repr(value) if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value))}"{c}>{escape(shown)}</td>'


def _pct(v: float, digits: int = 3) -> str:
    return f"{v * 100:.{digits}f}%"


def _ts(ms: int | None) -> str:
    if ms is None:
        return "open"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _svg_daily_compliance(daily: list[dict[str, Any]], target: float) -> str:
    days = sorted({d["day"] for d in daily})
    W, H, L, B, T = 720, 220, 48, 40, 12
    if not days:
        return '<p class="muted">No eligible mail this month.</p>'
    low = min([d["within"] / d["eligible"] for d in daily if d["eligible"]] + [target]) - 0.005
    low = max(0.0, min(low, 0.95))

    def y(v: float) -> float:
        return H - B - (v - low) / (1 - low) * (H - B - T)
    n, bw = len(days), (W - L - 10) / max(1, len(days))
    parts = []
    for i, day in enumerate(days):
        for j, cls in enumerate(COLORS):
            d = next((x for x in daily if x["day"] == day and x["class"] == cls and x["eligible"]), None)
            if d is None:
                continue
            v = d["within"] / d["eligible"]
            x0 = L + i * bw + j * bw / 2 + 1
            parts.append(f'<rect x="{x0:.1f}" y="{y(v):.1f}" width="{max(1.0, bw / 2 - 2):.1f}" '
                         f'height="{max(0.0, H - B - y(v)):.1f}" fill="{COLORS[cls]}"><title>{day} {cls}: '
                         f'{_pct(v)} ({d["within"]}/{d["eligible"]})</title></rect>')
        if n <= 31 and (i % max(1, n // 10) == 0):
            parts.append(f'<text x="{L + i * bw + bw / 2:.1f}" y="{H - B + 14}" text-anchor="middle">{day[8:]}</text>')
    grid = "".join(f'<line x1="{L}" x2="{W - 10}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e2e8f0"/>'
                   f'<text x="{L - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v * 100:.1f}%</text>'
                   for v in (low, (low + 1) / 2, 1.0))
    line = (f'<line x1="{L}" x2="{W - 10}" y1="{y(target):.1f}" y2="{y(target):.1f}" stroke="#e53e3e" '
            f'stroke-dasharray="4 3"/><text x="{W - 10}" y="{y(target) - 3:.1f}" text-anchor="end" '
            f'fill="#e53e3e">target {target:.0%}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
            f'aria-label="daily compliance" font-size="11" font-family="sans-serif" fill="#4a5568">'
            f'{grid}{"".join(parts)}{line}<text x="{L}" y="{H - 6}">day of month (bars: transactional, '
            f'campaign)</text></svg>')


def _svg_daily_latency(daily: list[dict[str, Any]]) -> str:
    days = sorted({d["day"] for d in daily})
    W, H, L, B, T = 720, 220, 64, 40, 12
    vals = [d[k] for d in daily for k in ("p50", "p99") if d[k] is not None]
    if not days or not vals:
        return '<p class="muted">No completed eligible mail this month.</p>'
    top = max(vals) or 1.0

    def x(i: int) -> float:
        return L + (i + 0.5) * (W - L - 10) / len(days)

    def y(v: float) -> float:
        return H - B - v / top * (H - B - T)
    parts = []
    for cls, color in COLORS.items():
        for k, dash in (("p50", ""), ("p99", "4 3")):
            pts = [(x(i), y(d[k])) for i, day in enumerate(days) for d in daily
                   if d["day"] == day and d["class"] == cls and d[k] is not None]
            if pts:
                dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
                parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash_attr} points="'
                             + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
                parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="{color}"/>' for a, b in pts]
    grid = "".join(f'<line x1="{L}" x2="{W - 10}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e2e8f0"/>'
                   f'<text x="{L - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{escape(human_ms(v))}</text>'
                   for v in (0, top / 2, top))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
            f'aria-label="daily p50 and p99" font-size="11" font-family="sans-serif" fill="#4a5568">'
            f'{grid}{"".join(parts)}<text x="{L}" y="{H - 6}">day of month: p50 (solid), p99 (dashed)</text></svg>')


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1a202c;max-width:980px;margin:24px auto;
padding:0 16px;font-size:13px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 6px;border-bottom:2px solid #e2e8f0;padding-bottom:3px}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{border-bottom:1px solid #e2e8f0;padding:3px 6px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f7fafc;font-weight:600}
.ok{color:#276749}.bad{color:#c53030;font-weight:600}.muted{color:#718096}
.credit{font-size:18px;padding:8px 12px;border:2px solid #e2e8f0;display:inline-block;margin-top:6px}
svg{width:100%;height:auto;max-height:240px}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}table,svg{break-inside:avoid}}
"""


def render(data: dict[str, Any]) -> str:
    """The report's HTML (self-contained)."""
    month, acct = data["month"], data.get("account_id")
    s, a = data["sla"], data["availability"]
    out = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>SLA report {escape(month)}'
           f'{" – " + escape(acct) if acct else ""}</title><style>{CSS}</style></head><body>',
           f'<h1>Monthly SLA report: <span data-key="month" data-value="{escape(month)}">{escape(month)}</span></h1>',
           f'<p class="muted">{"Account " + escape(acct) + ". " if acct else "All accounts. "}Calendar month in '
           f'{escape(data["timezone"])}; generated {escape(data["generated_at"])}. Times are event times.</p>']
    # handling time
    out.append("<h2>Handling time (accepted → ready for delivery)</h2><table><thead><tr><th>class</th>"
               "<th>threshold</th><th>total</th><th>excluded</th><th>eligible</th><th>within</th><th>delayed</th>"
               "<th>compliance</th><th>target</th><th>met</th></tr></thead><tbody>")
    for cls, c in s["classes"].items():
        k = f"sla.{cls}"
        out.append(f"<tr><td>{cls}</td><td>{escape(human_ms(c['threshold_ms']))}</td>"
                   + _num(f"{k}.total", c["total"]) + _num(f"{k}.excluded_total", sum(c["excluded"].values()))
                   + _num(f"{k}.eligible", c["eligible"]) + _num(f"{k}.within", c["within"])
                   + _num(f"{k}.delayed", c["delayed"])
                   + _num(f"{k}.compliance", c["compliance"], _pct(c["compliance"]), "ok" if c["met"] else "bad")
                   + _num(f"{k}.target", c["target"], _pct(c["target"], 0))
                   + _num(f"{k}.met", c["met"], "yes" if c["met"] else "NO", "ok" if c["met"] else "bad") + "</tr>")
    out.append("</tbody></table><table><thead><tr><th>exclusions by reason</th>"
               + "".join(f"<th>{escape(r.replace('_', ' '))}</th>" for r in sla.EXCLUSION_REASONS)
               + "</tr></thead><tbody>")
    for cls, c in s["classes"].items():
        out.append(f"<tr><td>{cls}</td>" + "".join(_num(f"sla.{cls}.excluded.{r}", c["excluded"][r])
                                                    for r in sla.EXCLUSION_REASONS) + "</tr>")
    out.append("</tbody></table>")
    target = s["classes"]["transactional"]["target"]
    out.append(f"<h3>Daily compliance</h3>{_svg_daily_compliance(data['daily'], target)}")
    out.append(f"<h3>Daily p50 / p99 handling time</h3>{_svg_daily_latency(data['daily'])}")
    out.append("<table><thead><tr><th>day</th><th>class</th><th>eligible</th><th>within</th><th>compliance</th>"
               "<th>p50</th><th>p99</th></tr></thead><tbody>")
    for d in data["daily"]:
        comp = d["within"] / d["eligible"] if d["eligible"] else 1.0
        out.append(f"<tr><td>{d['day']}</td><td>{d['class']}</td><td>{d['eligible']}</td><td>{d['within']}</td>"
                   f"<td>{_pct(comp)}</td><td>{escape(human_ms(d['p50']))}</td><td>{escape(human_ms(d['p99']))}</td></tr>")
    out.append("</tbody></table>")
    # availability
    out.append(f"<h2>Availability</h2><p>Period <span data-key=\"availability.period_s\" data-value=\"{a['period_s']}\">"
               f"{a['period_s']}</span> s, planned maintenance <span data-key=\"availability.maintenance_s\" "
               f"data-value=\"{a['maintenance_s']}\">{a['maintenance_s']}</span> s (not counted), measured "
               f"<span data-key=\"availability.measured_s\" data-value=\"{a['measured_s']}\">{a['measured_s']}</span> s."
               " A second is unavailable when every attempt in it failed with a server error or a timeout.</p>")
    out.append("<table><thead><tr><th>channel</th><th>attempts</th><th>failed</th><th>unavailable s</th>"
               "<th>availability</th><th>target</th><th>met</th></tr></thead><tbody>")
    for ch, c in a["channels"].items():
        k = f"availability.channels.{ch}"
        out.append(f"<tr><td>{ch}</td>" + (_num(f"{k}.attempts", c["attempts"]) if "attempts" in c else "<td>–</td>")
                   + (_num(f"{k}.failed", c["failed"]) if "failed" in c else "<td>–</td>")
                   + _num(f"{k}.unavailable_s", c["unavailable_s"])
                   + _num(f"{k}.availability", c["availability"], _pct(c["availability"], 4), "ok" if c["met"] else "bad")
                   + _num(f"{k}.target", c["target"], _pct(c["target"], 2))
                   + _num(f"{k}.met", c["met"], "yes" if c["met"] else "NO", "ok" if c["met"] else "bad") + "</tr>")
    out.append("</tbody></table><table><thead><tr><th>probe target</th><th>checks</th><th>failed</th><th>incidents</th>"
               "<th>downtime s</th><th>availability</th><th>target</th><th>met</th></tr></thead><tbody>")
    for t, c in a["probes"].items():
        k = f"availability.probes.{t}"
        out.append(f"<tr><td>{escape(t)}</td>" + _num(f"{k}.checks", c["checks"]) + _num(f"{k}.failed", c["failed"])
                   + _num(f"{k}.incidents", c["incidents"]) + _num(f"{k}.downtime_s", c["downtime_s"])
                   + _num(f"{k}.availability", c["availability"], _pct(c["availability"], 4), "ok" if c["met"] else "bad")
                   + _num(f"{k}.target", c["target"], _pct(c["target"], 0))
                   + _num(f"{k}.met", c["met"], "yes" if c["met"] else "NO", "ok" if c["met"] else "bad") + "</tr>")
    if not a["probes"]:
        out.append('<tr><td colspan="8" class="muted">no probe checks this month</td></tr>')
    out.append("</tbody></table><h3>Incidents</h3><table><thead><tr><th>what</th><th>from</th><th>to</th>"
               "<th>duration</th><th>detail</th></tr></thead><tbody>")
    rows = [(o["start"], f"channel {o['channel']} unavailable", o["start"], o["end"], o["seconds"] * 1000,
             f"{o['seconds']} unavailable seconds") for o in data["outages"]]
    rows += [(i["first"], f"probe {i['target']} failing", i["first"], i["last"], i["downtime_ms"],
              f"{i['failed_checks']} consecutive failed checks") for i in data["incidents"]]
    for _, what, a0, a1, dur, detail in sorted(rows, key=lambda r: r[0]):
        out.append(f"<tr><td>{escape(what)}</td><td>{_ts(a0)}</td><td>{_ts(a1)}</td>"
                   f"<td>{escape(human_ms(dur))}</td><td>{escape(detail)}</td></tr>")
    if not rows:
        out.append('<tr><td colspan="5" class="muted">none</td></tr>')
    out.append("</tbody></table>")
    # faults
    out.append("<h2>Faults</h2><table><thead><tr><th>class</th><th>what</th><th>opened</th><th>resolved</th>"
               "<th>duration</th><th>response target</th><th>met</th></tr></thead><tbody>")
    from pipeline.core.events import parse_ts

    for f in data["faults"]:
        o = parse_ts(f["opened_at"], "t")
        r = None if f["resolved_at"] is None else parse_ts(f["resolved_at"], "t")
        met = f.get("response_met")
        out.append(f"<tr><td>{escape(f.get('response_class', f['kind']).replace('_', '-'))}</td>"
                   f"<td>{escape(f['kind'].replace('_', ' '))} {escape(f['message_class'])}</td><td>{_ts(o)}</td>"
                   f"<td>{_ts(r)}</td><td>{escape(human_ms(r - o) if r is not None else 'open')}</td>"
                   f"<td>{escape(human_ms(f.get('response_target_s', 0) * 1000))}</td>"
                   f"<td class=\"{'ok' if met else 'bad' if met is False else 'muted'}\">"
                   f"{'yes' if met else 'NO' if met is False else 'open'}</td></tr>")
    if not data["faults"]:
        out.append('<tr><td colspan="7" class="muted">none</td></tr>')
    out.append("</tbody></table>")
    # credit
    any_s = a["channels"]["any"]["unavailable_s"]
    out.append(f"<h2>Service credit</h2><p>Unavailable seconds on any channel: {any_s}. Credit: 5% of the monthly "
               "fee for each 30 minutes beyond the first 0.01% of the measured month, at most 100%.</p>"
               f"<div class=\"credit\">Credit owed: <b data-key=\"availability.credit_pct\" "
               f"data-value=\"{a['credit_pct']}\">{a['credit_pct']}%</b> of the monthly fee</div>")
    out.append("</body></html>")
    return "\n".join(out)


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell"):
        path = shutil.which(name)
        if path:
            return path
    return None


def print_pdf(html: Path, pdf: Path, timeout_s: float = 120) -> str | None:
    """Print `html` to `pdf` with headless Chromium. Returns None on success, else why not."""
    exe = chromium()
    if exe is None:
        return "no headless Chromium found (install Debian's chromium package)"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mailsla-pdf-") as profile:
        try:
            proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                   f"--user-data-dir={profile}", "--no-pdf-header-footer",
                                   f"--print-to-pdf={pdf.resolve()}", html.resolve().as_uri()],
                                  capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"Chromium did not finish within {timeout_s:.0f} s"
    if proc.returncode != 0 or not pdf.exists() or pdf.stat().st_size == 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return f"Chromium failed (exit {proc.returncode}): {tail[0][:200]}"
    return None
