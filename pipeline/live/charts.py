"""Server-rendered SVG charts of the last hour for the live page (no chart library, no CDN).

Pure: snapshot series in, SVG text out. Runs with every snapshot (every 2 s).
"""
from __future__ import annotations

from typing import Any, Iterable
from xml.sax.saxutils import escape

W, H, PAD_L, PAD_B, PAD_T, PAD_R = 640, 200, 56, 22, 10, 10
COLORS = {"transactional": "#2b6cb0", "campaign": "#805ad5"}
DASH = {"p50": "", "p90": "6 3", "p99": "2 2"}


def human_ms(ms: float | None) -> str:
    """A duration with the unit that fits it: 850 ms, 12.3 s, 4.5 min, 2.1 h."""
    if ms is None:
        return "–"
    for unit, size in (("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms:.0f} ms"


def _polyline(points: Iterable[tuple[float, float]], color: str, dash: str = "") -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash_attr} points="{pts}"/>'


def _frame(title: str, y_labels: list[tuple[float, str]], body: str, t0: int, t1: int) -> str:
    grid = "".join(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>'
                   f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>'
                   for y, label in y_labels)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
            f'font-size="11" font-family="sans-serif" fill="#4a5568">{grid}{body}'
            f'<text x="{PAD_L}" y="{H - 4}">−60 min</text><text x="{W - PAD_R}" y="{H - 4}" text-anchor="end">'
            f'now (event time)</text></svg>')


def render(snap: dict[str, Any]) -> dict[str, str]:
    series = snap.get("series", [])
    t1 = int(snap.get("event_time_ms", 0))
    t0 = t1 - 3_600_000

    def x(t: int) -> float:
        return PAD_L + (t - t0) / (t1 - t0) * (W - PAD_L - PAD_R)

    top = max((s[k] for s in series for k in ("p50", "p90", "p99") if s[k] is not None), default=0.0) or 1.0

    def y_ms(v: float) -> float:
        return H - PAD_B - v / top * (H - PAD_B - PAD_T)

    lines = []
    for cls, color in COLORS.items():
        for k, dash in DASH.items():
            pts = [(x(s["t"]), y_ms(s[k])) for s in series if s["class"] == cls and s[k] is not None]
            if pts:
                lines.append(_polyline(pts, color, dash))
    labels = [(y_ms(top * f), human_ms(top * f)) for f in (0, 0.5, 1)]
    percentiles = _frame("p50 (solid), p90 (dashed), p99 (dotted) handling time per class", labels,
                         "".join(lines), t0, t1)

    shares = [s["delayed"] / s["messages"] for s in series if s["messages"]]
    top_share = max(shares + [0.2])

    def y_share(v: float) -> float:
        return H - PAD_B - v / top_share * (H - PAD_B - PAD_T)

    bars = []
    for cls, color in COLORS.items():
        pts = [(x(s["t"]), y_share(s["delayed"] / s["messages"])) for s in series if s["class"] == cls and s["messages"]]
        if pts:
            bars.append(_polyline(pts, color))
    line = snap.get("fault_window", {}).get("transactional", {}).get("line", 0.10)
    ten = (f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y_share(line):.1f}" y2="{y_share(line):.1f}" '
           f'stroke="#e53e3e" stroke-dasharray="4 3"/><text x="{W - PAD_R}" y="{y_share(line) - 3:.1f}" '
           f'text-anchor="end" fill="#e53e3e">{line:.0%} fault line</text>')
    labels = [(y_share(top_share * f), f"{top_share * f:.0%}") for f in (0, 0.5, 1)]
    delayed = _frame("share of delayed verdicts per minute", labels, "".join(bars) + ten, t0, t1)
    return {"percentiles": percentiles, "delayed_share": delayed}
