"""`make demo` runs `mailsla demo`: a short one starts its own Kafka, a worker and the
generator, prints live summaries and the month's SLA, and stops what it started."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_a_short_demo_prints_summaries_and_the_sla_then_stops_everything(tmp_path: Path) -> None:
    env = {**os.environ, "MAILSLA_DATA": str(tmp_path / "data")}
    env.pop("MAILSLA_KAFKA", None)
    proc = subprocess.run([sys.executable, "-m", "pipeline", "demo", "--duration", "20", "--rate", "50"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "(started)" in proc.stdout and "ev/s" in proc.stdout and "SLA 20" in proc.stdout
    assert "transactional" in proc.stdout.split("SLA 20", 1)[1]
    status = subprocess.run([sys.executable, "-m", "pipeline", "kafka", "status"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 1 and "not running" in status.stdout  # the demo stopped its broker
    rows = subprocess.run([sys.executable, "-m", "pipeline", "sql", "SELECT count() AS n FROM mailsla.handling_times",
                           "--format", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert rows.returncode == 0 and '"n":' in rows.stdout and '"n":0' not in rows.stdout


def test_the_postfix_demo_feeds_real_mail_through_ingest_and_stops_the_queue_manager(tmp_path: Path) -> None:
    """`make demo-postfix`: a private Postfix, smtp-source, a stopped qmgr; short here."""
    from mtas import need
    from pipeline.ops import postfixlab

    need(postfixlab.missing())
    env = {**os.environ, "MAILSLA_DATA": str(tmp_path / "data")}
    env.pop("MAILSLA_KAFKA", None)
    proc = subprocess.run([sys.executable, "-m", "pipeline", "demo", "--mta", "postfix", "--duration", "45",
                           "--messages", "450", "--pause", "25"], env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
    assert "queue manager stopped (SIGSTOP)" in out and "queue manager resumed" in out and "450 messages sent" in out
    assert "SLA 20" in out and "transactional" in out.split("SLA 20", 1)[1]
    rows = subprocess.run([sys.executable, "-m", "pipeline", "sql", "SELECT status, count() AS n FROM "
                           "mailsla.handling_times GROUP BY status", "--format", "json"], env=env,
                          capture_output=True, text=True, timeout=120)
    got = {r["status"]: r["n"] for r in json.loads(rows.stdout)}
    assert sum(got.values()) == 450 and got.get("late", 0) > 0  # every message, some late behind the stopped qmgr
