"""End to end on the real broker and the embedded ClickHouse: exact rows, exact
aggregates, exact `mailsla sla --json`, dead letters, clean shutdown."""
from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from oracle import expected, monthly

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "schemas" / "examples"
pytestmark = pytest.mark.integration


def test_the_golden_examples_give_their_expected_rows_and_verdicts(pipeline) -> None:
    want = json.loads((EXAMPLES / "traffic.expected.json").read_text())
    pipeline.start_worker()
    pipeline.cli("accounts", "load", str(EXAMPLES / "accounts.jsonl"))
    mw = want["maintenance"]
    pipeline.cli("maintenance", "add", "--start", mw["start"], "--end", mw["end"], "--reason", mw["reason"])
    pipeline.cli("replay", str(EXAMPLES / "traffic.jsonl"))
    pipeline.wait_idle()
    rows = {r["message_id"]: r for r in pipeline.rows(
        "SELECT message_id, handling_ms, status, clock_skew, exclusion_reason FROM mailsla.handling_times")}
    for mid, exp in want["handling_times"].items():
        assert {k: rows[mid][k] for k in exp} == exp, mid
    assert len(rows) == len(want["handling_times"])
    for month, doc in want["sla"].items():
        assert pipeline.json("sla", "--month", month, "--json") == doc
        # analysts get the same numbers from the view
        view = {r["message_class"]: r for r in pipeline.rows(f"SELECT * FROM mailsla.sla_monthly WHERE month = '{month}'")}
        for cls, c in doc["classes"].items():
            if c["total"]:
                assert {k: view[cls][k] for k in ("total", "eligible", "within", "delayed", "compliance",
                                                  "budget_remaining")} == {k: c[k] for k in ("total", "eligible", "within",
                                                  "delayed", "compliance", "budget_remaining")}
                assert view[cls]["met"] == c["met"]


def test_generated_traffic_across_a_month_boundary_is_exact_to_the_millisecond(pipeline, tmp_path) -> None:
    traffic = tmp_path / "traffic.jsonl"
    pipeline.cli("generate", "--rate", "20", "--duration", "1500", "--seed", "7",
                 "--start", "2026-10-31T23:45:00Z", "--out", str(traffic))
    pipeline.start_worker()
    pipeline.cli("replay", str(traffic))
    pipeline.wait_idle()
    want = expected(traffic)
    got = {r["message_id"]: r for r in pipeline.rows(
        "SELECT message_id, handling_ms, status FROM mailsla.handling_times")}
    assert len(got) == len(want) == 30_000
    assert all(got[m]["handling_ms"] == w["handling_ms"] and got[m]["status"] == w["status"]
               for m, w in want.items())
    for month in ("2026-10", "2026-11"):
        doc = pipeline.json("sla", "--month", month, "--json")
        for cls, c in monthly(want, month).items():
            got_c = doc["classes"][cls]
            assert (got_c["total"], got_c["within"], got_c["delayed"]) == (c["total"], c["within"], c["delayed"])
            assert (got_c["eligible"], sum(got_c["excluded"].values())) == (c["eligible"], c["excluded"])
            assert got_c["compliance"] == pytest.approx(c["within"] / c["eligible"], abs=1e-12)
    # the per-minute aggregates hold the same exact counts, and the digest agrees with exact quantiles
    agg = pipeline.rows("SELECT message_class, sum(messages) AS n, sum(within) AS w, "
                        "quantilesTDigestMerge(0.5, 0.99)(latency) AS q FROM mailsla.handling_minutely "
                        "GROUP BY message_class")
    exact = pipeline.rows("SELECT message_class, count() AS n, countIf(status = 'on_time') AS w, "
                          "quantilesExact(0.5, 0.99)(handling_ms) AS q FROM mailsla.handling_times "
                          "GROUP BY message_class")
    by_cls = {r["message_class"]: r for r in exact}
    for r in agg:
        e = by_cls[r["message_class"]]
        assert (r["n"], r["w"]) == (e["n"], e["w"])
        assert r["q"][0] == pytest.approx(e["q"][0], rel=0.05)


def _produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes]]) -> None:
    async def go() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await p.start()
        try:
            for topic, key, value in records:
                await p.send_and_wait(topic, value, key=key)
        finally:
            await p.stop()
    asyncio.run(go())


def test_each_malformed_event_becomes_one_dead_letter_and_the_worker_goes_on(pipeline) -> None:
    env = pipeline.env
    acc, rdy = env["MAILSLA_TOPIC_ACCEPTED"], env["MAILSLA_TOPIC_QUEUE_READY"]
    bad = [line for line in (EXAMPLES / "malformed.jsonl").read_bytes().splitlines() if line.strip()]
    records: list[tuple[str, bytes | None, bytes]] = [
        (acc if b"accepted_at" in b else rdy, b"k", b) for b in bad]
    records += [(acc, None, b"not json at all"), (rdy, b"x", b"[1, 2, 3]"), (acc, b"y", b"\xff\xfe binary"),
                (rdy, b"z", b'{"message_id": 5, "ready_at": "2026-10-31T10:00:00Z"}')]
    # valid by the schema's pattern but not storable, and a record whose dead letter must be cut (issue #10)
    records += [(acc, b"old", b'{"message_id":"old","account_id":"a","message_class":"transactional",'
                              b'"accepted_at":"0001-01-01T00:00:00Z"}'),
                (rdy, b"far", b'{"message_id":"far","ready_at":"9999-12-31T23:59:59Z"}'),
                (acc, b"big", b"\xff" * 900_000)]
    good = [(acc, b"ok-1", b'{"message_id":"ok-1","account_id":"a","message_class":"transactional",'
                           b'"accepted_at":"2026-10-31T10:00:00Z"}'),
            (rdy, b"ok-1", b'{"message_id":"ok-1","ready_at":"2026-10-31T10:00:01Z"}')]
    pipeline.start_worker()
    _produce(env["MAILSLA_KAFKA"], records + good)
    st = pipeline.wait_idle()
    letters = pipeline.topic_records(env["MAILSLA_TOPIC_DEAD_LETTERS"], len(records))
    assert len(letters) == len(records) == st["dead_letters"]
    from pipeline.core.deadletters import DEAD_LETTER_RAW_BYTES, decode_dead_letter_raw
    assert sorted(decode_dead_letter_raw(d) for d in letters) == sorted(v[:DEAD_LETTER_RAW_BYTES] for _, _, v in records)
    assert all(d["reason"] and d["topic"] in (acc, rdy) and d["offset"] >= 0 for d in letters)
    assert sorted((d["original_size"], d["truncated"]) for d in letters if d["original_size"] > 1000) == [(900_000, True)]
    assert sum("outside the storable range" in d["reason"] for d in letters) == 2
    assert pipeline.rows("SELECT handling_ms FROM mailsla.handling_times") == [{"handling_ms": 1000}]


def test_sigterm_flushes_commits_and_exits_0_and_the_cli_then_opens_the_files(pipeline) -> None:
    worker = pipeline.start_worker()
    pipeline.cli("replay", str(EXAMPLES / "traffic.jsonl"))
    pipeline.wait_idle()
    assert pipeline.stop(signal.SIGTERM) == [0]
    assert worker.returncode == 0
    doc = pipeline.json("sla", "--month", "2026-11", "--json")  # no worker: opens chDB itself
    want = json.loads((EXAMPLES / "traffic.expected.json").read_text())["sla"]["2026-11"]
    assert doc["classes"]["transactional"]["total"] == want["classes"]["transactional"]["total"]
    st = pipeline.json("status", "--json")
    assert (st["total_lag"], st["pending_writes"], st["pending_messages"]) == (0, 0, 0)
    ro = pipeline.cli("sql", "INSERT INTO mailsla.orphan_events_raw (message_id) VALUES ('x')", check=False)
    assert ro.returncode == 2 and "readonly" in ro.stderr.lower()
