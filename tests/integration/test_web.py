"""The live page in a real headless Chromium, /metrics through Prometheus' own parser, and the
health endpoints, against a running pipeline fed with known events."""
from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdp import Browser, chromium
from needs import need

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MAILSLA_ARTIFACTS", ROOT / "test-artifacts"))


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - the test's own loopback server
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def fed(pipeline, tmp_path: Path):
    traffic = tmp_path / "traffic.jsonl"
    pipeline.cli("generate", "--rate", "8", "--duration", "1800", "--seed", "11", "--start", "2026-11-10T00:00:00Z",
                 "--incident", "5m,10m,0.3,35m", "--out", str(traffic))
    pipeline.start_worker()
    pipeline.cli("replay", str(traffic))
    pipeline.wait_idle()
    url = json.loads((Path(pipeline.env["MAILSLA_DATA"]) / "run" / "api.json").read_text())["url"]
    return pipeline, url


def test_metrics_parse_and_the_histogram_counts_every_completed_verdict(fed) -> None:
    pipeline, url = fed
    status, body = _get(f"{url}/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    hist = families["mailsla_handling_seconds"]
    counts = {s.labels["message_class"]: s.value for s in hist.samples if s.name.endswith("_count")}
    thirty = {s.labels["message_class"]: s.value for s in hist.samples
              if s.name.endswith("_bucket") and s.labels["le"] == "1800.0"}
    want = {r["message_class"]: r for r in pipeline.rows(
        "SELECT message_class, countIf(handling_ms IS NOT NULL) AS n, countIf(handling_ms <= 1800000) AS fast "
        "FROM mailsla.handling_times GROUP BY message_class")}
    assert counts == {c: float(r["n"]) for c, r in want.items()}
    assert thirty == {c: float(r["fast"]) for c, r in want.items()}
    # counters come from the join workers' status files (rewritten every 2 s): they may trail the rows briefly
    deadline, verdicts = time.monotonic() + 30, 0.0
    while time.monotonic() < deadline:
        families = {f.name: f for f in text_string_to_metric_families(_get(f"{url}/metrics")[1].decode())}
        verdicts = sum(s.value for s in families["mailsla_verdicts"].samples if s.name == "mailsla_verdicts_total")
        if verdicts >= sum(r["n"] for r in want.values()):
            break
        time.sleep(1)
    assert verdicts >= sum(r["n"] for r in want.values())
    assert {"mailsla_pending_messages", "mailsla_oldest_pending_age_seconds", "mailsla_consumer_lag",
            "mailsla_month_compliance", "mailsla_open_faults"} <= set(families)
    assert _get(f"{url}/healthz")[0] == 200
    assert _get(f"{url}/readyz")[0] == 200  # caught up


def test_the_page_updates_live_and_shows_what_clickhouse_says(fed) -> None:
    need(chromium(), "Debian's chromium package is not installed (make install-browser, as root)")
    pipeline, url = fed
    browser = Browser(f"{url}/")
    try:
        assert browser.wait_for("Number(document.body.dataset.updates || 0) >= 2", 60), "no live update arrived"
        cells = browser.evaluate(
            "JSON.stringify(Object.fromEntries([...document.querySelectorAll('tr[id]')].map("
            "tr => [tr.id, [...tr.querySelectorAll('td')].map(td => td.dataset.value ?? td.textContent)])))")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.screenshot(ARTIFACTS / "live-page.png")
    finally:
        browser.close()
    rows = json.loads(cells)
    sla = pipeline.json("sla", "--month", "2026-11", "--json")["classes"]["transactional"]
    eligible, within, delayed, compliance = rows["m-transactional"][1:5]
    assert (int(eligible), int(within), int(delayed)) == (sla["eligible"], sla["within"], sla["delayed"])
    assert float(compliance) == pytest.approx(sla["compliance"], rel=1e-12)
    # the 60-minute p50 of transactional mail, as ClickHouse merges the digests of those minutes
    # (merging t-digests is order-dependent, so two merges of the same states agree to a fraction of 1%)
    snap = json.loads(_get(f"{url}/api/snapshot")[1])
    start = snap["event_time_ms"] // 1000 - 3600
    q = pipeline.rows("SELECT quantilesTDigestMerge(0.5, 0.9, 0.99, 0.999)(latency) AS q, sum(messages) AS n "
                      "FROM mailsla.handling_minutely WHERE message_class = 'transactional' "
                      f"AND minute >= toDateTime({start}, 'UTC')")[0]
    shown = rows["p-transactional-60m"]
    assert float(shown[2]) == pytest.approx(q["q"][0], rel=0.01) and int(shown[6]) == q["n"]
    assert (ARTIFACTS / "live-page.png").stat().st_size > 10_000
