"""`mailsla ingest` saves a log's position only after Kafka acknowledged every event read before it
(pipeline/ops/ingest.py). Kafka is a stand-in here that holds its acknowledgements until told: the
integration tests run the real broker (tests/integration/test_ingest_postfix.py, the SIGKILL drill)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.core import config
from pipeline.core.mta import mapping
from pipeline.ops import ingest
from pipeline.ops.ingestbench import write_log


class HeldAcks:
    """The producer calls `Ingest` makes, each batch's future resolved only by `ack_all`."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future] = []
        self.records = 0

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    def create_batch(self) -> Any:
        outer = self

        class Builder:
            def append(self, **kw: Any) -> object:
                outer.records += 1
                return object()
        return Builder()

    async def send_batch(self, builder: Any, topic: str, partition: int) -> asyncio.Future:
        f = asyncio.get_running_loop().create_future()
        self.futures.append(f)
        return f

    def ack_all(self) -> None:
        for f in self.futures:
            if not f.done():
                f.set_result(None)


def test_the_position_moves_only_after_kafka_acknowledged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSLA_DATA", str(tmp_path / "data"))
    settings = config.load()
    fake = HeldAcks()

    async def no_topics(_s: Any) -> None: ...
    monkeypatch.setattr(ingest, "ensure_topics", no_topics)
    monkeypatch.setattr(ingest, "producer", lambda *_a, **_k: fake)
    log = tmp_path / "maillog"
    write_log(log, 200)
    cfg = mapping.parse({"timezone": "UTC", "postfix": {"handling": "delays"}})
    job = ingest.Ingest(settings, "postfix", [log], cfg, from_start=False, follow=True, host=None)
    saved = ingest.checkpoint_path(settings, "postfix", log)

    async def scenario() -> None:
        task = asyncio.create_task(job.run())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if fake.records:
                break
        await asyncio.sleep(0.5)
        assert fake.records == 400 and not saved.exists()  # read and sent, not acknowledged: nothing saved
        fake.ack_all()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if saved.exists():
                break
        doc = json.loads(saved.read_text())
        assert doc["position"]["offset"] == log.stat().st_size and doc["state"]["emitted"] == \
            {"accepted": 200, "queue_ready": 200}
        job.stopping = True
        assert await task == 0

    asyncio.run(scenario())
