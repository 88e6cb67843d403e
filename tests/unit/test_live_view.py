"""The live page's pure parts: units chosen per value, the SVG charts, the /metrics exposition."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.live.charts import human_ms, render
from pipeline.core.config import load
from pipeline.live.metrics import BUCKETS_S, exposition, histogram_sql


@pytest.mark.parametrize("ms, text", [(None, "–"), (850, "850 ms"), (12_300, "12.3 s"), (270_000, "4.5 min"),
                                      (7_560_000, "2.1 h")])
def test_each_duration_gets_the_unit_that_fits_it(ms: float | None, text: str) -> None:
    assert human_ms(ms) == text


def test_the_charts_are_well_formed_svg_with_the_fault_line() -> None:
    t = 1_795_000_000_000
    snap = {"event_time_ms": t, "fault_window": {"transactional": {"line": 0.1}},
            "series": [{"t": t - i * 60_000, "class": "transactional", "p50": 1000.0 + i, "p90": 5000.0,
                        "p99": None, "delayed": i % 3, "messages": 10} for i in range(60)]}
    charts = render(snap)
    for svg in charts.values():
        ET.fromstring(svg)  # raises if not well-formed
    assert "10% fault line" in charts["delayed_share"] and charts["percentiles"].count("<polyline") == 2


def test_the_histogram_buckets_include_both_class_thresholds_and_a_day() -> None:
    assert {1800, 43200} <= set(BUCKETS_S) and BUCKETS_S[-1] == 86400
    assert "countIf(handling_ms <= 1800000)" in histogram_sql("mailsla")


def test_the_exposition_parses_and_carries_the_snapshot() -> None:
    def query(sql: str):
        return ["c"], [("transactional", 3, 4500, *([1] * 9 + [3] * 7))]
    snap = {"counters": {"events_accepted": 5, "events_ready": 4, "dead_letter:missing field accepted_at": 2,
                         "verdict_on_time": 3},
            "pending": {"messages": 7, "oldest_overdue_age_ms": {"transactional": 120_000, "campaign": None}},
            "lag": {"input": 0, "results": 1}, "month": {"classes": {"transactional": {"compliance": 0.5}}},
            "open_faults": [{}]}
    families = {f.name: f for f in text_string_to_metric_families(exposition(load(), query, snap).decode())}
    count = [s for s in families["mailsla_handling_seconds"].samples if s.name.endswith("_count")]
    assert count[0].value == 3
    assert [s.value for s in families["mailsla_dead_letters"].samples if s.name.endswith("_total")] == [2]
    assert families["mailsla_pending_messages"].samples[0].value == 7
    assert families["mailsla_open_faults"].samples[0].value == 1
