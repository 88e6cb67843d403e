"""`make bench` runs `mailsla bench`: a small one, repeated, on its own broker, gives the JSON object
the README describes, every rate a median of its runs, and stops what it started. Nothing here
asserts on a rate's size (the machine is shared): only that each was measured K times, how the
figures relate to their runs, and what the runs saw (records counted, rows revised)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EVENTS, REPEAT = 4000, 2


def test_a_small_repeated_bench_reports_medians_of_every_run_and_stops_its_broker(tmp_path: Path) -> None:
    env = {**os.environ, "MAILSLA_DATA": str(tmp_path / "data"), "MAILSLA_PARTITIONS": "4"}
    env.pop("MAILSLA_KAFKA", None)
    proc = subprocess.run([sys.executable, "-m", "pipeline", "bench", "--events", str(EVENTS), "--repeat", str(REPEAT),
                           "--sink-messages", "3000", "--state-messages", "4000", "--json"],
                          env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads(proc.stdout)  # the object alone on stdout; the table went to stderr
    assert "summary" in proc.stderr and "ceiling" in proc.stderr
    assert r["events"] == EVENTS and r["repeat"] == REPEAT
    for key in ("ceiling_eps", "noop_batched_eps", "faust_take_events_eps", "sink_rows_per_s"):
        runs = r[f"{key}_runs"]
        assert len(runs) == (max(3, REPEAT) if key.startswith("sink") else REPEAT) and all(v > 0 for v in runs), key
        assert r[f"{key}_min"] == min(runs) <= r[key] <= max(runs) == r[f"{key}_max"], key
    assert set(r["layouts"]) == {"in_process_sink", "separate_sink", "two_join_processes"}
    for name, lay in r["layouts"].items():
        assert len(lay["runs"]) == REPEAT and lay["eps_min"] <= lay["eps"] <= lay["eps_max"], name
        assert lay["eps_per_join_process"] == pytest.approx(lay["eps"] / lay["join_processes"])
    best = r["layouts"][r["best_layout"]]
    assert r["best_eps"] == best["eps"] == max(lay["eps"] for lay in r["layouts"].values())
    assert r["ratio_to_noop"] == pytest.approx(r["best_eps"] / r["noop_batched_eps"])
    assert r["ratio_to_ceiling"] == pytest.approx(r["best_eps"] / r["ceiling_eps"])
    # the sink runs wrote revisions over the same ids (sinkbench checks the rows and the views)
    assert r["sink_first_rows_per_s"] > 0 and r["sink_revision_rows_per_s"] > 0
    assert set(r["state"]["stores"]) == {"memory", "rocksdb"}
    for store, kinds in r["state"]["stores"].items():
        assert set(kinds) == {"pending", "finished"} and all(k["runs"] == REPEAT for k in kinds.values()), store
    assert r["state_bytes_per_pending"] > 0 and r["state"]["stores"]["rocksdb"]["pending"]["disk_bytes_per_message"] > 0
    assert r["digests"]["fastdigest"] is not None and r["digests"]["tdigest"] is not None
    pinned = r["scaling"]["pinned"]
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        assert set(pinned) == {"1", "2"} and len(pinned["2"]["runs"]) == REPEAT
        assert all(len(run["eps_per_process"]) == 2 for run in pinned["2"]["runs"])
        assert r["scaling"]["per_process_vs_1"]["2"] == pytest.approx(
            pinned["2"]["eps_per_process"] / pinned["1"]["eps_per_process"])
    else:
        assert r["scaling"]["pinned_skipped"]
    saved = sorted((tmp_path / "data" / "bench").glob("*.json"))
    assert saved and json.loads(saved[-1].read_text())["best_eps"] == r["best_eps"]
    status = subprocess.run([sys.executable, "-m", "pipeline", "kafka", "status"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 1 and "not running" in status.stdout  # the bench stopped its broker
