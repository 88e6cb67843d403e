"""Availability end to end on the real broker and the embedded ClickHouse: attempts and probe
checks over days across a month boundary (outages, partial failures, client errors, duplicates,
a maintenance window, malformed records) replayed in two shuffled parts around a SIGKILL;
`availability --json` equals an independent oracle for both months, globally and per account;
critical faults open and resolve at the oracle's seconds, live (faults table and topic) too."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from avail_oracle import WINDOW, critical_oracle, oracle, scenario
from pipeline.events import parse_ts

pytestmark = pytest.mark.integration


def _until(check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(1.0)
    return None


def test_availability_is_exact_per_month_and_account_and_critical_faults_open_at_the_right_seconds(
        pipeline, tmp_path: Path) -> None:
    records, bad = scenario()
    # live, events come roughly in time order: first everything before the cut (shuffled), then
    # the rest, which repeats some of the first part (duplicates across a restart) and brings the
    # bad lines
    cut = parse_ts("2026-11-01T01:30:00Z", "")
    early = [r for r in records if parse_ts(r["at"], "") < cut]
    late = [r for r in records if parse_ts(r["at"], "") >= cut]
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in early))
    second.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in late + early[:300])
                       + b"\n".join(bad) + b"\nnot json\n")
    pipeline.env.update(MAILSLA_FAULT_INTERVAL_S="2")
    pipeline.start_worker()
    pipeline.cli("maintenance", "add", "--start", WINDOW[0], "--end", WINDOW[1], "--reason", "MTA upgrade")
    pipeline.cli("replay", str(first))
    pipeline.wait_idle()
    pipeline.stop(signal.SIGKILL)  # loses nothing
    pipeline.start_worker()
    stats = json.loads(pipeline.cli("replay", str(second)).stdout)
    assert stats["invalid"] == len(bad) + 1 and stats["dead_lettered"] == 1
    st = pipeline.wait_idle()
    assert st["dead_letters"] >= len(bad) + 1  # malformed records: the sink dead-letters them with the reason
    letters = pipeline.topic_records(pipeline.env["MAILSLA_TOPIC_DEAD_LETTERS"], len(bad) + 1)
    assert all(d["reason"] for d in letters)
    assert {d["topic"] for d in letters} >= {pipeline.env["MAILSLA_TOPIC_INJECTIONS"],
                                             pipeline.env["MAILSLA_TOPIC_PROBES"]}

    for month in ("2026-10", "2026-11"):
        assert pipeline.json("availability", "--month", month, "--json") == oracle(records, [WINDOW], month)
        for account in ("acme", "beta", "nobody"):
            got = pipeline.json("availability", "--month", month, "--json", "--account", account)
            assert got == oracle(records, [WINDOW], month, account), (month, account)

    want = critical_oracle(records, [WINDOW])
    assert any(w[0] == "channel:api" for w in want) and any(w[0] == "probe:admin" for w in want)

    def sec(ts: str | None) -> int | None:
        return None if ts is None else parse_ts(ts, "") // 1000
    found = pipeline.json("faults", "--json", "--kind", "critical")
    assert [(f["message_class"], sec(f["opened_at"]), sec(f["resolved_at"])) for f in found] == want
    assert all(f["kind"] == "critical" and f["response_target_s"] == 7200 for f in found)
    assert all(f["response_met"] == (f["resolved_at"] is not None and
                                     sec(f["resolved_at"]) - sec(f["opened_at"]) <= 7200)  # type: ignore[operator]
               for f in found if f["resolved_at"] is not None)

    # announced live, once each: the faults table and the faults topic
    def table() -> list[dict[str, Any]]:
        rows = pipeline.rows("SELECT message_class, toUnixTimestamp(opened_at) AS o, "
                             "toUnixTimestamp(resolved_at) AS r FROM mailsla.faults FINAL "
                             "WHERE kind = 'critical' ORDER BY opened_at, message_class")
        got = [(r["message_class"], int(r["o"]), None if r["r"] is None else int(r["r"])) for r in rows]
        return got if got == want else []
    assert _until(table), (pipeline.rows("SELECT * FROM mailsla.faults FINAL WHERE kind = 'critical'"),
                           pipeline.log_tails())
    events = [e for e in pipeline.topic_records(pipeline.env["MAILSLA_TOPIC_FAULTS"], 1000, timeout_s=5)
              if e["kind"] == "critical"]
    assert sorted(sec(e["opened_at"]) for e in events if e["event"] == "opened") == sorted(w[1] for w in want)
