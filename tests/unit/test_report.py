"""The customer report (pipeline/ops/report.py) and the availability live metrics: pure parts."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from pipeline.core import availability as av
from pipeline.live import metrics
from pipeline.ops import report
from pipeline.core import sla
from pipeline.core.policy import load

P = load()


def data() -> dict:
    doc = sla.verdict("2026-10", [("", "transactional", 10, 1, 0, 0, 0, 0, 0, 8, 1)],
                      {"transactional": 1_800_000, "campaign": 43_200_000}, 0.99)
    avail = av.document(P, "2026-10", [], {"api": {"attempts": 5, "failed": 5, "unavailable_s": 5000},
                                           "any": {"unavailable_s": 5000}}, {"admin": (3, 2)},
                        {"admin": [{"first_ms": av.month_span("2026-10")[0] + 60_000,
                                    "last_ms": av.month_span("2026-10")[0] + 120_000}]})
    return {"month": "2026-10", "account_id": None, "timezone": "UTC", "sla": doc, "generated_at": "now",
            "daily": [{"day": "2026-10-01", "class": "transactional", "eligible": 9, "within": 8, "p50": 1000.0,
                       "p99": 4_000_000.0}],
            "availability": avail, "outages": [{"channel": "api", "start": 0, "end": 5_000_000, "seconds": 5000}],
            "incidents": [], "faults": [{"kind": "critical", "message_class": "channel:api",
                                         "opened_at": "2026-10-01T00:01:00.000Z", "resolved_at": None,
                                         "response_class": "critical", "response_target_s": 7200,
                                         "response_met": None}]}


def test_the_report_is_self_contained_and_carries_every_number() -> None:
    d = data()
    page = report.render(d)
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert page.count("<svg") == 2
    keys = dict(re.findall(r'data-key="([^"]+)" data-value="([^"]*)"', page))
    assert keys["availability.credit_pct"] == str(d["availability"]["credit_pct"]) == "10"
    assert keys["availability.channels.api.unavailable_s"] == "5000"
    assert keys["sla.transactional.excluded.low_priority"] == "1"
    assert keys["sla.transactional.compliance"] == repr(d["sla"]["classes"]["transactional"]["compliance"])
    assert keys["availability.probes.admin.downtime_s"] == "60"


def test_pdf_without_chromium_says_why_and_the_cli_exits_2(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(report, "chromium", lambda: None)
    assert "Chromium" in (report.print_pdf(tmp_path / "r.html", tmp_path / "r.pdf") or "")
    env = {"PATH": "/nonexistent", "MAILSLA_DATA": str(tmp_path / "data"), "PYTHONPATH": str(Path.cwd())}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "report", "--month", "2026-10", "--out",
                           str(tmp_path / "r.html"), "--pdf", str(tmp_path / "r.pdf")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Chromium" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_metrics_expose_availability_probes_and_critical_faults() -> None:
    class S:
        database, topic_accepted, topic_ready = "mailsla", "a", "r"
    snap = {"availability": {"month": data()["availability"], "unavailable_total": {"api": 7, "smtp": 0, "any": 7},
                             "probe_up": {"admin": 0, "api": 1}},
            "open_faults": [{"kind": "critical", "message_class": "channel:api"}]}
    text = metrics.exposition(S(), lambda sql: ([], []), snap).decode()  # type: ignore[arg-type]
    assert 'mailsla_unavailable_seconds_total{channel="api"} 7.0' in text
    assert 'mailsla_availability{channel="api"}' in text and 'mailsla_probe_up{target="admin"} 0.0' in text
    assert 'mailsla_critical_faults_open{subject="channel:api"} 1.0' in text
