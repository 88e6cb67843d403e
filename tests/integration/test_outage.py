"""Outage drills on the real broker and the real embedded engine. Each one disturbs a running
pipeline in the middle of a stream, lets it recover by itself (no manual restart of the worker),
and ends with rows, SLA and aggregates identical to what the traffic implies (the oracle).

Each prints what the outage cost (`DRILL ...` lines, `pytest -s` to see them): time to recover and
records read twice. No timed assertions: the numbers go to README (Operations).

Short on purpose (small traffic, a 6 s group session timeout); MAILSLA_DRILL_OUTAGE_S (default
20) sets how long Kafka stays down and ClickHouse keeps failing.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Pipeline
from pipeline.ops.localkafka import LocalKafka
from test_join_live import _assert_exact
from stores import both_stores
from needs import need

pytestmark = [pytest.mark.integration, both_stores]

SESSION_S = 6  # the broker's minimum (group.min.session.timeout.ms)
OUTAGE_S = float(os.environ.get("MAILSLA_DRILL_OUTAGE_S", "20"))


def _traffic(p: Pipeline, tmp_path: Path, rate: int, duration: int, seed: int) -> Path:
    path = tmp_path / f"traffic-{seed}.jsonl"
    p.cli("generate", "--rate", str(rate), "--duration", str(duration), "--seed", str(seed),
          "--start", "2026-10-31T23:50:00Z", "--out", str(path))
    return path


def _status_files(p: Pipeline, prefix: str) -> list[dict[str, Any]]:
    out = []
    for f in (Path(p.env["MAILSLA_DATA"]) / "run").glob(f"{prefix}-*.json"):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    return out


def _processed(p: Pipeline) -> int:
    return sum(s.get("processed", 0) for s in _status_files(p, "join"))


def _records(p: Pipeline, *topics: str) -> int:
    from pipeline.stream.kafka import end_offsets

    offsets = asyncio.run(end_offsets(p.settings(), list(topics)))
    return sum(end - begin for begin, end in offsets.values())


def _wait(cond: Any, timeout: float, what: str, p: Pipeline) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} not within {timeout}s\n{p.log_tails()}"
        time.sleep(0.3)


def _reread(p: Pipeline) -> tuple[int, int]:
    """(input records the join read more than once, result records the sink read more than once).

    The join's are records Kafka delivered again after a rejoin or seek and the agent skipped as
    already processed, plus any processed twice. The sink writes its status file before and after
    each batch, so after a SIGKILL its count is exact up to the batch in flight."""
    s = p.settings()
    inputs = _records(p, s.topic_accepted, s.topic_ready)
    results = _records(p, s.topic_results, s.topic_accounts, s.topic_maintenance)
    consumed = sum(x.get("consumed", 0) for x in _status_files(p, "sink"))
    # the join: records processed twice, plus records delivered again and skipped as already processed
    redelivered = sum(x.get("offsets", {}).get("skipped_redeliveries", 0) for x in _status_files(p, "join"))
    return max(0, _processed(p) - inputs) + redelivered, max(0, consumed - results)


def _events(traffic: Path) -> int:
    return sum(1 for line in traffic.read_bytes().splitlines() if line.strip())


def _sigterm(worker: subprocess.Popen, p: Pipeline) -> float:
    """SIGTERM the worker and wait for it to end by itself; returns how long that took (reported,
    not asserted). Clean (exit 0), or the shutdown watchdog's exit 1 with its one line when Kafka or
    ClickHouse holds the shutdown up: never a hang, never a kill by the harness."""
    t = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    rc = worker.wait(120)  # a bound for the test run only; MAILSLA_SHUTDOWN_S is the watchdog's
    took = time.monotonic() - t
    log = p.logs[0].read_text(errors="replace")
    assert rc == 0 or (rc == 1 and "shutdown not finished after" in log), (rc, p.log_tails())
    return took


def _report(name: str, **numbers: Any) -> None:
    line = "DRILL " + name + " " + " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in numbers.items())
    print(line)
    out = os.environ.get("MAILSLA_DRILL_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def _start_sink(p: Pipeline) -> subprocess.Popen:
    from pipeline.store import api

    log = p.root / f"sink-{len(p.logs)}.log"
    p.logs.append(log)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "sink", "--loglevel", "info"], env=p.env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    p.workers.append(proc)
    _wait(lambda: api.find(p.settings()) is not None and proc.poll() is None, 90, "sink API", p)
    return proc


def test_broker_sigkilled_mid_stream_and_restarted_on_its_port_the_worker_recovers_by_itself(
        tmp_path: Path, faust_store: str) -> None:
    lk = LocalKafka(tmp_path / "own-kafka")
    addr = lk.up()
    p = Pipeline(tmp_path, lk, MAILSLA_KAFKA_SESSION_TIMEOUT_S=str(SESSION_S), MAILSLA_STORE=faust_store)
    try:
        # enough input that the join (batched: ~10k events/s) is still working when Kafka goes away
        traffic = _traffic(p, tmp_path, 80, 900, 11)
        worker = p.start_worker()
        replay_log = tmp_path / "replay.err"
        replay = subprocess.Popen([sys.executable, "-m", "pipeline", "replay", str(traffic)], env=p.env,
                                  stdout=subprocess.PIPE, stderr=open(replay_log, "wb"))
        _wait(lambda: _processed(p) > 2000, 120, "join progress", p)
        unread = _events(traffic) - _processed(p)
        os.kill(lk.pid(), signal.SIGKILL)  # type: ignore[arg-type]
        killed_at, log_size = time.monotonic(), p.logs[0].stat().st_size
        assert unread > 0, "the join had read everything before the broker went: the drill proves nothing"
        time.sleep(OUTAGE_S)
        log_rate = (p.logs[0].stat().st_size - log_size) / (time.monotonic() - killed_at)
        restart = time.monotonic()
        assert lk.up() == addr, "the broker must come back on its recorded port"
        up_at = time.monotonic()
        before = _processed(p)
        out, _ = replay.communicate(timeout=180)
        err = replay_log.read_text()
        replay_rc = replay.returncode
        if replay_rc != 0:  # it died with the broker: one line saying how far it got, then a safe re-run
            assert "Traceback" not in err and "acknowledged" in err.splitlines()[-1], err
            assert json.loads(out.splitlines()[-1])["acknowledged"] >= 0
            p.cli("replay", str(traffic))
        _wait(lambda: _processed(p) > before, 180, "join progress after the restart", p)
        progress_at = time.monotonic()
        p.wait_idle(timeout=300)
        idle_at = time.monotonic()
        assert worker.poll() is None, "the worker exited: " + p.log_tails()
        _assert_exact(p, traffic)
        join_reread, sink_reread = _reread(p)
        # and SIGTERM while Kafka is down: the worker ends by itself (the watchdog bounds it)
        os.kill(lk.pid(), signal.SIGKILL)  # type: ignore[arg-type]
        time.sleep(3)
        sigterm_s = _sigterm(worker, p)
        _report("broker_sigkill", outage_s=OUTAGE_S, broker_restart_s=up_at - restart,
                first_progress_s=progress_at - up_at, idle_s=idle_at - up_at, replay_rc=replay_rc,
                replay_said=repr(err.splitlines()[-1][:160]) if replay_rc else "-",
                join_reread=join_reread, sink_reread=sink_reread, log_bytes_per_s=log_rate,
                sigterm_kafka_down_s=sigterm_s, sigterm_rc=worker.returncode)
    finally:
        p.stop(signal.SIGKILL)
        lk.down()


def _mount_tmpfs(path: Path, size_mb: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                           capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        r = None
    need(r is not None, "no mount command (Debian's mount package): this drill needs a tmpfs for the ClickHouse files")
    need(r.returncode == 0, f"cannot mount a tmpfs ({r.stderr.strip()[:200]}): this drill needs root (CI runs as root)")


def _fill(path: Path) -> int:
    """Write one file until the file system is full; returns its size."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                n += f.write(chunk)
        except OSError:
            pass
        try:
            while True:  # the last bytes too, so no insert fits
                n += f.write(b"\0" * 4096)
        except OSError:
            pass
    return n


def test_clickhouse_writes_failing_for_a_while_then_recovering(pipeline: Pipeline, tmp_path: Path) -> None:
    mnt = tmp_path / "chfs"
    _mount_tmpfs(mnt, 128)
    try:
        pipeline.env.update(MAILSLA_CLICKHOUSE=f"chdb://{mnt}/clickhouse", MAILSLA_FAULT_INTERVAL_S="0")
        traffic = _traffic(pipeline, tmp_path, 5, 900, 12)
        worker = pipeline.start_worker()
        filled = _fill(mnt / "filler")
        pipeline.cli("replay", str(traffic))
        _wait(lambda: sum(s.get("write_failures", 0) for s in _status_files(pipeline, "sink")) > 0, 120,
              "failing ClickHouse writes", pipeline)
        time.sleep(OUTAGE_S)
        failures = sum(s.get("write_failures", 0) for s in _status_files(pipeline, "sink"))
        (mnt / "filler").unlink()
        freed_at = time.monotonic()
        pipeline.wait_idle(timeout=300)
        idle_at = time.monotonic()
        assert worker.poll() is None, "the worker exited: " + pipeline.log_tails()
        _assert_exact(pipeline, traffic)
        join_reread, sink_reread = _reread(pipeline)
        # and SIGTERM while a write keeps failing: gone within the documented 20 s, nothing committed
        _fill(mnt / "filler")
        more = _traffic(pipeline, tmp_path, 2, 120, 99)
        pipeline.cli("replay", str(more))
        failing = sum(s.get("write_failures", 0) for s in _status_files(pipeline, "sink"))
        _wait(lambda: sum(s.get("write_failures", 0) for s in _status_files(pipeline, "sink")) > failing, 120,
              "failing ClickHouse writes again", pipeline)
        sigterm_s = _sigterm(worker, pipeline)
        _report("clickhouse_disk_full", outage_s=OUTAGE_S, filled_mb=filled >> 20, write_failures=failures,
                idle_s=idle_at - freed_at, join_reread=join_reread, sink_reread=sink_reread,
                sigterm_write_failing_s=sigterm_s, sigterm_rc=worker.returncode)
    finally:
        pipeline.stop(signal.SIGKILL)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_sink_sigkilled_in_the_middle_of_a_flush_then_restarted(pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline.env.update(MAILSLA_BATCH_ROWS="2000", MAILSLA_BATCH_MS="300")
    traffic = _traffic(pipeline, tmp_path, 20, 900, 13)
    pipeline.start_worker("--no-sink")
    sink = _start_sink(pipeline)
    pipeline.cli("replay", str(traffic))
    status = Path(pipeline.env["MAILSLA_DATA"]) / "run" / f"sink-{sink.pid}.json"

    def mid_flush() -> bool:  # its status file says a batch is being written (after at least one)
        try:
            st = json.loads(status.read_text())
        except (OSError, ValueError):
            return False
        return bool(st.get("flushing")) and st.get("written", 0) > 0

    deadline = time.monotonic() + 120
    while not mid_flush():
        assert time.monotonic() < deadline, "the sink never wrote\n" + pipeline.log_tails()
        time.sleep(0.005)
    sink.send_signal(signal.SIGKILL)
    sink.wait()
    unfinished = pipeline.rows("SELECT batch_id FROM mailsla.sink_journal GROUP BY batch_id "
                               "HAVING countIf(state = 'done') = 0")
    restart = time.monotonic()
    _start_sink(pipeline)
    pipeline.wait_idle(timeout=300)
    idle_at = time.monotonic()
    _assert_exact(pipeline, traffic)
    join_reread, sink_reread = _reread(pipeline)
    _report("sink_sigkill", unfinished_batches_at_kill=len(unfinished), idle_s=idle_at - restart,
            join_reread=join_reread, sink_reread=sink_reread)


def test_worker_frozen_longer_than_its_session_timeout_rejoins_and_finishes_exact(pipeline: Pipeline,
                                                                                    tmp_path: Path) -> None:
    pipeline.env.update(MAILSLA_KAFKA_SESSION_TIMEOUT_S=str(SESSION_S))
    traffic = _traffic(pipeline, tmp_path, 20, 900, 14)
    worker = pipeline.start_worker()
    pipeline.cli("replay", str(traffic))
    _wait(lambda: _processed(pipeline) > 2000, 120, "join progress", pipeline)
    frozen = SESSION_S * 2 + 2
    worker.send_signal(signal.SIGSTOP)
    assert _events(traffic) > _processed(pipeline), "the join had read everything before the freeze"
    time.sleep(frozen)
    before = _processed(pipeline)
    worker.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    pipeline.wait_idle(timeout=300)
    idle_at = time.monotonic()
    assert worker.poll() is None, "the worker exited: " + pipeline.log_tails()
    _assert_exact(pipeline, traffic)
    join_reread, sink_reread = _reread(pipeline)
    sink = _status_files(pipeline, "sink")
    _report("worker_sigstop", frozen_s=float(frozen), processed_before=before, idle_s=idle_at - resumed,
            join_reread=join_reread, sink_reread=sink_reread,
            sink_commit_failures=sum(s.get("commit_failures", 0) for s in sink),
            sink_assignments=sum(s.get("assignments", 0) for s in sink))


def test_results_kafka_never_took_stop_the_worker_and_a_restart_is_exact(tmp_path: Path, faust_store: str) -> None:
    """The last resort. Kafka away for longer than the producer keeps records (here 5 s; by default
    Faust's 1200 s): outputs of processed input are lost, which Faust only logs. The worker must
    not commit that input: it exits non-zero, and its restart (a supervisor's) processes it again."""
    lk = LocalKafka(tmp_path / "own-kafka")
    addr = lk.up()
    p = Pipeline(tmp_path, lk, MAILSLA_KAFKA_SESSION_TIMEOUT_S=str(SESSION_S), MAILSLA_PRODUCER_TIMEOUT_S="5",
                 MAILSLA_STORE=faust_store)
    try:
        # enough input that the join (batched: ~10k events/s) is still working when Kafka goes away
        traffic = _traffic(p, tmp_path, 80, 900, 15)
        worker = p.start_worker()
        p.cli("replay", str(traffic))
        _wait(lambda: _processed(p) > 2000, 120, "join progress", p)
        unread = _events(traffic) - _processed(p)
        os.kill(lk.pid(), signal.SIGKILL)  # type: ignore[arg-type]
        killed = time.monotonic()
        assert unread > 0, "the join had read everything before the broker went: the drill proves nothing"
        worker.wait(120)
        exited_s = time.monotonic() - killed
        assert worker.returncode not in (0, None), p.log_tails()
        assert "not delivered" in p.logs[0].read_text(errors="replace"), p.log_tails()
        assert lk.up() == addr
        restart = time.monotonic()
        p.start_worker()  # what a supervisor does
        p.wait_idle(timeout=300)
        idle_at = time.monotonic()
        _assert_exact(p, traffic)
        _report("undeliverable_results", producer_timeout_s=5.0, worker_exit_after_kill_s=exited_s,
                worker_rc=worker.returncode, idle_after_restart_s=idle_at - restart)
    finally:
        p.stop(signal.SIGKILL)
        lk.down()
