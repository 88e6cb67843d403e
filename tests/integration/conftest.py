"""Integration fixtures: one real Kafka broker per session, a fresh pipeline per test.

Each test gets its own data dir (so its own embedded ClickHouse, owned by the
worker subprocess), its own topic names and consumer group ids. On failure the
broker's and the worker's log tails are printed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from pipeline.ops.localkafka import LocalKafka
from stores import default_store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    lk = LocalKafka(tmp_path_factory.mktemp("kafka-session") / "kafka")
    lk.up()
    yield lk
    lk.down()


class Pipeline:
    """One isolated pipeline: env, worker subprocess, CLI helpers."""

    def __init__(self, root: Path, kafka: LocalKafka, **overrides: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.root = root
        self.env = {
            **os.environ,
            "MAILSLA_DATA": str(root / "data"),
            "MAILSLA_KAFKA": kafka.bootstrap() or "",
            "MAILSLA_APP_ID": f"t-{tag}",
            "MAILSLA_TOPIC_ACCEPTED": f"t-{tag}.accepted",
            "MAILSLA_TOPIC_QUEUE_READY": f"t-{tag}.queue_ready",
            "MAILSLA_TOPIC_DEAD_LETTERS": f"t-{tag}.dead_letters",
            "MAILSLA_TOPIC_RESULTS": f"t-{tag}.results",
            "MAILSLA_TOPIC_TICKS": f"t-{tag}.ticks",
            "MAILSLA_TOPIC_ACCOUNTS": f"t-{tag}.accounts",
            "MAILSLA_TOPIC_MAINTENANCE": f"t-{tag}.maintenance",
            "MAILSLA_TOPIC_FAULTS": f"t-{tag}.faults",
            "MAILSLA_TOPIC_INJECTIONS": f"t-{tag}.injections",
            "MAILSLA_TOPIC_PROBES": f"t-{tag}.probes",
            "MAILSLA_PARTITIONS": "4",
            "MAILSLA_IDLE_GRACE_S": "0",
            "MAILSLA_BATCH_MS": "200",
            "MAILSLA_API_PORT": "0",  # tests run one after another: never fight over a fixed port
            **overrides,
        }
        self.workers: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def settings(self) -> Any:
        from pipeline.core import config

        old = dict(os.environ)
        os.environ.update(self.env)
        try:
            return config.load()
        finally:
            os.environ.clear()
            os.environ.update(old)

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "pipeline", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"mailsla {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args).stdout)

    def start_worker(self, *extra: str) -> subprocess.Popen:
        log = self.root / f"worker-{len(self.workers)}.log"
        self.logs.append(log)
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "worker", "--loglevel", "info", *extra],
                                env=self.env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        self.workers.append(proc)
        if "--no-sink" not in extra:  # the sink owns the database once its API is up
            from pipeline.store import api

            deadline = time.monotonic() + 90
            while api.find(self.settings()) is None:
                assert proc.poll() is None and time.monotonic() < deadline, self.log_tails()
                time.sleep(0.3)
        return proc

    def wait_idle(self, timeout: float = 240, quiet_checks: int = 2) -> dict[str, Any]:
        """Until status shows everything received is in ClickHouse (twice in a row)."""
        deadline, zeros, st = time.monotonic() + timeout, 0, {}
        while time.monotonic() < deadline:
            st = self.json("status", "--json")
            zeros = zeros + 1 if st["total_lag"] == 0 and st["pending_writes"] == 0 else 0
            if zeros >= quiet_checks:
                return st
            time.sleep(1.0)
        raise AssertionError(f"pipeline not idle after {timeout}s: {st}")

    def wait_lag_below(self, records: int, timeout: float = 120) -> dict[str, Any]:
        """Until `status` shows fewer than `records` input records unread (for killing a worker
        in the middle of a replay); returns the last status, whether or not it got there."""
        deadline, st = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            st = self.json("status", "--json")
            if st["input_lag"] < records:
                break
            time.sleep(0.3)
        return st

    def rows(self, sql: str) -> list[dict[str, Any]]:
        return self.json("sql", sql, "--format", "json")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> list[int | None]:
        codes = []
        for w in self.workers:
            if w.poll() is None:
                w.send_signal(sig)
                try:
                    w.wait(timeout)
                except subprocess.TimeoutExpired:
                    w.kill()
                    w.wait()
            codes.append(w.returncode)
        self.workers = []
        return codes

    def topic_records(self, topic: str, n: int, timeout_s: float = 30) -> list[dict[str, Any]]:
        """The first `n` JSON records of `topic` (fewer if fewer arrive within the timeout)."""
        from aiokafka import AIOKafkaConsumer

        async def go() -> list[dict[str, Any]]:
            c = AIOKafkaConsumer(topic, bootstrap_servers=self.env["MAILSLA_KAFKA"], auto_offset_reset="earliest",
                                 enable_auto_commit=False)
            await c.start()
            out: list[dict[str, Any]] = []
            try:
                deadline = time.monotonic() + timeout_s
                while len(out) < n and time.monotonic() < deadline:
                    batch = await c.getmany(timeout_ms=500)
                    out += [json.loads(r.value) for rs in batch.values() for r in rs]
            finally:
                await c.stop()
            return out
        import asyncio

        return asyncio.run(go())

    def log_tails(self, n: int = 60) -> str:
        out = []
        for log in self.logs:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            out.append(f"--- {log.name}\n" + "\n".join(lines[-n:]))
        return "\n".join(out)


@pytest.fixture
def faust_store(request: pytest.FixtureRequest) -> str:
    """MAILSLA_STORE of the test's workers: each of `stores.STORES` in modules marked `both_stores`,
    else what the environment says (default memory://)."""
    return getattr(request, "param", None) or default_store()


@pytest.fixture
def pipeline(request: pytest.FixtureRequest, tmp_path: Path, kafka: LocalKafka, faust_store: str) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path, kafka, MAILSLA_STORE=faust_store)
    yield p
    p.stop(signal.SIGKILL)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n=== broker log tail ({kafka.log_file})\n{kafka.log_tail(60)}")
        print(f"=== worker logs\n{p.log_tails()}")


@pytest.fixture(scope="session")
def new_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`new_store(name)`: a migrated embedded ClickHouse store in a fresh data dir (no Kafka), for
    tests that write rows straight into the tables and read the views back."""
    def make(name: str) -> Any:
        from pipeline.core import config
        from pipeline.store.clickhouse import Store

        os.environ["MAILSLA_DATA"] = str(tmp_path_factory.mktemp(name))
        try:
            s = config.load()
        finally:
            del os.environ["MAILSLA_DATA"]
        st = Store(s)
        st.migrate()
        return st
    return make
