"""Outages seen from the command line: Kafka or a ClickHouse server that does not answer is one
line and exit 2 for every command; a replay whose broker dies part-way says how many records
were acknowledged, in one line, and exits 1; the local broker keeps its port."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from pipeline import cli
from pipeline.ops import replay as replay_mod
from pipeline.ops.localkafka import LocalKafka, PortTaken


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.parametrize("args", [("worker",), ("sink",), ("status",), ("replay", "{file}"),
                                  ("accounts", "load", "{accounts}"),
                                  ("maintenance", "add", "--start", "2026-11-03T02:00:00Z",
                                   "--end", "2026-11-03T04:00:00Z"),
                                  ("generate", "--rate", "1", "--duration", "1")])
def test_kafka_not_there_is_one_line_and_exit_2(args: tuple[str, ...], tmp_path: Path) -> None:
    f = tmp_path / "a.jsonl"
    f.write_text('{"message_id": "m", "account_id": "a", "message_class": "campaign", '
                 '"accepted_at": "2026-10-01T00:00:00Z"}\n')
    acc = tmp_path / "acc.jsonl"
    acc.write_text('{"account_id": "a", "first_send_at": "2026-01-01T00:00:00Z"}\n')
    args = tuple(a.format(file=f, accounts=acc) for a in args)
    env = {**os.environ, "MAILSLA_DATA": str(tmp_path / "data"), "MAILSLA_KAFKA": f"127.0.0.1:{_dead_port()}"}
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Kafka" in lines[0], proc.stderr


def test_a_clickhouse_server_not_there_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "MAILSLA_DATA": str(tmp_path / "data"),
           "MAILSLA_CLICKHOUSE": f"http://u:secret@127.0.0.1:{_dead_port()}/mailsla"}
    proc = subprocess.run([sys.executable, "-m", "pipeline", "sql", "SELECT 1"], capture_output=True, text=True,
                          timeout=120, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "cannot reach ClickHouse" in lines[0], proc.stderr
    assert "secret" not in proc.stderr


class _DyingProducer:
    """Acknowledges the first `good` records, then the broker is gone: later deliveries time out."""

    def __init__(self, good: int) -> None:
        self.good, self.sent = good, 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        self.sent += 1
        fut = asyncio.get_running_loop().create_future()
        if self.sent <= self.good:
            fut.set_result(None)
        else:
            fut.set_exception(KafkaTimeoutError("Batch for TopicPartition(t, 0) expired"))
        return fut


def test_a_replay_whose_broker_dies_says_how_far_it_got_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text("".join(json.dumps({"message_id": f"m{i}", "account_id": "a", "message_class": "campaign",
                                     "accepted_at": "2026-10-01T00:00:00Z"}) + "\n" for i in range(12000)))

    async def no_topics(_: Any) -> None:
        return None
    monkeypatch.setattr(replay_mod, "ensure_topics", no_topics)
    monkeypatch.setattr(replay_mod, "producer", lambda settings, **kw: _DyingProducer(7000))
    monkeypatch.setenv("MAILSLA_DATA", str(tmp_path / "data"))
    rc = cli.main(["replay", str(f)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "after 7000 of 10000 records produced were acknowledged" in err
    doc = json.loads(out.strip().splitlines()[-1])
    # 10,000 handed to the producer when the second lot of 5,000 failed; 7,000 of them acknowledged
    assert doc["acknowledged"] == 7000 and "expired" in doc["error"]


def test_the_broker_waits_for_its_recorded_port_then_says_it_is_taken(tmp_path: Path) -> None:
    lk = LocalKafka(tmp_path / "kafka")
    lk.home.mkdir(parents=True)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        (lk.home / "ports.json").write_text(json.dumps({"broker": port, "controller": _dead_port()}))
        with pytest.raises(PortTaken, match=f"port {port} .* still in use"):
            lk._ports(wait_s=0.5)  # noqa: SLF001
    assert lk._ports(wait_s=0.5)["broker"] == port  # noqa: SLF001 - free again: the same port, not a new one


def test_a_port_with_connections_in_time_wait_counts_as_free(tmp_path: Path) -> None:
    """What a SIGKILLed broker leaves behind: the listener is gone, accepted connections linger.
    The broker's listener sets SO_REUSEADDR (the JVM's default on Linux), as here."""
    from pipeline.ops.localkafka import _port_free

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # the server side closes first: its end goes to TIME_WAIT
    client.close()
    srv.close()
    assert _port_free(port)
    with socket.socket() as plain:  # the old check, without SO_REUSEADDR, took it for taken
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
