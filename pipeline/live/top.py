"""`mailsla top`: the live page's numbers in a terminal (rich), for engineers on SSH.

Same data source as the page: the owner's `/api/snapshot` when a sink serves
this data dir, else a snapshot computed here over the CLI's ClickHouse path.
Redraws every `every_s` seconds until Ctrl-C; `--once` prints one frame.
"""
from __future__ import annotations

import asyncio
import time
import urllib.request
from typing import Any, Callable

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pipeline.live.charts import human_ms


def remote(url: str) -> Callable[[], dict[str, Any]]:
    def get() -> dict[str, Any]:
        with urllib.request.urlopen(f"{url}/api/snapshot", timeout=30) as resp:  # noqa: S310 - our loopback API
            return orjson.loads(resp.read())
    return get


def local(settings: Any, query: Any) -> Callable[[], dict[str, Any]]:
    from pipeline.live.snapshot import collect
    from pipeline.live.web import LiveView

    view, prev = LiveView(settings, query), [None]

    def get() -> dict[str, Any]:
        snap = collect(settings, query, prev[0], asyncio.run(view.lag()))
        prev[0] = snap
        return snap
    return get


def _style(ok: bool, warn: bool = False) -> str:
    return "green" if ok and not warn else "yellow" if ok else "red"


def frame(s: dict[str, Any]) -> Group:
    head = Text(f"mailsla  event time {s['event_time']}   events/s {s['rates']['events_per_s']:.1f}   "
                f"verdicts/s {s['rates']['verdicts_per_s']:.1f}   lag {s['lag'].get('input', '–')}/"
                f"{s['lag'].get('results', '–')}   pending {s['pending']['messages']}", style="bold")
    p = Table("class", "window", "p50", "p90", "p99", "p99.9", "verdicts", title="handling time")
    for cls, c in s["classes"].items():
        for w, q in c["percentiles_ms"].items():
            p.add_row(cls, w, *(human_ms(v) for v in (q or [None] * 4)), str(c["verdicts"][w]))
    f = Table("class", "window", "delayed/eligible", "share", "line", title="fault rule")
    for cls, w in s["fault_window"].items():
        breach = w["eligible"] >= w["min_volume"] and w["share"] > w["line"]
        f.add_row(cls, human_ms(w["window_ms"]), f"{w['delayed']}/{w['eligible']}",
                  Text(f"{w['share']:.1%}", style=_style(not breach, w["share"] > w["line"] / 2)), f"{w['line']:.0%}")
    m = Table("class", "eligible", "within", "delayed", "compliance", "budget used", "left",
              title=f"month to date {s['month']['month']}")
    for cls, c in s["month"]["classes"].items():
        m.add_row(cls, str(c["eligible"]), str(c["within"]), str(c["delayed"]),
                  Text(f"{c['compliance']:.3%}", style=_style(c["met"], c["budget_consumed"] > 0.75)),
                  f"{c['budget_consumed']:.0%}", str(c["budget_remaining"]))
    b = Table("burn tier", "long", "short", "firing", title="burn rates (transactional)")
    for t in s["burn_rates"]:
        b.add_row(f"{t['severity']} {t['factor']}×", f"{t['burn_long']:.1f}× / {human_ms(t['long_ms'])}",
                  f"{t['burn_short']:.1f}× / {human_ms(t['short_ms'])}",
                  Text("FIRING" if t["firing"] else "no", style=_style(not t["firing"])))
    o = Table("kind", "class", "opened", "peak", title="open faults and alerts")
    for x in s["open_faults"]:
        o.add_row(f"{x['kind']} {x['severity']}", x["message_class"], x["opened_at"], f"{x['peak_share']:.1%}")
    a = s.get("availability")
    if not a:
        return Group(head, p, f, m, b, o)
    doc = a["month"]
    av = Table("channel / probe", "unavailable", "availability", "target", title=f"availability {doc['month']} "
               f"(credit owed {doc['credit_pct']}%)")
    for ch, c in doc["channels"].items():
        av.add_row(ch, f"{c['unavailable_s']} s", Text(f"{c['availability']:.4%}", style=_style(c["met"])),
                   f"{c['target']:.2%}")
    for t, c in doc["probes"].items():
        up = a["probe_up"].get(t)
        av.add_row(f"probe {t} ({'up' if up else 'DOWN'})", f"{c['downtime_s']} s",
                   Text(f"{c['availability']:.4%}", style=_style(c["met"] and bool(up))), f"{c['target']:.0%}")
    return Group(head, p, f, m, b, o, av)


def run(get: Callable[[], dict[str, Any]], once: bool = False, every_s: float = 2.0) -> int:
    console = Console()
    if once:
        console.print(frame(get()))
        return 0
    with Live(frame(get()), console=console, refresh_per_second=1, screen=False) as live:
        while True:
            time.sleep(every_s)
            live.update(frame(get()))
