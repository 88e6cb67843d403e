"""`mailsla bench --state N`: memory of the join state per pending and per finished message.

Two workloads through the join runtime (no Kafka), each in its own child process so the
numbers do not mix, on both stores the worker can run: `memory` (a plain dict, what Faust's
`memory://` store holds) and `rocksdb` (what `MAILSLA_STORE=rocksdb://` runs in production:
Faust's RocksDB store opens one database per partition through `rocksdict`, with Faust's
`RocksDBOptions`; here the same, one database per partition with those options):

* pending: N accepted events, no queue-ready: N messages waiting (state, deadline,
  oldest-pending count);
* finished: N messages with both events (ready 2 s after accepted), spread evenly over
  12 h of event time like a steady stream, input offsets committed every 5,000 records
  (as the worker does about every second), then the watermark moved 31 min on so every
  deadline has fired: what is left per message is what absorbs late duplicates for
  `MAILSLA_DEDUP_RETENTION_MS` (24 h; a fingerprint, in memory and in the table). The
  RSS figure includes what was transient on the way (deadline entries of the last
  30 min of messages, states not yet committed).

Reported per store and workload: bytes of serialized table per message, process RSS growth
per message (from before the runtime is made to the end, transient peaks included) and, for
RocksDB, the SST files' bytes per message after a flush. With RocksDB the RSS is mostly its
write buffers and block cache, not per message; its state lives on disk. `measure` runs each
(store, workload) `repeat` times and gives medians with min and max; its
`state_bytes_per_pending` / `state_bytes_per_finished` are the memory store's RSS medians (the
figures issue #11 set limits on, for `bench --json`). `run` prints the table (or, with
`--json`, one JSON object) and writes `$MAILSLA_DATA/bench/state-N.json`.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, MutableMapping

import orjson

from pipeline.core.config import Settings
from pipeline.core.events import format_ts
from pipeline.ops.repeats import spread

START = 1_790_000_000_000
COMMIT_EVERY = 5_000
SPREAD_MS = 12 * 3_600_000  # event time the finished workload covers
STORES = ("memory", "rocksdb")
KINDS = ("pending", "finished")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _accepted(i: int, at: int) -> tuple[bytes, bytes]:
    mid = f"m-{i:010d}"
    return mid.encode(), orjson.dumps({"message_id": mid, "account_id": f"acct-{i % 500}",
                                       "message_class": "transactional", "accepted_at": format_ts(at)})


class PartitionedRocks(MutableMapping[bytes, bytes]):
    """One RocksDB database per partition, opened as Faust's RocksDB store opens them (its
    `RocksDBOptions`, raw keys and values). Reads and writes go to the partition of the record
    being worked (`partition`, set before each record), as Faust routes them by the current
    event; iterating covers every partition."""

    def __init__(self, root: Path, partitions: int) -> None:
        from faust.stores.rocksdb import RocksDBOptions

        opts = RocksDBOptions()
        self.dbs = [opts.open(root / f"p{p}.db") for p in range(partitions)]
        self.partition = 0

    def __getitem__(self, key: bytes) -> bytes:
        value = self.dbs[self.partition].get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: bytes, default: Any = None) -> Any:
        value = self.dbs[self.partition].get(key)
        return default if value is None else value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.dbs[self.partition][key] = value

    def __delitem__(self, key: bytes) -> None:
        del self.dbs[self.partition][key]

    def __iter__(self) -> Iterator[bytes]:
        for db in self.dbs:
            yield from db.keys()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def items(self) -> Any:  # type: ignore[override]
        return [kv for db in self.dbs for kv in db.items()]

    def sst_bytes(self) -> int:
        """Bytes of SST files after flushing every write buffer: the state on disk."""
        total = 0
        for db in self.dbs:
            db.flush()
            total += db.property_int_value("rocksdb.total-sst-files-size") or 0
        return total


def _measure(store: str, kind: str, n: int, settings: Settings, q: Any) -> None:
    """Child process: run one workload on one store, put its figures on `q`."""
    from pipeline.stream.runtime import JoinRuntime

    s = replace(settings, idle_grace_s=0.0)
    tmp = Path(tempfile.mkdtemp(prefix="mailsla-state-"))
    base = _rss_mb()  # before the store: RocksDB's own buffers count as the state's memory
    table: Any = PartitionedRocks(tmp, s.partitions) if store == "rocksdb" else {}
    route = (lambda p: setattr(table, "partition", p)) if store == "rocksdb" else (lambda p: None)
    rt = JoinRuntime(s, table)
    committed: dict[tuple[str, int], int] = {}
    rt.committed = lambda topic, p: committed.get((topic, p), -1)
    offsets: dict[tuple[str, int], int] = {}

    def feed(topic: str, p: int, key: bytes, raw: bytes) -> None:
        off = offsets.get((topic, p), 0)
        offsets[(topic, p)] = off + 1
        route(p)
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
    out = {"store": store, "kind": kind, "messages": n, "pending": snap["pending_messages"],
           "fingerprints": snap["fingerprints"], "scheduled": snap["scheduled"], "seconds": elapsed,
           "serialized_bytes_per_message": sum(len(k) + len(v) for k, v in table.items()) / max(1, n),
           "rss_growth_mb": rss, "rss_bytes_per_message": rss * 2**20 / max(1, n)}
    if store == "rocksdb":
        out["disk_bytes_per_message"] = table.sst_bytes() / max(1, n)
    q.put(out)


def _child(store: str, kind: str, n: int, settings: Settings) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q: Any = ctx.Queue()
    p = ctx.Process(target=_measure, args=(store, kind, n, settings, q))
    p.start()
    result = q.get()
    p.join()
    return result


FIGURES = ("rss_bytes_per_message", "serialized_bytes_per_message", "disk_bytes_per_message")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs -> per store and workload, each figure's median with min and max (`FIGURES`, those
    the runs have), and the two memory-store RSS medians under the keys `bench --json` reports."""
    stores: dict[str, dict[str, dict[str, Any]]] = {}
    for store in dict.fromkeys(r["store"] for r in runs):
        for kind in KINDS:
            mine = [r for r in runs if r["store"] == store and r["kind"] == kind]
            if not mine:
                continue
            fig: dict[str, Any] = {"runs": len(mine), "messages": mine[0]["messages"]}
            for name in FIGURES:
                if name in mine[0]:
                    sp = spread([r[name] for r in mine])
                    fig[name], fig[f"{name}_min"], fig[f"{name}_max"] = sp["median"], sp["min"], sp["max"]
            stores.setdefault(store, {})[kind] = fig
    mem = stores.get("memory", {})
    return {"state_bytes_per_pending": round(mem["pending"]["rss_bytes_per_message"]) if "pending" in mem else None,
            "state_bytes_per_finished": round(mem["finished"]["rss_bytes_per_message"]) if "finished" in mem else None,
            "stores": stores, "runs": runs}


def measure(settings: Settings, n: int, stores: tuple[str, ...] = STORES, repeat: int = 1,
            parallel: int = 1) -> dict[str, Any]:
    """Each (store, workload) `repeat` times, `parallel` child processes at a time (RSS and bytes
    do not depend on what else runs; a few seconds per 100,000 messages each), summarized."""
    jobs = [(store, kind) for _ in range(repeat) for store in stores for kind in KINDS]
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        runs = list(pool.map(lambda job: _child(job[0], job[1], n, settings), jobs))
    return summarize(runs)


def lines(result: dict[str, Any]) -> list[str]:
    """The table: one line per store and workload, then the two figures `bench --json` keeps."""
    out = []
    for store, kinds in result["stores"].items():
        for kind, f in kinds.items():
            disk = f", on disk {f['disk_bytes_per_message']:.0f} B" if "disk_bytes_per_message" in f else ""
            many = f" (min {f['rss_bytes_per_message_min']:.0f}, max {f['rss_bytes_per_message_max']:.0f}, " \
                   f"median of {f['runs']})" if f["runs"] > 1 else ""
            out.append(f"  state {store:<8} {kind:<8} {f['messages']:,} messages: RSS "
                       f"{f['rss_bytes_per_message']:.0f} B/message{many}, serialized "
                       f"{f['serialized_bytes_per_message']:.0f} B{disk}")
    out.append(f"  state_bytes_per_pending {result['state_bytes_per_pending']}, "
               f"state_bytes_per_finished {result['state_bytes_per_finished']} (memory store, RSS)")
    return out


def run(settings: Settings, n: int, as_json: bool = False, repeat: int = 1) -> int:
    """`bench --state N [--repeat K] [--json]`: both stores; the table (to stderr with --json)."""
    result = measure(settings, n, STORES, repeat, parallel=os.cpu_count() or 1)
    for line in lines(result):
        print(line, file=sys.stderr if as_json else sys.stdout)
    out = settings.data_dir / "bench" / f"state-{n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if as_json:
        print(json.dumps(result))
    return 0
