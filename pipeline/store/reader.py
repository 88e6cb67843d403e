"""The CLI's path to ClickHouse: the owner's local API, or a connection of its own.

Opened once per command that reads (`sql`, `sla`, `availability`, `report`, `faults`,
`maintenance list`, `web`, `top`); closed when it ends. Failures are the command's: see `reader`.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from pipeline.core.config import Settings
from pipeline.core.errors import LimitHit, OwnerBusy, Unreachable, UsageError, first_line
from pipeline.store import api

Query = Callable[[str], tuple[list[str], list[Sequence[Any]]]]


def reader(settings: Settings, migrate: bool = False, report: bool = False) -> tuple[Query, Callable[[], None]]:
    """Read-only SQL with the MAILSLA_SQL_* limits (pipeline/store/adhoc.py), in the configured database:
    through the owner's local API (with its token) when a worker holds the embedded database,
    else a connection of our own (chDB files or a server). `report`: our own commands' queries
    (`sla`, `faults`), without the result-row limit. A query stopped by a limit raises
    LimitHit (exit 3), any other SQL error UsageError (exit 2)."""
    url = api.find(settings) if settings.clickhouse.startswith("chdb://") else None
    if url:
        from pipeline.store.guard import read_token, token_path

        try:
            token = read_token(settings)
        except OSError as exc:
            raise OwnerBusy(f"mailsla: cannot read the API token {token_path(settings)} ({exc.strerror}); run as "
                            "the worker's user or set MAILSLA_API_TOKEN") from None

        def remote(sql_text: str) -> tuple[list[str], list[Sequence[Any]]]:
            try:
                return api.remote_query(url, sql_text, token, timeout=settings.sql_max_seconds + 30, report=report)
            except api.RemoteError as exc:
                raise (LimitHit if exc.limit else UsageError)(f"sql: {exc}") from None
        return remote, lambda: None
    from pipeline.store.adhoc import LimitExceeded, QueryError
    from pipeline.store.clickhouse import Store

    try:
        store = Store(settings)
    except Exception as exc:  # noqa: BLE001 - typically: another process holds the embedded files
        if not settings.clickhouse.startswith("chdb://"):
            raise Unreachable(f"mailsla: cannot reach ClickHouse at {settings.redacted_dsn}: "
                              f"{first_line(exc)}") from None
        raise OwnerBusy(f"mailsla: cannot open ClickHouse at {settings.redacted_dsn} "
                        f"({str(exc).strip().splitlines()[-1][:200]}); is a worker starting? retry") from None
    if migrate:
        store.migrate()

    def local(sql_text: str) -> tuple[list[str], list[Sequence[Any]]]:
        try:
            return store.adhoc(sql_text, report=report)
        except LimitExceeded as exc:
            raise LimitHit(f"sql: {exc}") from None
        except QueryError as exc:  # a ClickHouse error is the user's SQL error
            raise UsageError(f"sql: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. another process holds the embedded files
            raise OwnerBusy(f"mailsla: cannot query ClickHouse at {settings.redacted_dsn} "
                            f"({str(exc).strip().splitlines()[-1][:200]})") from None
    return local, store.close
