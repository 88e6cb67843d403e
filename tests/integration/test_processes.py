"""`mailsla worker --processes 2` (issue #11): two join processes and a sink under one
supervisor process, a messy replay, one join process SIGKILLed in the middle of it. Every
verdict must still be exact, the dead process counted and started again, and SIGTERM must
stop all of them with exit 0."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from test_join_live import _assert_exact, _messy
from stores import both_stores

pytestmark = [pytest.mark.integration, both_stores]


def _joins(pipeline) -> list[dict]:
    return [p for p in pipeline.json("status", "--json")["processes"]
            if p.get("supervisor") and p["name"].startswith("join-")]


def test_two_join_processes_survive_a_sigkill_of_one_and_stop_with_exit_0(pipeline, tmp_path: Path) -> None:
    pipeline.env["MAILSLA_KAFKA_SESSION_TIMEOUT_S"] = "10"  # the group drops the dead member sooner
    clean, traffic = tmp_path / "clean.jsonl", tmp_path / "messy.jsonl"
    pipeline.cli("generate", "--rate", "20", "--duration", "1200", "--seed", "11",
                 "--start", "2026-10-31T23:50:00Z", "--out", str(clean))
    _messy(clean, traffic, seed=11)
    supervisor = pipeline.start_worker("--processes", "2")
    deadline = time.monotonic() + 90
    while len([p for p in _joins(pipeline) if p["alive"]]) < 2:
        assert time.monotonic() < deadline, pipeline.log_tails()
        time.sleep(0.5)
    pipeline.cli("replay", str(traffic))
    st = pipeline.wait_lag_below(40_000)  # kill once part of it is processed, not all
    victim = _joins(pipeline)[0]
    os.kill(victim["pid"], signal.SIGKILL)
    assert st["input_lag"] > 0, "the replay was processed before a join process could be killed"

    pipeline.wait_idle(timeout=300)
    _assert_exact(pipeline, traffic)
    again = {p["name"]: p for p in _joins(pipeline)}[victim["name"]]
    assert again["restarts"] >= 1 and again["alive"] and again["pid"] != victim["pid"]
    assert -signal.SIGKILL in again["exits"]

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(90) == 0, pipeline.log_tails()
