"""Prometheus exposition (`GET /metrics`), built at scrape time from the same sources as the page.

The handling-time histogram is exact: its buckets are counted in ClickHouse over
the current rows of completed messages (on_time + late), so its `_count` is the
number of completed verdicts and it survives restarts. Counters of events,
dead letters and verdicts come from the live join workers (they restart with
them, as Prometheus counters do); gauges from the snapshot.
"""
from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from pipeline.core.config import Settings
from pipeline.live.snapshot import Query

CONTENT_TYPE = CONTENT_TYPE_LATEST
# seconds; 1800 (30 min) and 43200 (12 h) are the two class thresholds, 86400 the top
BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)


def histogram_sql(db: str) -> str:
    counts = ", ".join(f"countIf(handling_ms <= {b * 1000})" for b in BUCKETS_S)
    return (f"SELECT message_class, count(), sum(handling_ms), {counts} FROM {db}.handling_times_raw FINAL "
            f"WHERE handling_ms IS NOT NULL GROUP BY message_class ORDER BY message_class")


class _Collector:
    def __init__(self, settings: Settings, query: Query, snap: dict[str, Any]) -> None:
        self.settings, self.query, self.snap = settings, query, snap

    def collect(self) -> Any:
        _, rows = self.query(histogram_sql(self.settings.database))
        h = HistogramMetricFamily("mailsla_handling_seconds", "Handling time (accepted -> queue-ready) of "
                                  "completed messages", labels=["message_class"])
        for r in rows:
            cls, n, total = str(r[0]), int(r[1]), float(r[2] or 0) / 1000
            buckets = [(str(float(b)), int(c)) for b, c in zip(BUCKETS_S, r[3:])] + [("+Inf", n)]
            h.add_metric([cls], buckets, total)
        yield h

        c = self.snap.get("counters", {})
        events = CounterMetricFamily("mailsla_events", "Input events processed by the live join workers",
                                     labels=["topic"])
        events.add_metric([self.settings.topic_accepted], c.get("events_accepted", 0))
        events.add_metric([self.settings.topic_ready], c.get("events_ready", 0))
        yield events
        dead = CounterMetricFamily("mailsla_dead_letters", "Records sent to the dead-letter topic", labels=["reason"])
        for k, n in sorted(c.items()):
            if k.startswith("dead_letter:"):
                dead.add_metric([k.split(":", 1)[1]], n)
        yield dead
        verdicts = CounterMetricFamily("mailsla_verdicts", "Verdicts reached by the live join workers",
                                       labels=["status"])
        for status in ("on_time", "overdue", "late", "never_ready"):
            verdicts.add_metric([status], c.get(f"verdict_{status}", 0))
        yield verdicts
        suspect = CounterMetricFamily("mailsla_clock_suspect_events", "Events whose timestamp was kept out of "
                                      "event time (an MTA clock ahead, or later than the never-ready horizon)",
                                      labels=["mta", "kind"])
        for mta, kinds in sorted(self.snap.get("clock_suspects", {}).items()):
            for kind, n in sorted(kinds.items()):
                suspect.add_metric([mta, kind], n)
        yield suspect

        s = self.snap
        yield GaugeMetricFamily("mailsla_pending_messages", "Accepted messages waiting for queue-ready",
                                value=s.get("pending", {}).get("messages", 0))
        waiting = GaugeMetricFamily("mailsla_oldest_pending_age_seconds", "Age of the oldest message still "
                                    "waiting for queue-ready (event time)", labels=["message_class"])
        for cls, age in s.get("pending", {}).get("oldest_pending_age_ms", {}).items():
            waiting.add_metric([cls], (age or 0) / 1000)
        yield waiting
        oldest = GaugeMetricFamily("mailsla_oldest_overdue_age_seconds", "Age of the oldest overdue message "
                                   "(event time)", labels=["message_class"])
        for cls, age in s.get("pending", {}).get("oldest_overdue_age_ms", {}).items():
            oldest.add_metric([cls], (age or 0) / 1000)
        yield oldest
        lag = GaugeMetricFamily("mailsla_consumer_lag", "Records not yet processed", labels=["stage"])
        for stage, n in s.get("lag", {}).items():
            lag.add_metric([stage], n)
        yield lag
        comp = GaugeMetricFamily("mailsla_month_compliance", "Month-to-date share of eligible mail within "
                                 "the threshold", labels=["message_class"])
        for cls, v in s.get("month", {}).get("classes", {}).items():
            comp.add_metric([cls], v["compliance"])
        yield comp
        yield GaugeMetricFamily("mailsla_open_faults", "Open faults and alerts", value=len(s.get("open_faults", [])))

        a = s.get("availability") or {}
        unavailable = CounterMetricFamily("mailsla_unavailable_seconds", "Unavailable seconds (every attempt "
                                          "failed server-side; maintenance not counted)", labels=["channel"])
        for ch, n in (a.get("unavailable_total") or {}).items():
            unavailable.add_metric([ch], n)
        yield unavailable
        ratio = GaugeMetricFamily("mailsla_availability", "Month-to-date availability (event-time month)",
                                  labels=["channel"])
        for ch, c in ((a.get("month") or {}).get("channels") or {}).items():
            ratio.add_metric([ch], c["availability"])
        yield ratio
        up = GaugeMetricFamily("mailsla_probe_up", "1 when the target's latest synthetic check passed",
                               labels=["target"])
        for target, ok in (a.get("probe_up") or {}).items():
            up.add_metric([target], ok)
        yield up
        crit = GaugeMetricFamily("mailsla_critical_faults_open", "Open critical faults (a channel unavailable, "
                                 "a probe incident)", labels=["subject"])
        for x in s.get("open_faults", []):
            if x.get("kind") == "critical":
                crit.add_metric([x["message_class"]], 1)
        yield crit


def exposition(settings: Settings, query: Query, snap: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(settings, query, snap))  # type: ignore[arg-type]
    return generate_latest(registry)
