"""The live page with the current snapshot already in it (server-side), so it is never blank.

Runs on every `GET /` (pipeline/live/web.py): fills the elements of `static/index.html` the way
its script's `render()` does (same ids, texts, `data-value`s and colour classes), so the
page shows the numbers before its first server-sent frame and without JavaScript. The
script then replaces them every 2 s. A snapshot that cannot be computed leaves the
template as it is, with the error in the status line.
"""
from __future__ import annotations

import html
import re
import time
from typing import Any

from pipeline.live.charts import human_ms


def _pct(v: float, d: int = 2) -> str:
    return f"{v * 100:.{d}f}%"


def _td(text: str, value: Any = None, cls: str = "", id_: str = "") -> str:
    attrs = f' id="{id_}"' if id_ else ""
    if value is not None:
        attrs += f' data-value="{html.escape(str(value).lower() if isinstance(value, bool) else str(value))}"'
    if cls:
        attrs += f' class="{cls}"'
    return f"<td{attrs}>{html.escape(text)}</td>"


def _tr(cells: list[str], id_: str = "") -> str:
    return (f'<tr id="{id_}">' if id_ else "<tr>") + "".join(cells) + "</tr>"


def _element(tag: str, id_: str) -> re.Pattern[str]:
    return re.compile(rf'<{tag} id="{re.escape(id_)}"[^>]*>.*?</{tag}>', re.S)


def _replace(page: str, tag: str, id_: str, inner: str, open_tag: str | None = None) -> str:
    """Replace the content (and, with `open_tag`, the opening tag) of the element with this id."""
    return _element(tag, id_).sub(
        lambda m: (open_tag or m.group(0)[:m.group(0).index(">") + 1]) + inner + f"</{tag}>", page, count=1)


def ingest_text(ing: dict[str, Any]) -> str:
    """`mailsla ingest` in one cell (the script's `ingestText` says the same)."""
    if not ing.get("processes"):
        return "no ingest running"
    ev = ing.get("events") or {}
    text = (f"{ing.get('lines', 0)} lines: {ev.get('accepted', 0)} accepted, {ev.get('queue_ready', 0)} ready, "
            f"{ing.get('in_flight', 0)} in flight")
    return text + "".join(f"; {e}" for e in ing.get("errors") or [])


def reasons_text(garbled: dict[str, int], skipped: dict[str, int]) -> str:
    """Garbled lines per reason, then other daemons' lines (the script's `reasonsText`)."""
    parts = [f"{k} {v}" for k, v in sorted(garbled.items())] or ["none"]
    return ", ".join(parts) + f" (other daemons' lines: {skipped.get('other_daemon', 0)})"


def _cell(page: str, id_: str, text: str, value: Any = None, cls: str = "") -> str:
    """Replace the whole table cell with this id (its text, data-value and class)."""
    return _element("td", id_).sub(lambda _: _td(text, value, cls, id_), page, count=1)


def render(page: str, s: dict[str, Any]) -> str:
    """`page` (the template) with snapshot `s` filled in."""
    page = _replace(page, "b", "event-time", html.escape(s["event_time"]))
    page = _replace(page, "b", "updated", time.strftime("%H:%M:%S", time.gmtime(s["at"])) + " UTC")
    page = _replace(page, "span", "status", "live")
    rows, thresholds = [], {}
    for cls, c in s["classes"].items():
        thresholds[cls] = s["month"]["classes"].get(cls, {}).get("threshold_ms")
        th = thresholds[cls]
        for w, q in c["percentiles_ms"].items():
            vals = q or [None] * 4
            color = [("" if v is None or not th else "bad" if v > th else "warn" if v > th / 2 else "ok") for v in vals]
            rows.append(_tr([_td(cls), _td(w)] + [_td(human_ms(v), v, k) for v, k in zip(vals, color)]
                            + [_td(str(c["verdicts"][w]), c["verdicts"][w])], f"p-{cls}-{w}"))
    page = _replace(page, "tbody", "percentiles", "".join(rows))
    r, lag, pend = s["rates"], s["lag"], s["pending"]
    page = _cell(page, "events-per-s", f"{r['events_per_s']:.1f}", r["events_per_s"])
    page = _cell(page, "verdicts-per-s", f"{r['verdicts_per_s']:.1f}", r["verdicts_per_s"])
    page = _cell(page, "lag", "–" if "input" not in lag else f"{lag['input']} / {lag['results']}", lag.get("input"),
                 "warn" if lag.get("input", 0) > 10000 else "")
    page = _cell(page, "pending", str(pend["messages"]), pend["messages"])
    od = pend["overdue"]
    page = _cell(page, "overdue", f"{od['transactional']} / {od['campaign']}", od["transactional"],
                 "warn" if od["transactional"] else "ok")
    op = pend["oldest_pending_age_ms"]
    page = _cell(page, "oldest-pending", f"{human_ms(op['transactional'])} / {human_ms(op['campaign'])}",
                 op["transactional"], "bad" if (op["transactional"] or 0) > (thresholds.get("transactional")
                                                                             or float("inf")) else "")
    oo = pend["oldest_overdue_age_ms"]
    page = _cell(page, "oldest", f"{human_ms(oo['transactional'])} / {human_ms(oo['campaign'])}")
    cs = s.get("clock_suspects", {})
    page = _cell(page, "clock-suspects", ", ".join(f"{m}: {k.get('ahead', 0)} / {k.get('behind', 0)}"
                                                   for m, k in cs.items()) or "none", len(cs), "warn" if cs else "ok")
    ing = s.get("ingest") or {}
    page = _cell(page, "ingest", ingest_text(ing), ing.get("lines"), "warn" if ing.get("errors") else "")
    bad = sum((ing.get("garbled") or {}).values())
    page = _cell(page, "ingest-garbled", reasons_text(ing.get("garbled") or {}, ing.get("skipped") or {}), bad,
                 "warn" if bad else "ok")
    rows = []
    for cls, f in s["fault_window"].items():
        state = ("bad" if f["eligible"] >= f["min_volume"] and f["share"] > f["line"]
                 else "warn" if f["share"] > f["line"] / 2 else "ok")
        rows.append(_tr([_td(cls), _td(human_ms(f["window_ms"])), _td(f"{f['delayed']} / {f['eligible']}"),
                         _td(_pct(f["share"]), f["share"], state), _td(_pct(f["line"], 0))], f"fw-{cls}"))
    page = _replace(page, "tbody", "fault-window", "".join(rows))
    page = _replace(page, "span", "month", html.escape(s["month"]["month"]))
    rows = []
    for cls, m in s["month"]["classes"].items():
        state = ("warn" if m["budget_consumed"] > 0.75 else "ok") if m["met"] else "bad"
        rows.append(_tr([_td(cls), _td(str(m["eligible"]), m["eligible"]), _td(str(m["within"]), m["within"]),
                         _td(str(m["delayed"]), m["delayed"]), _td(_pct(m["compliance"], 3), m["compliance"], state),
                         _td(_pct(m["budget_consumed"], 0), m["budget_consumed"], state),
                         _td(str(m["budget_remaining"]), m["budget_remaining"])], f"m-{cls}"))
    page = _replace(page, "tbody", "month-table", "".join(rows))
    rows = [_tr([_td(b["severity"]), _td(f"{b['factor']}×"),
                 _td(f"{b['burn_long']:.1f}× / {human_ms(b['long_ms'])}", b["burn_long"]),
                 _td(f"{b['burn_short']:.1f}× / {human_ms(b['short_ms'])}", b["burn_short"]),
                 _td("FIRING" if b["firing"] else "no", None, "bad" if b["firing"] else "ok")])
            for b in s["burn_rates"]]
    page = _replace(page, "tbody", "burn", "".join(rows))
    rows = [_tr([_td(f["kind"] + ("" if f["kind"] == "semi_critical" else " " + f["severity"]), None, "bad"),
                 _td(f["message_class"]), _td(f["opened_at"]), _td(_pct(f["peak_share"], 1), f["peak_share"])])
            for f in s["open_faults"]] or [_tr([_td("none", None, "muted")])]
    page = _replace(page, "tbody", "faults", "".join(rows))
    charts = s.get("charts") or {}
    page = _replace(page, "div", "chart-percentiles", charts.get("percentiles", ""))
    return _replace(page, "div", "chart-delayed", charts.get("delayed_share", ""))


def with_error(page: str, error: str) -> str:
    """The template with `error` in the status line (no snapshot yet)."""
    return _replace(page, "span", "status", html.escape(error), '<span id="status" class="stale">')
