"""Child processes of the demo and the benchmark: start, wait, stop.

Used only by commands that orchestrate a whole local pipeline; each child is
a normal `mailsla` command, so what the demo runs is what a user runs.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


def spawn(args: list[str], env: dict[str, str], log: Path | None, cpus: str | None = None) -> subprocess.Popen:
    """`mailsla ARGS` as a child; `cpus` (a taskset list, e.g. "0") pins it and its threads there
    (taskset execs the command: the child's pid is the command's)."""
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab") if log else subprocess.DEVNULL
    pin = ["taskset", "-c", cpus] if cpus is not None else []
    return subprocess.Popen([*pin, sys.executable, "-m", "pipeline", *args], env=env, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen, timeout: float = 60.0) -> int:
    """SIGTERM (the worker flushes and commits), SIGKILL after `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_for(cond: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return False


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def child_env(**overrides: str) -> dict[str, str]:
    return {**os.environ, **overrides}
