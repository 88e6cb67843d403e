"""Faust internals guarded by behaviour (issue #18): for each private name of Faust, mode or
aiokafka that pipeline/stream/faust_internals uses (the inventory `PRIVATE_ATTRIBUTES`), a test
of the behaviour we depend on, with real objects made without a broker (tests/unit/faust_fakes.py
fakes the network only). test_faust_internals.py checks that the names still exist; these fail
when they exist but do something else. Each test says what breaking it looks like.

This file: Faust's consumer, its drain loop and our replacement (fastconsume)."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import ConsumerStoppedError
from faust.transport.consumer import CONSUMER_FETCHING, Fetcher
from faust.types import TP
from faust_fakes import HANG_S, INPUT, OTHER, Fetches, drain, new_app, seek, tpo
from mode import Service

from pipeline.core.config import load
from pipeline.stream.app import create_app
from pipeline.stream.faust_internals import fastconsume
from pipeline.stream.faust_internals.consumer import keep_read_offsets, put_back_buffered

# One fetch plan for the drain tests: the other topic's read offset is set to 5 first (a seek),
# so its records 3 and 4 are below it; the input topic's records come in any order.
SEEK_TO = 5
PLAN = [[(INPUT, 0, 3), (OTHER, 0, 3), (INPUT, 0, 5), (OTHER, 0, 5), (OTHER, 0, 4), (INPUT, 1, 0), (OTHER, 0, 6)],
        [(INPUT, 0, 4), (OTHER, 0, 7)]]


async def _consumer(ours: bool, read_offsets: bool = True) -> tuple[Any, asyncio.Queue | None]:
    """A fresh app's consumer, as the join wires it (`ours`: with the batched drain), after a
    seek of both topics' partition 0 to SEEK_TO; returns it and the queue of record lists."""
    app = new_app()
    consumer = app.consumer
    if read_offsets:
        keep_read_offsets(consumer, {INPUT})
    queue = fastconsume.install(consumer, {INPUT}) if ours else None
    for topic in (INPUT, OTHER):
        await seek(consumer, TP(topic, 0), SEEK_TO)
    return consumer, queue


def test_a_seek_sets_the_read_offset_and_faust_drops_records_below_it_but_not_the_inputs_of_keep_read_offsets() -> None:
    """`Consumer._read_offset`. Broken looks like: Faust's seek no longer setting it, or its drain
    loop not dropping below it (then `_ReadOffsets` guards nothing), or keep_read_offsets no
    longer reaching the mapping the loop reads (input records dropped after a seek)."""
    async def main() -> tuple:
        plain, _ = await _consumer(ours=False, read_offsets=False)
        assert plain._read_offset[TP(OTHER, 0)] == SEEK_TO  # noqa: SLF001 - the name under test
        faust_only = await drain(plain, Fetches(PLAN), original=True)
        kept, _ = await _consumer(ours=False)
        assert kept._read_offset[TP(INPUT, 0)] is None  # noqa: SLF001 - a seek does not track inputs
        with_ours = await drain(kept, Fetches(PLAN), original=True)
        return faust_only, with_ours, plain, kept

    faust_only, with_ours, plain, kept = asyncio.run(main())
    assert tpo(faust_only.records) == [(INPUT, 0, 5), (OTHER, 0, 5), (INPUT, 1, 0), (OTHER, 0, 6), (OTHER, 0, 7)]
    assert plain._read_offset[TP(INPUT, 0)] == 5 and plain._read_offset[TP(OTHER, 0)] == 7  # noqa: SLF001
    inputs = [r for fetch in PLAN for r in fetch if r[0] == INPUT]
    assert [r for r in tpo(with_ours.records) if r[0] == INPUT] == inputs  # none dropped
    assert [r for r in tpo(with_ours.records) if r[0] == OTHER] == [(OTHER, 0, 5), (OTHER, 0, 6), (OTHER, 0, 7)]


def test_faust_fetcher_runs_the_drain_loop_the_consumer_instance_has() -> None:
    """`Consumer._drain_messages` is called on the instance. Broken looks like: Faust's Fetcher
    calling the class's method or another name (our lists would never be queued)."""
    async def main() -> list:
        consumer, queue = await _consumer(ours=True)
        fetcher = Fetcher(consumer.app)
        Fetches([[(INPUT, 0, 0), (INPUT, 0, 1)]]).install(consumer, fetcher)
        await asyncio.wait_for(Fetcher._fetcher(fetcher), HANG_S)
        return tpo(queue.get_nowait())

    assert asyncio.run(main()) == [(INPUT, 0, 0), (INPUT, 0, 1)]


def test_our_drain_queues_the_input_records_as_lists_and_passes_the_others_as_faust_does() -> None:
    """The replacement against Faust's original on the same fetches: the other topic's records
    reach the callback (`Consumer.callback`) as Faust's do, under the same read-offset rule; the
    input records are all queued, one list per fetch. Both loops end when Faust stops the
    fetcher (mode's `Service._stopped`). Broken looks like: records lost or doubled, a different
    read offset, or a loop that does not end (our copy reading a stop flag mode no longer sets)."""
    async def main() -> tuple:
        faust_c, _ = await _consumer(ours=False)
        faust_run = await drain(faust_c, Fetches(PLAN), original=True)
        ours_c, queue = await _consumer(ours=True)
        ours_run = await drain(ours_c, Fetches(PLAN))
        lists = [tpo(queue.get_nowait()) for _ in range(queue.qsize())]
        return faust_run, ours_run, lists, faust_c, ours_c

    faust_run, ours_run, lists, faust_c, ours_c = asyncio.run(main())
    faust_seen = tpo(faust_run.records)
    assert len(faust_seen) < sum(map(len, PLAN))  # premise: the read-offset rule dropped records
    assert tpo(ours_run.records) == [r for r in faust_seen if r[0] != INPUT]
    assert lists == [[r for r in fetch if r[0] == INPUT] for fetch in PLAN]
    assert [r for fetch in lists for r in fetch] == [r for r in faust_seen if r[0] == INPUT]
    assert ours_c._read_offset[TP(OTHER, 0)] == faust_c._read_offset[TP(OTHER, 0)] == 7  # noqa: SLF001


def test_the_join_consumes_only_topics_without_acks_so_what_our_copy_leaves_out_never_ran(tmp_path: Path) -> None:
    """Our copy leaves out Faust's gap tracking and its commit every N acks: both only act on
    topics with acks on. Broken looks like: the join's app consuming a topic with acks on (its
    offsets would then no longer be committed by Faust's loop)."""
    app = create_app(replace(load(), data_dir=tmp_path), with_sink=False)
    consumed = [agent.channel for agent in app.agents.values()] + [t.changelog_topic for t in app.tables.values()]
    assert len(consumed) == 2 and not any(topic.acks for topic in consumed)


@pytest.mark.parametrize("original", [True, False], ids=["faust", "ours"])
def test_a_record_held_up_when_faust_suspends_the_flow_is_let_go(original: bool) -> None:
    """`Service.wait_first` and `Consumer.suspend_flow`: Faust's `stop_flow` (a rebalance) lets
    the drain loop stop waiting for a record's callback. Broken looks like: a loop waiting for
    ever (wait_first waiting for all, or stop_flow setting another event): the test times out."""
    async def main() -> list:
        consumer, _ = await _consumer(ours=not original)
        return tpo((await drain(consumer, Fetches([[(OTHER, 0, 5), (OTHER, 0, 6)]]), original, hold=5)).records)

    assert asyncio.run(main()) == [(OTHER, 0, 5), (OTHER, 0, 6)]


@pytest.mark.parametrize("original", [True, False], ids=["faust", "ours"])
def test_both_drains_flag_fetching_while_they_fetch_and_not_after(original: bool) -> None:
    """`Service.diag` with Faust's `CONSUMER_FETCHING` flag (mode's diagnostics of the consumer).
    Broken looks like: the flag not set while fetching, or left set after the loop."""
    seen: list[bool] = []

    async def main() -> set:
        consumer, _ = await _consumer(ours=not original)
        await drain(consumer, Fetches([[(OTHER, 0, 5)]], during=lambda c: seen.append(
            CONSUMER_FETCHING in c.diag.flags)), original)
        return consumer.diag.flags

    assert CONSUMER_FETCHING not in asyncio.run(main())
    assert seen == [True, True]


@pytest.mark.parametrize("original", [True, False], ids=["faust", "ours"])
@pytest.mark.parametrize("end", [ConsumerStoppedError(), asyncio.CancelledError()], ids=["stopped", "cancelled"])
def test_both_drains_end_quietly_on_a_stopped_consumer_only_while_the_app_stops(original: bool,
                                                                               end: BaseException) -> None:
    """`Consumer.consumer_stopped_errors` (aiokafka's ConsumerStoppedError) and
    `consumer.transport.app.should_stop`. Broken looks like: the error escaping while the app
    stops (a crash at every shutdown), or swallowed while it runs (a silently dead fetcher)."""
    async def main(stopping: bool) -> None:
        consumer, _ = await _consumer(ours=not original)
        assert consumer.transport.app is consumer.app
        if stopping:
            await consumer.app.stop()
        await drain(consumer, Fetches([], at_end=end), original)

    asyncio.run(main(stopping=True))
    with pytest.raises(type(end)):
        asyncio.run(main(stopping=False))


def test_mode_sets_stopped_when_a_service_stops_and_not_before() -> None:
    """`Service._stopped`: our drain loop reads it of the consumer and of the fetcher. Broken
    looks like: set at start (the loop would never fetch), or not at stop (never end)."""
    async def main() -> list[bool]:
        service = Service()
        states = [service._stopped.is_set()]  # noqa: SLF001 - the name under test
        await service.start()
        states.append(service._stopped.is_set())  # noqa: SLF001
        await service.stop()
        return states + [service._stopped.is_set(), service.should_stop]  # noqa: SLF001

    assert asyncio.run(main()) == [False, False, True, True]


def test_a_full_buffer_takes_a_partition_out_of_the_fetch_and_put_back_buffered_returns_it() -> None:
    """`Consumer._buffered_partitions`: Faust's `on_buffer_full` moves a partition from the
    active set (what it asks the broker for) to it; put_back_buffered makes it active again.
    Broken looks like: the partition still fetched after a full buffer, or never again after
    put_back_buffered (the partition stuck seen after a SIGKILL)."""
    asked: list[set] = []

    async def getmany(active_partitions: set, timeout: float) -> dict:  # the broker, via the thread
        asked.append(set(active_partitions))
        return {}

    async def main() -> None:
        consumer = new_app().consumer
        consumer._thread.getmany = getmany  # noqa: SLF001 - the network edge
        tps = {TP(INPUT, 0), TP(INPUT, 1)}
        consumer.resume_partitions(tps)
        consumer.on_buffer_full(TP(INPUT, 0))
        assert consumer._buffered_partitions == {TP(INPUT, 0)}  # noqa: SLF001 - the name under test
        async for _ in consumer.getmany(timeout=0.1):
            pass
        put_back_buffered(consumer)
        async for _ in consumer.getmany(timeout=0.1):
            pass

    asyncio.run(main())
    assert asked == [{TP(INPUT, 1)}, {TP(INPUT, 0), TP(INPUT, 1)}]
