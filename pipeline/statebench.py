"""`mailsla bench --state N`: memory of the join state with N messages in flight.

Feeds N accepted events (no queue-ready) through the join runtime, once with a
plain dict (what Faust's `memory://` store holds) and once with RocksDB
(`rocksdict`, what `rocksdict://` uses), and reports bytes per pending message
(serialized state) and the process RSS growth. Each store runs in a child
process so the numbers do not mix.
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

from pipeline.config import Settings


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _measure(store: str, n: int, settings: Settings, q: Any) -> None:
    from pipeline.runtime import JoinRuntime

    s = replace(settings, idle_grace_s=0.0)
    tmp = tempfile.mkdtemp(prefix="mailsla-state-")
    if store == "rocksdict":
        from rocksdict import Rdict

        table: Any = Rdict(tmp)
    else:
        table = {}
    base = _rss_mb()
    rt = JoinRuntime(s, table)
    t0 = time.perf_counter()
    start = 1_790_000_000_000
    for i in range(n):
        mid = f"m-{i:010d}"
        raw = orjson.dumps({"message_id": mid, "account_id": f"acct-{i % 500}", "message_class": "transactional",
                            "accepted_at": f"2026-10-31T10:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}Z"})
        rt.handle(s.topic_accepted, i % s.partitions, i, mid.encode(), raw, wall=0.0)
    elapsed = time.perf_counter() - t0
    state_bytes = sum(len(k) + len(v) for k, v in table.items())
    pending = rt.snapshot()["pending_messages"]
    q.put({"store": store, "messages": n, "pending": pending, "seconds": elapsed,
           "serialized_bytes_per_message": state_bytes / max(1, n),
           "rss_growth_mb": _rss_mb() - base, "rss_bytes_per_message": (_rss_mb() - base) * 2**20 / max(1, n),
           "start": start})


def measure_bytes(settings: Settings, n: int, finish: bool) -> float:
    """Serialized state bytes per message (key and value) after N accepted events, and with
    `finish` each followed by its queue-ready (what a finished message keeps for dedup)."""
    from pipeline.runtime import JoinRuntime

    s = replace(settings, idle_grace_s=0.0)
    table: dict[bytes, bytes] = {}
    rt = JoinRuntime(s, table)
    for i in range(n):
        mid = f"m-{i:010d}"
        at = f"2026-10-31T10:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}Z"
        p = i % s.partitions
        rt.handle(s.topic_accepted, p, i, mid.encode(), orjson.dumps(
            {"message_id": mid, "account_id": f"acct-{i % 500}", "message_class": "transactional", "accepted_at": at}),
            wall=0.0)
        if finish:
            rt.handle(s.topic_ready, p, i, mid.encode(), orjson.dumps({"message_id": mid, "ready_at": at}), wall=0.0)
    return sum(len(k) + len(v) for k, v in table.items() if not k.startswith(b"\x00")) / max(1, n)


def run(settings: Settings, n: int) -> int:
    results = []
    for store in ("memory", "rocksdict"):
        q: Any = mp.get_context("spawn").Queue()
        p = mp.get_context("spawn").Process(target=_measure, args=(store, n, settings, q))
        p.start()
        results.append(q.get())
        p.join()
        r = results[-1]
        print(f"  state {store:<10} {r['pending']:,} pending: {r['serialized_bytes_per_message']:.0f} B/message "
              f"serialized, RSS +{r['rss_growth_mb']:.0f} MB ({r['rss_bytes_per_message']:.0f} B/message, "
              f"incl. deadline heaps), {r['seconds']:.1f}s")
    out = settings.data_dir / "bench" / f"state-{n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0
