"""`make demo-postfix` (`mailsla demo --mta postfix`): a real Postfix feeding the pipeline.

Starts the local Kafka, a worker, a private Postfix on loopback (pipeline/ops/postfixlab.py: as
root, with the Debian postfix package; relays to smtp-sink) and `mailsla ingest postfix` on its
log; sends a few thousand messages with Postfix's own `smtp-source`, stops the queue manager
(SIGSTOP) for a while in the middle, prints the live summary every 5 s and at the end the SLA and
the faults. The transactional threshold is cut to 20 s (MAILSLA_THRESHOLD_TRANSACTIONAL_MS) so the
stop is an incident within minutes. Stops everything it started; the data stay for `mailsla sql`.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

from pipeline.core.config import Settings
from pipeline.ops import procs
from pipeline.ops.demo import print_sla, summary
from pipeline.ops.localkafka import LocalKafka
from pipeline.store import api

THRESHOLD_MS = 20_000


def run(settings: Settings, duration: float, messages: int, pause: float) -> int:
    from pipeline.ops import postfixlab

    reason = postfixlab.missing()
    if reason:
        print(f"mailsla demo --mta postfix: {reason}")
        return 2
    lk = LocalKafka(settings.data_dir / "kafka")
    started_kafka = not lk.running()
    addr = lk.up()
    settings = replace(settings, kafka=addr, threshold_ms={**settings.threshold_ms, "transactional": THRESHOLD_MS})
    print(f"kafka       {addr}{' (started)' if started_kafka else ' (already running)'}")
    env = procs.child_env(MAILSLA_KAFKA=addr, MAILSLA_DATA=str(settings.data_dir),
                          MAILSLA_THRESHOLD_TRANSACTIONAL_MS=str(THRESHOLD_MS))
    worker = procs.spawn(["worker"], env, settings.data_dir / "worker.log")
    lab = postfixlab.PostfixLab(accounts={"demo@acme.test": "demo-pw"})
    ingest = None
    try:
        if not procs.wait_for(lambda: api.find(settings) is not None, 90):
            print(f"worker did not start; see {settings.data_dir / 'worker.log'}")
            return 1
        url = api.find(settings)
        lab.start()
        ingest = procs.spawn(["ingest", "postfix", str(lab.log)], env, settings.data_dir / "ingest.log")
        print(f"postfix     {lab.root} (smtpd 127.0.0.1:{lab.port}, relay smtp-sink :{lab.sink_port}), log {lab.log}")
        print(f"ingest      pid {ingest.pid}: `mailsla ingest postfix {lab.log}`")
        print(f"live page   {url}/   (transactional threshold {THRESHOLD_MS // 1000} s for the demo)")
        print(f"traffic     {messages} messages with smtp-source over {duration:.0f}s; the queue manager stops "
              f"for {pause:.0f}s a third of the way in (Ctrl-C stops early)\n")
        _traffic(settings, lab, url, duration, messages, pause)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        print("\ninterrupted: stopping")
    finally:
        lab.resume_qmgr()
    try:
        procs.wait_for(lambda: _ingested(settings), 60, 1.0)
        print_sla(settings)
        faults = subprocess.run([sys.executable, "-m", "pipeline", "faults", "--json"], env=env, capture_output=True,
                                text=True, timeout=120)
        for f in json.loads(faults.stdout or "[]"):
            print(f"fault       {f['kind']} {f['message_class']}: opened {f['opened_at']}, "
                  f"{'resolved ' + f['resolved_at'] if f['resolved_at'] else 'still open'}, "
                  f"peak {100 * f['peak_share']:.0f}% delayed")
    finally:
        if ingest is not None:
            procs.stop(ingest)
        procs.stop(worker)
        lab.remove()
        if started_kafka:
            lk.down()
    print(f"\nstopped. data left in {settings.data_dir}; try:\n"
          f"  .venv/bin/mailsla sql \"SELECT status, count(), max(handling_ms) FROM mailsla.handling_times "
          f"GROUP BY status\"")
    return 0


def _traffic(settings: Settings, lab: object, url: str, duration: float, messages: int, pause: float) -> None:
    """Bursts of smtp-source every second; the queue manager stopped for `pause` s at a third."""
    start, sent, paused_at = time.monotonic(), 0, None
    last: list[list[float]] = []  # the rate's window of samples (demo.summary)
    per_s = max(1, round(messages / max(1.0, duration)))
    next_print = start + 5
    while sent < messages:
        now = time.monotonic() - start
        if paused_at is None and now >= duration / 3:
            lab.pause_qmgr()  # type: ignore[attr-defined]
            paused_at = now
            print(f"--- queue manager stopped (SIGSTOP) at {now:.0f}s: mail is accepted, none becomes ready", flush=True)
        elif paused_at is not None and paused_at >= 0 and now >= paused_at + pause:
            lab.resume_qmgr()  # type: ignore[attr-defined]
            paused_at = -1.0
            print(f"--- queue manager resumed (SIGCONT) at {now:.0f}s", flush=True)
        n = min(per_s, messages - sent)
        lab.smtp_source(n, sessions=min(4, n))  # type: ignore[attr-defined]
        sent += n
        if time.monotonic() >= next_print:
            print(summary(settings, url, last), flush=True)
            next_print += 5
        time.sleep(max(0.0, start + now + 1 - time.monotonic()))
    print(f"--- {sent} messages sent", flush=True)


def _ingested(settings: Settings) -> bool:
    import asyncio

    from pipeline.stream.status import collect

    st = asyncio.run(collect(settings))
    return st["total_lag"] == 0 and all(log.get("bytes_behind") == 0 for i in st["ingest"] for log in i["logs"])
