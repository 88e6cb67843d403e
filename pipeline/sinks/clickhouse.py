"""ClickHouse adapter: one DSN, the embedded chDB engine or a server over HTTP.

`Store` is opened once per process (chDB allows one engine per process) and
serialises calls with a lock, because the sink's inserts and the local API's
queries come from different threads. `prepare_rows` is the pure part of a
write: it turns result rows into table rows carrying both what the row now
contributes to the aggregates and what the row it replaces contributed, so
re-delivered rows (after a crash or a rebalance) never count twice, whatever
the batch boundaries were.
"""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlparse

import clickhouse_connect

from pipeline.config import Settings

MSG_COLUMNS = [
    "message_id", "account_id", "message_class", "priority", "source", "mta", "accepted_at",
    "ready_at", "handling_ms", "status", "verdict_at", "clock_skew", "rev",
    "c_minute", "c_n", "c_within", "c_delayed", "c_latency",
    "p_minute", "p_n", "p_within", "p_delayed",
]
ORPHAN_COLUMNS = ["message_id", "ready_at", "first_seen", "resolved", "rev"]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


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
    return clickhouse_connect.get_client(dsn=dsn, database=parsed.path.strip("/") or None)


def ddl_statements(database: str) -> list[str]:
    """The versioned DDL files, in order, split into statements."""
    out: list[str] = []
    files = sorted(p for p in resources.files("pipeline.ddl").iterdir() if p.name.endswith(".sql"))
    for f in files:
        text = "\n".join(line for line in f.read_text().splitlines() if not line.strip().startswith("--"))
        out += [s.strip().replace("{db}", database) for s in text.split(";") if s.strip()]
    return out


class Store:
    """The process's one ClickHouse connection. Thread-safe by a lock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = settings.database
        self.client = connect(settings)
        self.lock = threading.Lock()

    def migrate(self) -> None:
        """Create the database and apply every DDL file; safe to run at every start."""
        with self.lock:
            self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.db}")
            for stmt in ddl_statements(self.db):
                self.client.command(stmt)

    def query(self, sql: str, readonly: bool = True) -> tuple[list[str], list[tuple]]:
        settings = {"readonly": 1} if readonly else {}
        with self.lock:
            result = self.client.query(sql, settings=settings)
        return list(result.column_names), [tuple(r) for r in result.result_rows]

    def previous(self, message_ids: Sequence[str]) -> dict[str, tuple]:
        """Current (rev, handling_ms, c_minute, c_n, c_within, c_delayed) per message id."""
        out: dict[str, tuple] = {}
        for i in range(0, len(message_ids), 5000):
            chunk = list(message_ids[i:i + 5000])
            with self.lock:
                res = self.client.query(
                    f"SELECT message_id, argMax(tuple(rev, handling_ms, c_minute, c_n, c_within, "
                    f"c_delayed), rev) FROM {self.db}.handling_times_raw "
                    f"WHERE message_id IN %(ids)s GROUP BY message_id",
                    parameters={"ids": chunk},
                )
            for mid, tup in res.result_rows:
                out[mid] = tuple(tup)
        return out

    def write(self, rows: Iterable[dict[str, Any]]) -> int:
        """Insert one batch of result rows. Raises on failure; the caller retries the batch."""
        rows = list(rows)
        msgs = [r for r in rows if r["k"] == "m"]
        orphans = [r for r in rows if r["k"] == "o"]
        written = 0
        if msgs:
            prev = self.previous(sorted({r["message_id"] for r in msgs}))
            table_rows = prepare_rows(msgs, prev)
            if table_rows:
                with self.lock:
                    self.client.insert(f"{self.db}.handling_times_raw", table_rows, column_names=MSG_COLUMNS)
                written += len(table_rows)
        if orphans:
            data = [[o["message_id"], ts(o["ready_at"]), ts(o["first_seen"]), int(o["resolved"]), o["rev"]]
                    for o in orphans]
            with self.lock:
                self.client.insert(f"{self.db}.orphan_events_raw", data, column_names=ORPHAN_COLUMNS)
            written += len(data)
        return written

    def close(self) -> None:
        with self.lock:
            self.client.close()


def contribution(row: dict[str, Any]) -> tuple[datetime, int, int, int]:
    """(minute, messages, within, delayed) this row adds to the aggregates."""
    within = int(row["status"] == "on_time")
    return minute_of(row["verdict_at"]), 1, within, 1 - within


def prepare_rows(rows: list[dict[str, Any]], prev: dict[str, tuple]) -> list[list[Any]]:
    """Table rows for the newest revision of each message not already stored.

    `prev` maps message id -> (rev, handling_ms, c_minute, c_n, c_within, c_delayed)
    of the stored current row. Rows at or below the stored rev are dropped.
    """
    newest: dict[str, dict[str, Any]] = {}
    for r in rows:
        have = newest.get(r["message_id"])
        if have is None or r["rev"] >= have["rev"]:
            newest[r["message_id"]] = r
    out: list[list[Any]] = []
    for mid, r in newest.items():
        p = prev.get(mid)
        if p is not None and p[0] >= r["rev"]:
            continue
        minute, n, within, delayed = contribution(r)
        latency = int(r["handling_ms"] is not None and (p is None or p[1] is None))
        p_minute, p_n, p_within, p_delayed = (p[2], p[3], p[4], p[5]) if p else (minute_of(0), 0, 0, 0)
        out.append([
            mid, r["account_id"], r["message_class"], r["priority"], r["source"], r["mta"],
            ts(r["accepted_at"]), ts(r["ready_at"]), r["handling_ms"], r["status"],
            ts(r["verdict_at"]), int(r["clock_skew"]), r["rev"],
            minute, n, within, delayed, latency, p_minute, p_n, p_within, p_delayed,
        ])
    return out
