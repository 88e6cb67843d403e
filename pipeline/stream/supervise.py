"""`mailsla worker --processes N`: N join processes in the app's group and one sink process.

The join is CPU-bound in one Python process (Faust, the join itself); Kafka spreads the
input partitions over the group's members, so N processes use N cores. The embedded
ClickHouse allows one writer, so exactly one sink process owns it (and serves the local
API the CLI uses). This parent only supervises:

- it forwards SIGTERM and SIGINT to every child and exits 0 once they all exited 0
  (1 if any did not);
- a join process that dies on its own is logged and started again after a backoff
  (1 s, doubling to 60 s; reset after a minute up); the restarts are counted in
  `$MAILSLA_DATA/run/supervisor-<pid>.json`, which `mailsla status` shows with every
  process;
- the sink process is restarted the same way.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.config import Settings
from pipeline.stream.statusfile import write_json_atomic

log = logging.getLogger("mailsla.supervisor")


@dataclass
class Child:
    name: str
    args: list[str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 0.5  # doubled before each restart: 1 s first
    due_at: float = 0.0  # when to start it again after it died
    exits: list[int] = field(default_factory=list)


def _spawn(child: Child, log_dir: Path | None) -> None:
    out = open(log_dir / f"{child.name}.log", "ab") if log_dir else None  # noqa: SIM115 - the child keeps it
    child.proc = subprocess.Popen([sys.executable, "-m", "pipeline", *child.args], stdout=out,
                                  stderr=subprocess.STDOUT if out else None, stdin=subprocess.DEVNULL)
    child.started_at = time.monotonic()


def _write_status(path: Path, children: list[Child]) -> None:
    doc = {"pid": os.getpid(), "at": time.time(), "processes": [
        {"name": c.name, "pid": c.proc.pid if c.proc else None,
         "alive": bool(c.proc and c.proc.poll() is None), "restarts": c.restarts, "exits": c.exits[-5:]}
        for c in children]}
    write_json_atomic(path, doc)


def run(settings: Settings, processes: int, loglevel: str = "warning", log_dir: Path | None = None,
        poll_s: float = 0.5) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    children = [Child(f"join-{i}", ["worker", "--no-sink", "--loglevel", loglevel]) for i in range(processes)]
    children.append(Child("sink", ["sink", "--loglevel", loglevel]))
    status = settings.data_dir / "run" / f"supervisor-{os.getpid()}.json"
    stopping: list[int] = []
    if log_dir:
        log_dir.mkdir(parents=True, exist_ok=True)

    def on_signal(signum: int, _frame: object) -> None:
        if not stopping:
            log.info("signal %d: stopping %d processes", signum, len(children))
        stopping.append(signum)
        for c in children:
            if c.proc and c.proc.poll() is None:
                c.proc.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for c in children:
        _spawn(c, log_dir)
    log.info("started %s", ", ".join(f"{c.name} (pid {c.proc.pid})" for c in children if c.proc))
    last_status = 0.0
    while True:
        now = time.monotonic()
        for c in children:
            code = c.proc.poll() if c.proc else None
            if stopping:
                continue
            if c.proc is not None and code is not None:  # died on its own
                c.exits.append(code)
                c.proc = None
                up = now - c.started_at
                c.backoff_s = 1.0 if up > 60 else min(c.backoff_s * 2, 60.0)
                c.due_at = now + c.backoff_s
                log.warning("%s exited with %d after %.0f s; starting it again in %.0f s",
                            c.name, code, up, c.backoff_s)
            if c.proc is None and now >= c.due_at:
                c.restarts += 1
                _spawn(c, log_dir)
                log.info("%s started again (pid %d, restart %d)", c.name, c.proc.pid, c.restarts)  # type: ignore[union-attr]
        if stopping and all(c.proc is None or c.proc.poll() is not None for c in children):
            break
        if now - last_status >= 2.0:
            _write_status(status, children)
            last_status = now
        time.sleep(poll_s)
    codes = [c.proc.returncode for c in children if c.proc]
    _write_status(status, children)
    log.info("all processes stopped: %s", codes)
    return 0 if all(code == 0 for code in codes) else 1
