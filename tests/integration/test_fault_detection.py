"""Semi-critical faults from replayed traffic: an incident and a stall each open one
transactional fault at the right event time; healthy mail and campaign mail open none."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _t(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def test_an_incident_and_a_stall_each_open_one_fault_and_healthy_mail_none(pipeline, tmp_path: Path) -> None:
    traffic = tmp_path / "traffic.jsonl"
    start = _t("2026-10-31T00:00:00Z")
    pipeline.cli("generate", "--rate", "4", "--duration", "14400", "--seed", "9", "--start", "2026-10-31T00:00:00Z",
                 "--incident", "30m,45m,0.3,35m", "--stall", "150m,40m", "--out", str(traffic))
    pipeline.start_worker()
    pipeline.cli("replay", str(traffic))
    pipeline.wait_idle(timeout=400)
    found = pipeline.json("faults", "--json")
    assert {f["message_class"] for f in found} == {"transactional"}, found
    incident, stall = found
    assert 30 * 60 <= _t(incident["opened_at"]) - (start + 30 * 60) <= 45 * 60
    assert _t(incident["resolved_at"]) > start + 75 * 60 and incident["peak_share"] > 0.1
    assert 30 * 60 <= _t(stall["opened_at"]) - (start + 150 * 60) <= 36 * 60
    assert all(f["kind"] == "semi_critical" and f["eligible"] >= 100 for f in found)
    assert pipeline.json("faults", "--json", "--open") == [f for f in found if f["resolved_at"] is None]
