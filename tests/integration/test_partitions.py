"""Partitions added to the keyed inputs mid-stream are refused, not joined wrong (issue #20).

Growing a keyed topic in place moves keys: a message accepted on one partition may have its
queue-ready event hashed to another that holds none of its state. The worker stops at once with
one line (log, status file, the sink's /healthz), reads nothing from the new partitions, and
refuses to start again, as do `replay` and `ingest`; what it joined before stays exact.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from test_join_live import _assert_exact, _join_status

pytestmark = pytest.mark.integration

LINE = "keyed topics cannot change their partition count in place"


async def _grow(bootstrap: str, topics: list[str], n: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({t: NewPartitions(total_count=n) for t in topics})
    finally:
        await admin.close()


async def _send(bootstrap: str, topic: str, partition: int, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"grown-1", partition=partition)
    finally:
        await producer.stop()


def test_partitions_added_mid_stream_stop_the_worker_with_one_line_and_nothing_is_joined_wrong(
        pipeline, tmp_path: Path) -> None:
    traffic = tmp_path / "traffic.jsonl"
    pipeline.cli("generate", "--rate", "10", "--duration", "600", "--seed", "11",
                 "--start", "2026-10-31T23:55:00Z", "--out", str(traffic))
    worker = pipeline.start_worker()
    pipeline.cli("replay", str(traffic))
    pipeline.wait_idle(timeout=300)
    env = pipeline.env
    bootstrap, acc, ready = env["MAILSLA_KAFKA"], env["MAILSLA_TOPIC_ACCEPTED"], env["MAILSLA_TOPIC_QUEUE_READY"]
    grown = int(env["MAILSLA_PARTITIONS"]) * 2
    asyncio.run(_grow(bootstrap, [acc, ready], grown))
    event = {"message_id": "grown-1", "account_id": "a", "message_class": "transactional",
             "accepted_at": "2026-11-01T00:10:00.000Z"}
    asyncio.run(_send(bootstrap, acc, grown - 1, json.dumps(event).encode()))
    status = _join_status(pipeline, worker.pid)
    deadline = time.monotonic() + 300  # the consumer's metadata (30 s), then a rebalance
    while worker.poll() is None:
        assert time.monotonic() < deadline, pipeline.log_tails()
        time.sleep(0.5)
    assert worker.returncode != 0
    assert LINE in (status().get("failure") or ""), status()
    log = (pipeline.root / "worker-0.log").read_text(errors="replace")
    assert LINE in log, pipeline.log_tails()
    pipeline.workers.clear()
    again = pipeline.cli("worker", check=False, timeout=120)  # a restart refuses at once
    assert again.returncode == 2 and LINE in again.stderr and len(again.stderr.strip().splitlines()) == 1, again.stderr
    more = pipeline.cli("replay", str(traffic), check=False)
    assert more.returncode == 2 and LINE in more.stderr, more.stderr
    _assert_exact(pipeline, traffic)  # what was joined before stays; grown-1 was never joined
    assert pipeline.rows("SELECT count() AS n FROM mailsla.handling_times WHERE message_id = 'grown-1'") == [{"n": 0}]
