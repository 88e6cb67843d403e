"""Ad-hoc SQL with limits, on connections of its own: analysts cannot stall ingestion.

Used for everything a person (or a page) asks: `mailsla sql`, the API's `/sql`,
the live page's snapshot and `/metrics`. Each query runs

* on a reader connection, never on the sink's writer connection, so it takes no
  lock the inserts need. The embedded engine (chDB >= 4) allows any number of
  connection handles to its one engine and runs queries on different handles
  in parallel (chdb-core docs, measured in README "Operations"); a server gets
  one HTTP client per reader;
* in the configured database (`MAILSLA_DATABASE`), so `FROM handling_times` works;
* with ClickHouse limits: `max_execution_time` (MAILSLA_SQL_MAX_SECONDS),
  `max_memory_usage` (MAILSLA_SQL_MAX_MEMORY), `max_result_rows`
  (MAILSLA_SQL_MAX_ROWS, `result_overflow_mode = 'throw'`) and `readonly = 1`
  last, so the query's own SETTINGS cannot lift them;
* tagged (`log_comment`), so `cancel(tag)` can `KILL QUERY` it: when the API's
  client goes away, and from a watchdog a few seconds after the time limit in
  case the engine does not check the limit in time.

At most `READERS` queries run at once; a further one waits up to the time limit
for a free reader, then fails with `LimitExceeded`. In the sink's process they run
on threads of their own (`in_thread`), never on asyncio's default executor, which the
sink's writes use: queued or running analyst queries cannot delay a flush.
"""
from __future__ import annotations

import asyncio
import queue
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

import clickhouse_connect

from pipeline.core.config import Settings
from pipeline.core.errors import first_line

READERS = 4
WATCHDOG_GRACE_S = 5.0
T = TypeVar("T")
_EXECUTOR = ThreadPoolExecutor(max_workers=READERS + 2, thread_name_prefix="mailsla-adhoc")
_CODES = {159: "time", 160: "time", 241: "memory", 158: "rows", 396: "rows", 394: "cancelled"}
_NAMES = {"TIMEOUT_EXCEEDED": "time", "TOO_SLOW": "time", "MEMORY_LIMIT_EXCEEDED": "memory",
          "TOO_MANY_ROWS": "rows", "TOO_MANY_ROWS_OR_BYTES": "rows", "QUERY_WAS_CANCELLED": "cancelled"}


class QueryError(Exception):
    """ClickHouse refused or failed the query (bad SQL, a write in read-only mode): the user's error."""


class LimitExceeded(QueryError):
    """The query was stopped by one of the limits (or cancelled); `kind` says which."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def limit_settings(settings: Settings, tag: str, report: bool = False) -> dict[str, Any]:
    """The per-query settings; `readonly` last so nothing after it may change a limit.
    `report`: one of our own commands' queries (`sla`, `faults`): no result-row limit."""
    out: dict[str, Any] = {"max_execution_time": max(1, int(round(settings.sql_max_seconds))),
                           "max_memory_usage": settings.sql_max_memory}
    if not report:
        out.update(max_result_rows=settings.sql_max_rows, result_overflow_mode="throw")
    out["log_comment"] = tag
    if not settings.clickhouse.startswith("chdb://"):
        out["cancel_http_readonly_queries_on_client_close"] = 1  # the server stops it when we hang up
    out["readonly"] = 1
    return out


def classify(settings: Settings, exc: BaseException) -> QueryError:
    """A ClickHouse exception -> LimitExceeded with a clear one-line message, or QueryError."""
    code = getattr(exc, "code", None)
    kind = _CODES.get(code) if isinstance(code, int) else None
    if kind is None:
        m = re.search(r"\(([A-Z_]+)\)\s*$", first_line(exc, 2000))
        kind = _NAMES.get(m.group(1)) if m else None
    if kind == "time":
        return LimitExceeded(f"query stopped: it ran longer than {settings.sql_max_seconds:g} s "
                             "(MAILSLA_SQL_MAX_SECONDS)", kind)
    if kind == "memory":
        return LimitExceeded(f"query stopped: it needed more than {settings.sql_max_memory / 2**20:.0f} MiB of "
                             "memory (MAILSLA_SQL_MAX_MEMORY)", kind)
    if kind == "rows":
        return LimitExceeded(f"query stopped: its result has more than {settings.sql_max_rows} rows "
                             "(MAILSLA_SQL_MAX_ROWS); aggregate or add a LIMIT", kind)
    if kind == "cancelled":
        return LimitExceeded("query cancelled (its client went away, or it overran MAILSLA_SQL_MAX_SECONDS)", kind)
    return QueryError(first_line(exc))


def connect_reader(settings: Settings) -> Any:
    """A client in the configured database (or the server's default while it does not exist yet)."""
    dsn = settings.clickhouse
    for database in (settings.database, None):
        try:
            if dsn.startswith("chdb://"):
                path = Path(dsn[len("chdb://"):]).expanduser().resolve()
                path.mkdir(parents=True, exist_ok=True)
                return clickhouse_connect.get_client(interface="chdb", path=str(path), database=database)
            return clickhouse_connect.get_client(dsn=dsn, database=database,
                                                 send_receive_timeout=int(settings.sql_max_seconds) + 30)
        except Exception as exc:  # noqa: BLE001 - only a missing database is worth a second try
            if database is None or "UNKNOWN_DATABASE" not in str(exc) and getattr(exc, "code", None) != 81:
                raise
    raise AssertionError("unreachable")


class Readers:
    """A small pool of reader connections with the limits applied. Thread-safe."""

    def __init__(self, settings: Settings, size: int = READERS) -> None:
        self.settings, self.size = settings, size
        self.idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self.made = 0
        self.lock = threading.Lock()
        self.control: Any = None  # for KILL QUERY; its own connection, so a kill never waits for a reader
        self.control_lock = threading.Lock()

    def _take(self) -> Any:
        with self.lock:
            if self.idle.empty() and self.made < self.size:
                self.made += 1
                try:
                    return connect_reader(self.settings)
                except Exception:
                    self.made -= 1
                    raise
        try:
            return self.idle.get(timeout=self.settings.sql_max_seconds)
        except queue.Empty:
            raise LimitExceeded(f"busy: {self.size} queries are running; try again", "busy") from None

    def query(self, sql: str, tag: str | None = None, report: bool = False) -> tuple[list[str], list[tuple]]:
        """Run one read-only query with the limits (`report`: without the row limit).
        Raises LimitExceeded or QueryError."""
        if re.match(r"\s*USE\s", sql, re.IGNORECASE):
            raise QueryError("USE is not supported here: the database is MAILSLA_DATABASE; qualify other names")
        tag = tag or new_tag()
        client = self._take()
        watchdog = threading.Timer(self.settings.sql_max_seconds + WATCHDOG_GRACE_S, self.cancel, (tag,))
        watchdog.daemon = True
        watchdog.start()
        try:
            result = client.query(sql, settings=limit_settings(self.settings, tag, report))
            return list(result.column_names), [tuple(r) for r in result.result_rows]
        except Exception as exc:  # noqa: BLE001 - every ClickHouse failure becomes the user's one line
            raise classify(self.settings, exc) from None
        finally:
            watchdog.cancel()
            self.idle.put(client)

    def cancel(self, tag: str) -> None:
        """Stop the query with this tag, if it still runs (KILL QUERY ... ASYNC). Never raises."""
        if not re.fullmatch(r"[A-Za-z0-9_-]+", tag):
            return
        try:
            with self.control_lock:
                if self.control is None:
                    self.control = connect_reader(self.settings)
                self.control.query(f"KILL QUERY WHERE Settings['log_comment'] = '{tag}' ASYNC")
        except Exception:  # noqa: BLE001 - nothing to stop, or the server is gone: the time limit still holds
            pass

    def close(self) -> None:
        while not self.idle.empty():
            try:
                self.idle.get_nowait().close()
            except Exception:  # noqa: BLE001
                pass
        with self.control_lock:
            if self.control is not None:
                self.control.close()
                self.control = None


def new_tag() -> str:
    return f"mailsla-adhoc-{uuid.uuid4().hex[:16]}"


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking ad-hoc work (a query, a snapshot, /metrics) on the ad-hoc threads."""
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, fn, *args)
