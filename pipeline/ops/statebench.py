"""`mailsla bench --state N`: memory of the join state per pending and per finished message.

Two workloads through the join runtime (no Kafka), each in its own child process so the
numbers do not mix, with a plain dict (what Faust's `memory://` store holds) and with
RocksDB (`rocksdict`, what `rocksdict://` uses):

* pending: N accepted events, no queue-ready: N messages waiting (state, deadline,
  oldest-pending count);
* finished: N messages with both events (ready 2 s after accepted), spread evenly over
  12 h of event time like a steady stream, input offsets committed every 5,000 records
  (as the worker does about every second), then the watermark moved 31 min on so every
  deadline has fired: what is left per message is what absorbs late duplicates for
  `MAILSLA_DEDUP_RETENTION_MS` (24 h; a fingerprint, in memory and in the table). The
  RSS figure includes what was transient on the way (deadline entries of the last
  30 min of messages, states not yet committed).

Reported: bytes of serialized table per message and process RSS growth per message (from
before the runtime is made to the end, transient peaks included). `measure` returns the
memory-store figures as `state_bytes_per_pending` / `state_bytes_per_finished` (for
`bench --json`); `run` prints all four and writes `$MAILSLA_DATA/bench/state-N.json`.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from pipeline.core.config import Settings
from pipeline.core.events import format_ts

START = 1_790_000_000_000
COMMIT_EVERY = 5_000
SPREAD_MS = 12 * 3_600_000  # event time the finished workload covers


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _accepted(i: int, at: int) -> tuple[bytes, bytes]:
    mid = f"m-{i:010d}"
    return mid.encode(), orjson.dumps({"message_id": mid, "account_id": f"acct-{i % 500}",
                                       "message_class": "transactional", "accepted_at": format_ts(at)})


def _measure(store: str, kind: str, n: int, settings: Settings, q: Any) -> None:
    """Child process: run one workload on one store, put its figures on `q`."""
    from pipeline.stream.runtime import JoinRuntime

    s = replace(settings, idle_grace_s=0.0)
    tmp = tempfile.mkdtemp(prefix="mailsla-state-")
    if store == "rocksdict":
        from rocksdict import Rdict

        table: Any = Rdict(tmp)
    else:
        table = {}
    base = _rss_mb()
    rt = JoinRuntime(s, table)
    committed: dict[tuple[str, int], int] = {}
    rt.committed = lambda topic, p: committed.get((topic, p), -1)
    offsets: dict[tuple[str, int], int] = {}

    def feed(topic: str, p: int, key: bytes, raw: bytes) -> None:
        off = offsets.get((topic, p), 0)
        offsets[(topic, p)] = off + 1
        rt.handle(topic, p, off, key, raw, wall=0.0)

    t0 = time.perf_counter()
    step = max(1, SPREAD_MS // max(1, n)) if kind == "finished" else 1
    for i in range(n):
        at = START + i * step
        key, raw = _accepted(i, at)
        p = i % s.partitions
        feed(s.topic_accepted, p, key, raw)
        if kind == "finished":
            feed(s.topic_ready, p, key, orjson.dumps({"message_id": key.decode(), "ready_at": format_ts(at + 2000)}))
            if i % COMMIT_EVERY == COMMIT_EVERY - 1:
                committed.update(offsets)
    if kind == "finished":  # commit the rest, then move every partition's watermark past the deadlines
        committed.update(offsets)
        later = START + n * step + 31 * 60_000
        for p in range(s.partitions):
            mid = f"late-{p}"
            feed(s.topic_accepted, p, mid.encode(), orjson.dumps({"message_id": mid, "account_id": "a",
                 "message_class": "transactional", "accepted_at": format_ts(later)}))
            feed(s.topic_ready, p, mid.encode(), orjson.dumps({"message_id": mid, "ready_at": format_ts(later)}))
            committed.update(offsets)
            feed(s.topic_ticks, p, b"", b"")
    elapsed = time.perf_counter() - t0
    rss = _rss_mb() - base
    snap = rt.snapshot()
    q.put({"store": store, "kind": kind, "messages": n, "pending": snap["pending_messages"],
           "fingerprints": snap["fingerprints"], "scheduled": snap["scheduled"], "seconds": elapsed,
           "serialized_bytes_per_message": sum(len(k) + len(v) for k, v in table.items()) / max(1, n),
           "rss_growth_mb": rss, "rss_bytes_per_message": rss * 2**20 / max(1, n)})


def _child(store: str, kind: str, n: int, settings: Settings) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    p = ctx.Process(target=_measure, args=(store, kind, n, settings, q))
    p.start()
    result = q.get()
    p.join()
    return result


def measure(settings: Settings, n: int, stores: tuple[str, ...] = ("memory",)) -> dict[str, Any]:
    """Bytes of RSS per pending and per finished message with the memory store (the first of
    `stores`), plus every run's details under `runs`. Takes a few seconds per 100,000 messages."""
    runs = [_child(store, kind, n, settings) for store in stores for kind in ("pending", "finished")]
    first = {r["kind"]: r for r in runs if r["store"] == stores[0]}
    return {"state_bytes_per_pending": round(first["pending"]["rss_bytes_per_message"]),
            "state_bytes_per_finished": round(first["finished"]["rss_bytes_per_message"]),
            "runs": runs}


def run(settings: Settings, n: int) -> int:
    result = measure(settings, n, ("memory", "rocksdict"))
    for r in result["runs"]:
        what = f"{r['pending']:,} pending" if r["kind"] == "pending" else f"{r['fingerprints']:,} finished"
        print(f"  state {r['store']:<10} {what}: {r['serialized_bytes_per_message']:.0f} B/message serialized, "
              f"RSS +{r['rss_growth_mb']:.0f} MB ({r['rss_bytes_per_message']:.0f} B/message), {r['seconds']:.1f}s")
    print(f"  state_bytes_per_pending {result['state_bytes_per_pending']}, "
          f"state_bytes_per_finished {result['state_bytes_per_finished']} (memory store)")
    out = settings.data_dir / "bench" / f"state-{n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0
