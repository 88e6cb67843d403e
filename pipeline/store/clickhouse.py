"""ClickHouse adapter: one DSN, the embedded chDB engine or a server over HTTP.

`Store` is opened once per process (chDB allows one engine per process). Its
writer connection serialises the sink's inserts and internal reads with a lock;
ad-hoc SQL (the CLI, the API, the live page) goes through `Store.adhoc`, on
reader connections of its own with limits (pipeline/store/adhoc.py), so a heavy
analyst query never holds up an insert. `prepare_rows` is the pure part of a
write: it turns result rows into table rows carrying both what the row now
contributes to the aggregates and what the row it replaces contributed, so
re-delivered rows (after a crash or a rebalance) never count twice, whatever
the batch boundaries were.
"""
from __future__ import annotations

import gc
import hashlib
import threading
import time
import uuid
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlparse

import clickhouse_connect
import orjson

from pipeline.store.adhoc import Readers
from pipeline.store.cluster import cluster_statements, local_table
from pipeline.core.config import Settings
from pipeline.core.policy import Policy, load as load_policy

MSG_COLUMNS = [
    "message_id", "account_id", "message_class", "priority", "source", "mta", "client_error", "accepted_at",
    "ready_at", "handling_ms", "status", "verdict_at", "clock_skew", "clock_suspect", "rev",
    "c_minute", "c_n", "c_within", "c_delayed", "c_latency",
    "p_minute", "p_n", "p_within", "p_delayed",
]
ORPHAN_COLUMNS = ["message_id", "ready_at", "first_seen", "resolved", "rev"]
ACCOUNT_COLUMNS = ["account_id", "first_send_at", "rate_limited", "updated_at", "version"]
WINDOW_COLUMNS = ["window_id", "start_at", "end_at", "reason", "origin", "deleted", "version"]
FAULT_COLUMNS = ["fault_id", "kind", "severity", "message_class", "opened_at", "resolved_at", "peak_share",
                 "delayed", "eligible", "last_event", "version"]
INJECTION_COLUMNS = ["attempt_id", "at", "channel", "outcome", "account_id"]
PROBE_COLUMNS = ["target", "location", "at", "ok", "latency_ms"]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Cluster mode (MAILSLA_CLICKHOUSE_CLUSTER): an insert through a Distributed table returns once the
# rows are on their shard (not queued), on a majority of its replicas, and the revision lookup reads
# only from replicas that have every such insert, so the sink always sees what it wrote last.
CLUSTER_INSERT_SETTINGS = {"insert_distributed_sync": 1, "insert_quorum": "auto", "insert_quorum_parallel": 0}
CLUSTER_READ_SETTINGS = {"select_sequential_consistency": 1}


def ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def utc(dt: datetime) -> datetime:
    """ClickHouse hands back naive UTC datetimes; make them comparable with ours."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def minute_of(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 60_000 * 60, tz=timezone.utc)


def connect(settings: Settings) -> Any:
    """A clickhouse-connect client for the DSN (creates the chDB directory if needed)."""
    dsn = settings.clickhouse
    if dsn.startswith("chdb://"):
        path = Path(dsn[len("chdb://"):]).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(interface="chdb", path=str(path))
    parsed = urlparse(dsn)
    return clickhouse_connect.get_client(dsn=dsn, database=parsed.path.strip("/") or None,
                                         settings=dict(CLUSTER_INSERT_SETTINGS) if settings.clickhouse_cluster else None)


def ddl_params(database: str, policy: Policy | None) -> dict[str, str]:
    """What the DDL's `{placeholders}` stand for: the database and the policy's numbers."""
    p = policy or load_policy()
    return {"db": database, "tz": p.timezone, "objective": repr(p.objective), "intro_s": str(p.intro_ms // 1000),
            "surge_multiple": repr(p.surge_multiple), "surge_min": str(p.surge_min_messages),
            "surge_baseline_s": str(p.surge_baseline_ms // 1000),
            "surge_baseline_hours": str(p.surge_baseline_ms // 3_600_000)}


def ddl_statements(database: str, policy: Policy | None = None, cluster: str = "") -> list[str]:
    """The versioned DDL files, in order, split into statements, placeholders filled in.

    With `cluster` (MAILSLA_CLICKHOUSE_CLUSTER) they are rewritten for that ClickHouse cluster:
    Replicated*MergeTree local tables and Distributed tables, ON CLUSTER (pipeline/store/cluster.py)."""
    params = ddl_params(database, policy)
    out: list[str] = []
    files = sorted(p for p in resources.files("pipeline.store.ddl").iterdir() if p.name.endswith(".sql"))
    for f in files:
        text = "\n".join(line for line in f.read_text().splitlines() if not line.strip().startswith("--"))
        for stmt in (s.strip() for s in text.split(";")):
            if stmt:
                for k, v in params.items():
                    stmt = stmt.replace("{" + k + "}", v)
                out.append(stmt)
    return cluster_statements(out, cluster, database) if cluster else out


class Store:
    """The process's ClickHouse connections: one writer (thread-safe by a lock) and the readers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = settings.database
        self.cluster = settings.clickhouse_cluster  # "" = one node
        self.on_cluster = f" ON CLUSTER '{self.cluster}'" if self.cluster else ""
        self.client = connect(settings)
        self.lock = threading.Lock()
        self.dirty: set[datetime] = set()  # minutes to rebuild after a failed write
        self.readers = Readers(settings)  # ad-hoc SQL, opened on first use

    def migrate(self) -> None:
        """Create the database and apply every DDL file; safe to run at every start, from any
        process (the CLI too): it writes no rows."""
        with self.lock:
            self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.db}{self.on_cluster}")
            for stmt in ddl_statements(self.db, self.settings.policy, self.cluster):
                self.client.command(stmt)

    def start_writing(self) -> None:
        """The sink's start: the policy's maintenance windows, then crash recovery.

        Policy windows are written with version 0, so a `maintenance remove` (a newer version)
        stays removed. With the embedded engine this sink is the only writer, so every
        unfinished batch is a crashed one; with a server, other sinks may be mid-insert, so only
        batches older than a minute are taken as crashed (the sink looks again every 5 min)."""
        policy = self.settings.policy or load_policy()
        self.write([maintenance_row(w.start_ms, w.end_ms, w.reason, "policy", version=0)
                    for w in policy.maintenance])
        self.recover(self.crash_age_s)
        # What is alive now (modules, drivers, types) lives as long as the process: out of the
        # cyclic GC's way, which otherwise walks it again on every full pass while batches of
        # row dicts come and go (+10-14% rows/s in the sink-alone bench)
        gc.freeze()

    @property
    def crash_age_s(self) -> int:
        """How old an unfinished batch must be to count as crashed (see `start_writing`)."""
        return 0 if self.settings.clickhouse.startswith("chdb://") else 60

    def recover(self, min_age_s: int = 0) -> None:
        """Rebuild the aggregates of the minutes touched by batches that never finished.

        Runs at the sink's start, periodically with a server, and before the next write after a
        failed one. Idempotent: rebuilding a minute that was fine gives the same minute."""
        with self.lock:
            rows = self.client.query(
                f"SELECT batch_id, any(minutes) FROM {self.db}.sink_journal GROUP BY batch_id "
                f"HAVING countIf(state = 'done') = 0 AND max(at) < now64(3) - INTERVAL {int(min_age_s)} SECOND"
            ).result_rows
        ids = [r[0] for r in rows]
        minutes = sorted({utc(m) for r in rows for m in r[1]} | self.dirty)
        if minutes:
            self.rebuild(minutes)
        if ids:
            self._journal([(i, [], "done") for i in ids])
        self.dirty.clear()

    def rebuild(self, minutes: Sequence[datetime]) -> None:
        """Replace these minutes of both aggregate tables by what the current rows say."""
        mins = ", ".join(f"toDateTime('{m:%Y-%m-%d %H:%M:%S}', 'UTC')" for m in minutes)
        for table, account in (("handling_minutely", ""), ("handling_minutely_account", "account_id, ")):
            with self.lock:
                self.client.command(f"ALTER TABLE {self.db}.{local_table(table, self.cluster)}{self.on_cluster} "
                                    f"DELETE WHERE minute IN ({mins}) SETTINGS mutations_sync = 2")
                self.client.command(
                    f"INSERT INTO {self.db}.{table} (minute, message_class, {account}messages, within, delayed, latency) "
                    f"SELECT c_minute AS minute, message_class, {account}count(), countIf(status = 'on_time'), "
                    f"countIf(status != 'on_time'), quantilesTDigestStateIf(0.5, 0.9, 0.99, 0.999)"
                    f"(assumeNotNull(handling_ms), handling_ms IS NOT NULL) "
                    f"FROM {self.db}.handling_times_raw FINAL WHERE c_minute IN ({mins}) AND c_n != 0 "
                    f"GROUP BY minute, message_class{', account_id' if account else ''}")

    def _journal(self, entries: list[tuple[str, list[datetime], str]]) -> None:
        with self.lock:
            self.client.insert(f"{self.db}.sink_journal", [list(e) for e in entries],
                               column_names=["batch_id", "minutes", "state"])

    def query(self, sql: str, readonly: bool = True) -> tuple[list[str], list[tuple]]:
        settings = {"readonly": 1} if readonly else {}
        with self.lock:
            result = self.client.query(sql, settings=settings)
        return list(result.column_names), [tuple(r) for r in result.result_rows]

    def adhoc(self, sql: str, tag: str | None = None, report: bool = False) -> tuple[list[str], list[tuple]]:
        """Ad-hoc read-only SQL with the MAILSLA_SQL_* limits, off the writer's lock (`report`: our
        own commands' queries, no result-row limit). Raises adhoc.LimitExceeded (stopped by a
        limit) or adhoc.QueryError (bad SQL)."""
        return self.readers.query(sql, tag, report)

    def cancel(self, tag: str) -> None:
        """Stop the ad-hoc query with this tag (its client went away)."""
        self.readers.cancel(tag)

    def previous(self, message_ids: Sequence[str]) -> dict[str, tuple]:
        """Current (rev, handling_ms, c_minute, c_n, c_within, c_delayed) per message id; c_minute
        in seconds since the epoch, as `prepare_rows` writes it."""
        out: dict[str, tuple] = {}
        for ids, size in _id_sets(message_ids):
            settings = {"max_query_size": size + 4096, **(CLUSTER_READ_SETTINGS if self.cluster else {})}
            with self.lock:
                res = self.client.query(
                    f"SELECT message_id, argMax(tuple(rev, handling_ms, toUnixTimestamp(c_minute), c_n, c_within, "
                    f"c_delayed), rev) FROM {self.db}.handling_times_raw "
                    f"WHERE message_id IN ({ids}) GROUP BY message_id", settings=settings)
            for mid, tup in res.result_rows:
                out[mid] = tuple(tup)
        return out

    def write(self, rows: Iterable[dict[str, Any]]) -> int:
        """Insert one batch of result rows. Raises on failure; the caller retries the batch."""
        rows = list(rows)
        msgs = [r for r in rows if r["k"] == "m"]
        orphans = [r for r in rows if r["k"] == "o"]
        written = self._insert_plain(rows)
        if msgs:
            prev = self.previous(sorted({r["message_id"] for r in msgs}))
            cols = prepare_columns(msgs, prev)
            if self.dirty:  # a failed write may have landed without its aggregates
                self.recover(self.crash_age_s)
            if cols[0]:
                c, p, pn = (cols[MSG_COLUMNS.index(k)] for k in ("c_minute", "p_minute", "p_n"))
                minutes = sorted(datetime.fromtimestamp(m, tz=timezone.utc)
                                 for m in set(c) | {m for m, n in zip(p, pn) if n})
                batch = uuid.uuid4().hex
                self._journal([(batch, minutes, "begin")])
                try:
                    with self.lock:
                        # optimize_on_insert=0: each batch holds one row per message already, and the
                        # views' GROUP BY one row per key: merging the block again only costs (~20%)
                        self.client.insert(f"{self.db}.handling_times_raw", cols, column_names=MSG_COLUMNS,
                                           column_oriented=True, settings={"optimize_on_insert": 0})
                except Exception:
                    self.dirty.update(minutes)  # rows may be in without their aggregates: rebuild first
                    raise
                self._journal([(batch, [], "done")])
                written += len(cols[0])
        if orphans:
            data = [[o["message_id"], ts(o["ready_at"]), ts(o["first_seen"]), int(o["resolved"]), o["rev"]]
                    for o in orphans]
            with self.lock:
                self.client.insert(f"{self.db}.orphan_events_raw", data, column_names=ORPHAN_COLUMNS)
            written += len(data)
        return written

    def _insert_plain(self, rows: list[dict[str, Any]]) -> int:
        """Account facts, maintenance windows and faults: ReplacingMergeTree rows, idempotent."""
        plain = {
            "accounts": (ACCOUNT_COLUMNS, [[r["account_id"], ts(r["first_send_at"]), int(r["rate_limited"]),
                                            ts(r["updated_at"]), r["version"]] for r in rows if r["k"] == "acct"]),
            "maintenance_windows": (WINDOW_COLUMNS, [[r["window_id"], ts(r["start_ms"]), ts(r["end_ms"]), r["reason"],
                                                      r["origin"], int(r["deleted"]), r["version"]]
                                                     for r in rows if r["k"] == "mw"]),
            "faults": (FAULT_COLUMNS, [[r[c] if c not in ("opened_at", "resolved_at") else ts(r[c])
                                        for c in FAULT_COLUMNS] for r in rows if r["k"] == "fault"]),
            # availability (issue #12): duplicates are absorbed by the views (ddl/003)
            "injections_raw": (INJECTION_COLUMNS, [[r["attempt_id"], ts(r["at"]), r["channel"], r["outcome"],
                                                    r["account_id"]] for r in rows if r["k"] == "inj"]),
            "probes_raw": (PROBE_COLUMNS, [[r["target"], r["location"], ts(r["at"]), int(r["ok"]), r["latency_ms"]]
                                           for r in rows if r["k"] == "probe"]),
        }
        n = 0
        for table, (cols, data) in plain.items():
            if data:
                with self.lock:
                    self.client.insert(f"{self.db}.{table}", data, column_names=cols)
                n += len(data)
        return n

    def close(self) -> None:
        self.readers.close()
        with self.lock:
            self.client.close()


def prepare_rows(rows: list[dict[str, Any]], prev: dict[str, tuple]) -> list[list[Any]]:
    """`prepare_columns` as rows (one list per table row, in MSG_COLUMNS order)."""
    return [list(r) for r in zip(*prepare_columns(rows, prev))]


def prepare_columns(rows: list[dict[str, Any]], prev: dict[str, tuple]) -> list[list[Any]]:
    """The table rows for the newest revision of each message not already stored, as columns
    (one list per MSG_COLUMNS entry: the insert takes them as they are, no transposing).

    `prev` maps message id -> (rev, handling_ms, c_minute, c_n, c_within, c_delayed)
    of the stored current row. Rows at or below the stored rev are dropped. Times are
    written as integers, as ClickHouse stores them (DateTime64(3): ms; DateTime:
    seconds, the minutes): no datetime objects on the way in.
    """
    newest: dict[str, dict[str, Any]] = {}
    for r in rows:
        have = newest.get(r["message_id"])
        if have is None or r["rev"] >= have["rev"]:
            newest[r["message_id"]] = r
    keep: list[dict[str, Any]] = []
    derived: list[tuple[int, ...]] = []
    for mid, r in newest.items():
        p = prev.get(mid)
        if p is not None and p[0] >= r["rev"]:
            continue
        # a verdict decided by an untrusted future timestamp adds nothing to the aggregates:
        # the live view and the fault rule never see it
        if r.get("clock_suspect") == "ahead":
            c_minute, n, within, delayed = 0, 0, 0, 0
        else:
            within = 1 if r["status"] == "on_time" else 0
            c_minute, n, delayed = r["verdict_at"] // 60_000 * 60, 1, 1 - within
        handling = r["handling_ms"]
        latency = int(n == 1 and handling is not None and (p is None or p[1] is None))
        keep.append(r)
        derived.append((c_minute, n, within, delayed, latency) + ((p[2], p[3], p[4], p[5]) if p else (0, 0, 0, 0)))
    cols = [[r[name] for r in keep] for name in MSG_COLUMNS[:6]]
    cols.append([r.get("client_error", "") for r in keep])
    cols += [[r[name] for r in keep] for name in ("accepted_at", "ready_at", "handling_ms", "status", "verdict_at")]
    cols.append([int(r["clock_skew"]) for r in keep])
    cols.append([r.get("clock_suspect", "") for r in keep])
    cols.append([r["rev"] for r in keep])
    cols += [list(c) for c in zip(*derived)] if derived else [[] for _ in range(9)]
    return cols


_SEP = "\x1f"  # ASCII unit separator: joins message ids into one string literal


def _id_sets(ids: Sequence[str]) -> Iterable[tuple[str, int]]:
    """What goes in `message_id IN (...)` for a batch's ids, with the query size it needs.

    One string literal split by ClickHouse (`arrayJoin(splitByChar(...))`): parsing 20,000
    separate literals took most of the lookup's time (124 ms against 14 ms for 20k ids
    absent from the table, 157 against 34 present; chDB, 2026-12-01). Ids that contain the
    separator, which no sane MTA sends, go as literal lists (`_in_lists`)."""
    plain = [i for i in ids if _SEP not in i]
    if plain:
        literal = _quote(_SEP.join(plain))
        yield f"SELECT arrayJoin(splitByChar('\\x1f', {literal}))", len(literal)
    for chunk in _in_lists([i for i in ids if _SEP in i]):
        yield chunk, len(chunk)


def _in_lists(values: Sequence[str], max_chars: int = 200_000) -> Iterable[str]:
    """String literals joined by commas, in pieces that keep a query under ClickHouse's
    max_query_size (256 KiB); quoted here: the driver's parameter binding is ~10x slower."""
    chunk: list[str] = []
    size = 0
    for v in values:
        q = _quote(v)
        if chunk and size + len(q) + 1 > max_chars:
            yield ",".join(chunk)
            chunk, size = [], 0
        chunk.append(q)
        size += len(q) + 1
    if chunk:
        yield ",".join(chunk)


def _quote(s: str) -> str:
    """A ClickHouse string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def window_id(start_ms: int, end_ms: int) -> str:
    """A maintenance window's id: the same window added twice is one window."""
    return hashlib.sha1(f"{start_ms}/{end_ms}".encode()).hexdigest()[:12]


def maintenance_row(start_ms: int, end_ms: int, reason: str, origin: str, deleted: bool = False,
                    version: int | None = None) -> dict[str, Any]:
    return {"k": "mw", "window_id": window_id(start_ms, end_ms), "start_ms": start_ms, "end_ms": end_ms,
            "reason": reason, "origin": origin, "deleted": deleted,
            "version": int(time.time() * 1000) if version is None else version}


def maintenance_record(start_ms: int, end_ms: int, reason: str, deleted: bool = False) -> tuple[bytes, bytes]:
    """(key, value) of a mailsla.maintenance record, as `mailsla maintenance add|remove` writes it."""
    from pipeline.core.events import format_ts

    wid = window_id(start_ms, end_ms)
    return wid.encode(), orjson.dumps({"window_id": wid, "start": format_ts(start_ms), "end": format_ts(end_ms),
                                       "reason": reason, "deleted": deleted, "version": int(time.time() * 1000)})


def maintenance_record_row(value: bytes) -> dict[str, Any]:
    """A mailsla.maintenance record -> its table row. Raises ValueError/KeyError when malformed."""
    from pipeline.core.events import parse_ts

    doc = orjson.loads(value)
    start, end = parse_ts(doc["start"], "start"), parse_ts(doc["end"], "end")
    if end <= start:
        raise ValueError("end must be after start")
    return maintenance_row(start, end, str(doc.get("reason") or ""), "cli", bool(doc.get("deleted")),
                           int(doc.get("version") or 0))
