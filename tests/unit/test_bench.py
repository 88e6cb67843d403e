"""The bench's pure pieces (issue #18 item 3, issue #22 item 3): the ceiling's counting loop, the
median/min/max of repeated runs, the JSON object's shape and arithmetic, the sink's two phases of
rows and the state summary. Nothing here is timed: the clocks are fakes."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from pipeline.ops import benchresult, repeats, sinkbench, statebench
from pipeline.ops.ceiling import Short, count_records


@dataclass
class Rec:
    value: bytes


class FakeConsumer:
    """getmany hands out the topics' records a few partitions per fetch (as aiokafka does: one
    list per partition), one second of a fake clock per call; every `empty_every`-th call is empty."""

    def __init__(self, records: int, partitions: int = 3, per_partition: int = 3, empty_every: int = 0) -> None:
        self.left = records
        self.partitions, self.per_partition, self.empty_every = partitions, per_partition, empty_every
        self.now = 0.0
        self.calls = 0
        self.handed = 0

    def clock(self) -> float:
        return self.now

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[int, list[Rec]]:
        self.now += 1.0
        self.calls += 1
        if self.empty_every and self.calls % self.empty_every == 0:
            return {}
        out: dict[int, list[Rec]] = {}
        for p in range(self.partitions):
            k = min(self.per_partition, self.left)
            if k:
                out[p] = [Rec(orjson.dumps({"i": self.handed + j})) for j in range(k)]
                self.handed += k
                self.left -= k
        return out


def test_the_ceiling_counts_each_record_once_and_times_every_fetch() -> None:
    """80 records, 8 per fetch in 4 partition lists: 10 fetches. The old loop added the whole
    fetch once per partition list (32 per fetch), stopped after 3 fetches and divided 80 by 3 s."""
    c = FakeConsumer(80, partitions=4, per_partition=2)
    parsed: list[Any] = []
    count = asyncio.run(count_records(c, 80, parse=parsed.append, clock=c.clock))
    assert c.handed == 80 and len(parsed) == 80  # every record read and parsed, none twice
    assert count.records == 80
    assert count.fetches == 10 == c.calls
    assert count.seconds == 10.0  # from before the first fetch to after the last: all of them
    assert count.per_s == 8.0


def test_empty_fetches_are_timed_but_not_counted() -> None:
    c = FakeConsumer(45, partitions=5, per_partition=3, empty_every=2)
    count = asyncio.run(count_records(c, 45, parse=orjson.loads, clock=c.clock))
    assert count.records == 45 and count.fetches == 3 and c.calls == 5
    assert count.seconds == 5.0


def test_a_consumer_that_goes_quiet_before_n_raises_instead_of_a_rate() -> None:
    c = FakeConsumer(10)
    with pytest.raises(Short, match="read 10 of 50 records"):
        asyncio.run(count_records(c, 50, parse=orjson.loads, clock=c.clock, idle_s=5))


def test_spread_and_figure_give_the_median_with_min_and_max() -> None:
    assert repeats.spread([30.0, 10.0, 20.0]) == {"median": 20.0, "min": 10.0, "max": 30.0}
    assert repeats.spread([1.0, 4.0])["median"] == 2.5
    assert repeats.figure("x_eps", [3.0, 1.0, 2.0]) == {"x_eps": 2.0, "x_eps_min": 1.0, "x_eps_max": 3.0,
                                                        "x_eps_runs": [3.0, 1.0, 2.0]}
    assert repeats.ratio(1.0, 0.0) is None
    with pytest.raises(ValueError):
        repeats.spread([])


def _layout_run(eps: float) -> dict[str, Any]:
    return {"eps": eps, "eps_incl_start": eps / 2, "elapsed_s": 10.0, "start_s": 3.0, "peak_rss_mb": 100.0,
            "rss_mb_by_process": {"0:worker": 100.0}}


def _state_runs() -> list[dict[str, Any]]:
    runs = []
    for k, (pend, fin) in enumerate([(170.0, 30.0), (180.0, 28.0), (175.0, 35.0)]):
        runs.append({"store": "memory", "kind": "pending", "messages": 1000, "rss_bytes_per_message": pend,
                     "serialized_bytes_per_message": 39.0})
        runs.append({"store": "memory", "kind": "finished", "messages": 1000, "rss_bytes_per_message": fin,
                     "serialized_bytes_per_message": 8.0})
        runs.append({"store": "rocksdb", "kind": "pending", "messages": 1000, "rss_bytes_per_message": 70.0 + k,
                     "serialized_bytes_per_message": 39.0, "disk_bytes_per_message": 16.0})
        runs.append({"store": "rocksdb", "kind": "finished", "messages": 1000, "rss_bytes_per_message": 90.0,
                     "serialized_bytes_per_message": 8.0, "disk_bytes_per_message": 17.0})
    return runs


def _measured() -> benchresult.Measured:
    return benchresult.Measured(
        events=200_000, repeat=3, produce_eps=90_000.0,
        ceiling=[300_000.0, 250_000.0, 280_000.0],
        noop_batched=[{"eps": e, "eps_from_first_record": e * 1.3} for e in (100_000.0, 80_000.0, 90_000.0)],
        faust_take_events=[{"eps": e, "eps_from_first_record": e} for e in (20_000.0, 22_000.0, 21_000.0)],
        # the fastest single run is in `two`, but its median is lower: the best layout goes by median
        layouts={"one": [_layout_run(e) for e in (40_000.0, 45_000.0, 50_000.0)],
                 "two": [_layout_run(e) for e in (90_000.0, 20_000.0, 30_000.0)]},
        join_processes={"one": 1, "two": 2},
        sink=[{"rows_per_s": r, "first_rows_per_s": r * 1.2, "revision_rows_per_s": r * 0.8}
              for r in (200_000.0, 150_000.0, 250_000.0)],
        sink_messages=100_000,
        state=statebench.summarize(_state_runs()),
        pinned={1: [{"processes": 1, "eps_per_process": [e], "eps_total": e} for e in (30_000.0, 32_000.0, 31_000.0)],
                2: [{"processes": 2, "eps_per_process": [a, b], "eps_total": a + b}
                    for a, b in ((20_000.0, 22_000.0), (21_000.0, 25_000.0), (19_000.0, 24_000.0))]},
        digests={"fastdigest": {"seconds": 0.02, "max_rel_error": 0.001}, "tdigest": None},
        machine={"cpus": 2})


def test_the_json_object_has_every_figure_as_the_median_of_its_runs() -> None:
    r = benchresult.result(_measured())
    json.dumps(r)  # serializable as it is
    for key in ("best_eps", "sink_rows_per_s", "ratio_to_noop", "ratio_to_ceiling", "noop_batched_eps",
                "faust_take_events_eps", "ceiling_eps", "state_bytes_per_pending", "state_bytes_per_finished"):
        assert isinstance(r[key], (int, float)), key
    assert (r["ceiling_eps"], r["ceiling_eps_min"], r["ceiling_eps_max"]) == (280_000.0, 250_000.0, 300_000.0)
    assert r["noop_batched_eps"] == 90_000.0 and r["faust_take_events_eps"] == 21_000.0
    assert r["noop_batched_eps_from_first_record"] == pytest.approx(117_000.0)
    assert r["best_layout"] == "one" and r["best_eps"] == 45_000.0
    assert (r["best_eps_min"], r["best_eps_max"]) == (40_000.0, 50_000.0)
    assert r["ratio_to_noop"] == pytest.approx(45_000 / 90_000)
    assert r["ratio_to_ceiling"] == pytest.approx(45_000 / 280_000)
    assert r["ratio_to_faust_take_events"] == pytest.approx(45_000 / 21_000) == r["ratio_to_faust_noop"]
    assert (r["sink_rows_per_s"], r["sink_rows_per_s_min"], r["sink_rows_per_s_max"]) == (200_000.0, 150_000.0,
                                                                                         250_000.0)
    assert r["sink_first_rows_per_s"] == pytest.approx(240_000.0)
    assert r["layouts"]["two"]["eps"] == 30_000.0 and r["layouts"]["two"]["eps_per_join_process"] == 15_000.0
    assert r["layouts"]["two"]["eps_runs"] == [90_000.0, 20_000.0, 30_000.0]
    assert (r["state_bytes_per_pending"], r["state_bytes_per_finished"]) == (175, 30)
    assert r["state"]["stores"]["rocksdb"]["pending"]["disk_bytes_per_message"] == 16.0
    sc = r["scaling"]
    assert sc["pinned"]["1"]["eps_per_process"] == 31_000.0
    assert sc["pinned"]["2"]["eps_per_process"] == 21_500.0  # the median of all six processes' rates
    assert sc["per_process_vs_1"]["2"] == pytest.approx(21_500 / 31_000)
    assert sc["shared_cores_eps_per_join_process"] == {"one": 45_000.0, "two": 15_000.0}
    assert "taskset" in sc["assumes"] and "broker" in sc["assumes"]
    assert r["digests"]["fastdigest"]["max_rel_error"] == 0.001
    lines = benchresult.table(r)
    assert any("45,000 ev/s (min 40,000, max 50,000)" in line for line in lines)
    assert any("0.69 of N=1" in line for line in lines)


def test_the_state_summary_takes_medians_per_store_and_workload() -> None:
    s = statebench.summarize(_state_runs())
    assert set(s["stores"]) == {"memory", "rocksdb"}
    mem = s["stores"]["memory"]["finished"]
    assert (mem["rss_bytes_per_message"], mem["rss_bytes_per_message_min"], mem["rss_bytes_per_message_max"]) == (
        30.0, 28.0, 35.0)
    assert mem["runs"] == 3 and "disk_bytes_per_message" not in mem
    assert s["stores"]["rocksdb"]["pending"]["rss_bytes_per_message"] == 71.0
    assert any("rocksdb" in line and "on disk 16 B" in line for line in statebench.lines(s))


def test_the_sink_bench_revises_the_same_messages_at_a_higher_rev() -> None:
    first = [orjson.loads(r) for r in sinkbench.result_rows(30, 1)]
    second = [orjson.loads(r) for r in sinkbench.result_rows(30, 2)]
    assert [r["message_id"] for r in first] == [r["message_id"] for r in second]
    assert all(a["rev"] < b["rev"] for a, b in zip(first, second))
    overdue = [i for i, r in enumerate(first) if r["status"] == "overdue"]
    assert overdue and all(first[i]["ready_at"] is None and first[i]["handling_ms"] is None for i in overdue)
    assert all(second[i]["status"] == "late" and second[i]["handling_ms"] >= sinkbench.THRESHOLD_MS
               for i in overdue)
    assert {r["status"] for r in second} <= {"on_time", "late"}


def test_the_table_prints_a_ratio_that_measured_nothing_as_a_dash() -> None:
    m = _measured()
    m.noop_batched = [{"eps": 0.0, "eps_from_first_record": 0.0}]
    r = benchresult.result(m)
    assert r["ratio_to_noop"] is None
    assert any("- of the batched no-op" in line for line in benchresult.table(r))
