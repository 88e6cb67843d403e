"""Helpers of the tests that run real Postfix and Exim instances (issue #19).

`need(reason)`: a test whose MTA package is missing is skipped with the one-line reason naming
the package; in CI (CI=true) it fails instead, so a broken `make install-mta` cannot pass unseen.
`submit` sends one message with smtplib and returns the queue id from the MTA's own 250 reply
(`queued as QID` / `id=ID`) and when it came: the truth the rows are checked against.
"""
from __future__ import annotations

import gzip
import re
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import needs
from conftest import Pipeline


def need(reason: str | None) -> None:
    """Go on if the MTA is there (`reason` None: `postfixlab.missing()` / `eximlab.missing()`);
    else skip outside CI, fail in it (tests/needs.py)."""
    needs.need(reason is None, reason or "")


def submit(port: int, sender: str, rcpt: str, *, login: tuple[str, str] | None = None,
           headers: dict[str, str] | None = None, session: smtplib.SMTP | None = None) -> tuple[str, float]:
    """One message; (queue id from the 250 reply, time.time() right after the 250)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, rcpt, "mailsla test"
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content("hello\n")
    s = session or smtplib.SMTP("127.0.0.1", port, "client.test", timeout=60)
    try:
        if session is None:
            s.ehlo()
            if login:
                s.login(*login)
        s.mail(sender)
        code, _ = s.rcpt(rcpt)
        if code != 250:
            raise smtplib.SMTPRecipientsRefused({rcpt: (code, b"")})
        code, reply = s.data(msg.as_bytes())
        at = time.time()
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
    finally:
        if session is None:
            s.quit()
    m = re.search(rb"queued as (\w+)|id=([\w-]+)", reply)
    assert m, reply
    return (m.group(1) or m.group(2)).decode(), at


def session(port: int, login: tuple[str, str] | None = None) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, "client.test", timeout=60)
    s.ehlo()
    if login:
        s.login(*login)
    return s


def log_lines(log: Path) -> list[str]:
    """The log and its rotations (plain and .gz), oldest first."""
    files = sorted(log.parent.glob(log.name + ".*"), key=lambda p: p.stat().st_mtime) + [log]
    out: list[str] = []
    for f in files:
        if f.exists():
            opener = gzip.open if f.suffix == ".gz" else open
            with opener(f, "rt", errors="replace") as fh:  # type: ignore[operator]
                out += fh.read().splitlines()
    return out


def postfix_first_delays(log: Path) -> dict[str, float]:
    """Queue id -> the first field of `delays=` on its first delivery attempt: Postfix's own time
    before the queue manager, read here with a plain regex, independent of the ingest."""
    out: dict[str, float] = {}
    pat = re.compile(r"postfix/\w+\[\d+\]: (\w+): to=<[^>]*>, .*?delays=([\d.]+)/")
    for line in log_lines(log):
        m = pat.search(line)
        if m and m.group(1) not in out:
            out[m.group(1)] = float(m.group(2))
    return out


class IngestProc:
    """`mailsla ingest MTA LOG --config CFG` as a child of the test, with the pipeline's settings."""

    def __init__(self, pipeline: Pipeline, mta: str, log: Path, config: Path, *extra: str) -> None:
        self.pipeline, self.args = pipeline, ["ingest", mta, str(log), "--config", str(config), *extra]
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> "IngestProc":
        out = self.pipeline.root / f"ingest-{self.runs}.log"
        self.pipeline.logs.append(out)
        self.runs += 1
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", *self.args], env=self.pipeline.env,
                                     stdout=open(out, "wb"), stderr=subprocess.STDOUT)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(60)

    def status(self) -> dict[str, Any]:
        """This process's own status file (run/ingest-<pid>.json)."""
        assert self.proc is not None
        import json

        path = Path(self.pipeline.env["MAILSLA_DATA"]) / "run" / f"ingest-{self.proc.pid}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def counters(self) -> dict[str, Any]:
        logs = self.status().get("logs") or [{}]
        return logs[0]

    def wait(self, cond: Any, timeout: float = 120, what: str = "") -> dict[str, Any]:
        """Until cond(counters of the log) holds; fails with the last counters otherwise."""
        deadline, c = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.pipeline.log_tails()
            c = self.counters()
            if c and cond(c):
                return c
            time.sleep(0.3)
        raise AssertionError(f"ingest: {what} not reached in {timeout}s: {c}")


def wait_rows(pipeline: Pipeline, where: str, n: int, timeout: float = 180) -> list[dict[str, Any]]:
    """Until handling_times has `n` rows matching `where` (or more); returns them."""
    deadline, got = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        got = pipeline.rows(f"SELECT * FROM mailsla.handling_times WHERE {where}")
        if len(got) >= n:
            return got
        time.sleep(1.0)
    raise AssertionError(f"{len(got)} of {n} rows where {where} after {timeout}s")


class Traffic:
    """Steady mail in the background: `smtp-source` bursts of `burst` messages every `every` s."""

    def __init__(self, port: int, burst: int = 5, every: float = 0.5, sender: str = "load@bulk.test") -> None:
        import threading

        self.port, self.burst, self.every, self.sender = port, burst, every, sender
        self.sent = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            proc = subprocess.run(["smtp-source", "-m", str(self.burst), "-s", "1", "-f", self.sender,
                                   "-t", "rcpt@dest.test", f"127.0.0.1:{self.port}"], capture_output=True, text=True)
            if proc.returncode == 0:
                self.sent += self.burst
            else:
                self.errors.append(proc.stderr.strip()[:300])
            self._stop.wait(max(0.0, self.every - (time.monotonic() - t)))

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
