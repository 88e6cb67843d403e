"""The sink's flush: a failing ClickHouse write is retried, and offsets are committed
only after the rows are in; at shutdown it gives up without committing."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from pipeline.config import load
from pipeline.writer import ResultWriter


class FlakyStore:
    def __init__(self, failures: int) -> None:
        self.failures, self.calls, self.written = failures, 0, []

    def write(self, rows: list[dict[str, Any]]) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("Code: 60. DB::Exception: Table mailsla.handling_times_raw is detached")
        self.written += rows
        return len(rows)


class Consumer:
    def __init__(self, store: FlakyStore) -> None:
        self.store, self.commits_seen = store, []

    async def commit(self) -> None:
        self.commits_seen.append(len(self.store.written))


def _writer(store: FlakyStore) -> tuple[ResultWriter, Consumer]:
    w = ResultWriter(replace(load(), batch_rows=10))
    w.store = store  # type: ignore[assignment]
    w.consumer = Consumer(store)  # type: ignore[assignment]
    return w, w.consumer  # type: ignore[return-value]


def test_a_failing_write_is_retried_and_committed_only_after_it_succeeds(monkeypatch) -> None:
    async def no_sleep(_: float) -> None:
        return None
    monkeypatch.setattr("pipeline.writer.asyncio.sleep", no_sleep)
    store = FlakyStore(failures=3)
    w, consumer = _writer(store)
    w.buffer = [{"k": "m", "n": i} for i in range(5)]
    asyncio.run(w.flush())
    assert store.calls == 4 and len(store.written) == 5
    assert consumer.commits_seen == [5] and w.buffer == []


def test_at_shutdown_a_write_that_keeps_failing_commits_nothing(monkeypatch) -> None:
    async def no_sleep(_: float) -> None:
        return None
    monkeypatch.setattr("pipeline.writer.asyncio.sleep", no_sleep)
    store = FlakyStore(failures=10**9)
    w, consumer = _writer(store)
    w.buffer = [{"k": "m"}]
    asyncio.run(w.flush(give_up_after=0.0))
    assert consumer.commits_seen == [] and store.written == []
