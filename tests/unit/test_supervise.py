"""`worker --processes N`: a join process that dies is started again and counted; SIGTERM is
forwarded to every process and the supervisor exits 0 once they all did."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import signal, sys, time, pathlib
name, marker = sys.argv[1], pathlib.Path(sys.argv[2])
if name == "join-0" and not marker.exists():
    marker.write_text("died once")
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    time.sleep(0.1)
"""

SUPERVISOR = r"""
import subprocess, sys, time
from pathlib import Path
from pipeline.stream import supervise
from pipeline.core.config import load
from dataclasses import replace
marker = sys.argv[2]
real_spawn = supervise._spawn
def spawn(child, log_dir):
    assert log_dir.is_dir()
    child.proc = subprocess.Popen([sys.executable, "-c", sys.argv[3], child.name, marker])
    child.started_at = time.monotonic()
supervise._spawn = spawn
sys.exit(supervise.run(replace(load(), data_dir=Path(sys.argv[1])), 2, log_dir=Path(sys.argv[1]) / "run" / "logs",
                       poll_s=0.1))
"""


def test_a_dead_join_process_is_restarted_and_counted_and_sigterm_stops_all(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(tmp_path), str(tmp_path / "marker"), CHILD],
                           env=env)
    status = tmp_path / "run" / f"supervisor-{sup.pid}.json"
    deadline, doc = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        if status.exists():
            doc = json.loads(status.read_text())
            if all(p["alive"] for p in doc["processes"]) and doc["processes"][0]["restarts"] == 1:
                break
        time.sleep(0.2)
    names = [(p["name"], p["restarts"], p["exits"]) for p in doc["processes"]]
    assert names == [("join-0", 1, [3]), ("join-1", 0, []), ("sink", 0, [])]
    pids = [p["pid"] for p in doc["processes"]]
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(30) == 0
    for pid in pids:  # every child is gone
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
