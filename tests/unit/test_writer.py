"""The sink's flush: a failing ClickHouse write is retried, and offsets are committed
only after the rows are in; at shutdown it gives up without committing; a failed commit
(group rebalanced, member gone, coordinator down) never stops the sink."""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest
from aiokafka.errors import CommitFailedError, KafkaConnectionError

from pipeline.core.config import load
from pipeline.stream.writer import ResultWriter


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch) -> None:
    async def no_pause(self: ResultWriter, _: float) -> None:
        await asyncio.sleep(0)
    monkeypatch.setattr(ResultWriter, "_pause", no_pause)


class FlakyStore:
    def __init__(self, failures: int) -> None:
        self.failures, self.calls, self.written = failures, 0, []

    def close(self) -> None:
        return None

    def write(self, rows: list[dict[str, Any]]) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("Code: 60. DB::Exception: Table mailsla.handling_times_raw is detached")
        self.written += rows
        return len(rows)


class Consumer:
    def __init__(self, store: FlakyStore, fail: BaseException | None = None) -> None:
        self.store, self.commits_seen, self.fail, self.stopped = store, [], fail, False

    async def commit(self) -> None:
        if self.fail is not None:
            raise self.fail
        self.commits_seen.append(len(self.store.written))

    async def stop(self) -> None:
        self.stopped = True


def _writer(store: FlakyStore, **settings: Any) -> tuple[ResultWriter, Consumer]:
    w = ResultWriter(replace(load(), batch_rows=10, **settings))
    w.store = store  # type: ignore[assignment]
    w.consumer = Consumer(store)  # type: ignore[assignment]
    return w, w.consumer  # type: ignore[return-value]


def test_a_failing_write_is_retried_and_committed_only_after_it_succeeds() -> None:
    store = FlakyStore(failures=3)
    w, consumer = _writer(store)
    w.buffer = [{"k": "m", "n": i} for i in range(5)]
    asyncio.run(w.flush())
    assert store.calls == 4 and len(store.written) == 5
    assert consumer.commits_seen == [5] and w.buffer == []


def test_past_its_limit_a_write_that_keeps_failing_commits_nothing() -> None:
    store = FlakyStore(failures=10**9)
    w, consumer = _writer(store)
    w.buffer = [{"k": "m"}]
    asyncio.run(w.flush(give_up_at=time.monotonic()))
    assert consumer.commits_seen == [] and store.written == [] and w.buffer == [] and w.dropped == 1


@pytest.mark.parametrize("error", [CommitFailedError("group has already rebalanced"),
                                   KafkaConnectionError("broker down")])
def test_a_failed_commit_is_counted_and_the_sink_goes_on(error: BaseException) -> None:
    store = FlakyStore(failures=0)
    w, consumer = _writer(store)
    consumer.fail = error
    w.buffer = [{"k": "m"}] * 3
    asyncio.run(w.flush())  # no exception: the rows are in, the offsets will be read again
    assert len(store.written) == 3 and w.commit_failures == 1 and w.buffer == []


def test_a_stop_ends_the_retries_of_a_write_that_keeps_failing_within_the_shutdown_budget(monkeypatch) -> None:
    """The flush in progress (the consume loop's) sees the stop and gives up; SIGTERM is not ignored."""
    monkeypatch.undo()  # real backoff sleeps, which the stop must cut short

    async def go() -> tuple[int, int, Consumer, ResultWriter]:
        store = FlakyStore(failures=10**9)
        w, consumer = _writer(store, shutdown_s=5.0)
        w.buffer = [{"k": "m"}] * 2
        flushing = asyncio.ensure_future(w.flush())
        await asyncio.sleep(1.0)  # retrying, in a backoff sleep
        before = store.calls
        await w.stop()
        await asyncio.wait_for(flushing, 60)  # a bound for the test run, not a claim: it ends on the stop
        return before, store.calls, consumer, w
    before, after, consumer, w = asyncio.run(go())
    assert before >= 1, "the write never failed: the test proves nothing"
    assert after - before <= 6  # after the stop: a few paced last tries (0.5, 1, 2 s...), no spin
    assert consumer.commits_seen == [] and consumer.stopped and w.dropped == 2
