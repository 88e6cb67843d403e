"""How a command fails: the exceptions `pipeline.cli.main` turns into one line on stderr and an exit code.

Raised while a command runs, by the commands (pipeline/*/commands.py) and the CLI's ClickHouse path
(pipeline/store/reader.py). Pure, no I/O. Exit codes: UsageError and Unreachable 2, OwnerBusy 1,
LimitHit 3. StoreError is the join worker's, not a command's: it stops the worker (exit 1).
"""
from __future__ import annotations

class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit 2."""


class OwnerBusy(Exception):
    """The database cannot be opened now: one line on stderr, exit 1."""


class Unreachable(Exception):
    """Kafka or a ClickHouse server does not answer: one line on stderr, exit 2."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut to `limit` characters, for one-line errors and
    log lines; an empty message gives the exception's type name. Never raises."""
    text = str(exc).strip()
    return (text.splitlines()[0][:limit] if text else "") or type(exc).__name__


class StoreError(Exception):
    """The join state's store failed (a read, a write, or the rebuild after an assignment): not a
    fault of one record, so the join worker stops non-zero for a restart instead of turning record
    after record into internal-error dead letters while its health check says ok (issue #18)."""


class LimitHit(Exception):
    """A query stopped by MAILSLA_SQL_MAX_SECONDS/_MEMORY/_ROWS: one line on stderr, exit 3."""
