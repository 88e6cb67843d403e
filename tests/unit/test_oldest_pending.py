"""The campaign oldest-pending alert: opens above the policy's age, resolves once below, once each."""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path

from pipeline.core.config import load
from pipeline.live.monitor import FaultMonitor

H = 3_600_000
T0 = 1_793_000_000_000


class NoFaults:
    def query(self, sql: str, readonly: bool = True) -> tuple[list[str], list[tuple]]:
        return [], []


def _worker(data: Path, wm: int, oldest_campaign: int | None) -> None:
    run = data / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / f"join-{os.getpid()}.json").write_text(json.dumps({
        "pid": os.getpid(), "watermarks": {"0": wm},
        "oldest_pending_accepted_at": {"transactional": None, "campaign": oldest_campaign}}))


def test_an_old_waiting_campaign_message_opens_one_ticket_that_resolves_when_it_is_processed(tmp_path: Path) -> None:
    monitor = FaultMonitor(replace(load(), data_dir=tmp_path), NoFaults())  # type: ignore[arg-type]
    _worker(tmp_path, T0 + 5 * H, T0)  # 5 h old: under the 6 h limit
    assert asyncio.run(monitor.oldest_pending()) == []
    _worker(tmp_path, T0 + 7 * H, T0)  # 7 h old
    opened = asyncio.run(monitor.oldest_pending())
    assert [(e, a["kind"], a["message_class"], a["opened_at"]) for e, a in opened] == [
        ("opened", "oldest_pending", "campaign", T0 + 7 * H)]
    assert asyncio.run(monitor.oldest_pending()) == []  # still open: nothing new
    _worker(tmp_path, T0 + 8 * H, None)  # it was processed
    resolved = asyncio.run(monitor.oldest_pending())
    assert [(e, a["resolved_at"]) for e, a in resolved] == [("resolved", T0 + 8 * H)]
