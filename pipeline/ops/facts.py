"""Facts the SLA exclusions need: account facts and planned maintenance windows.

`mailsla accounts load FILE` and `mailsla maintenance add|remove` publish them
to their compacted topics; the sink writes them to ClickHouse (`accounts`,
`maintenance_windows`), where the `handling_times` view applies them. Because
they are applied when queried, facts loaded after the mail still count, and a
replay gives the same verdicts whatever the order. Input is validated in
full before anything is published: a bad line publishes nothing.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import orjson

from pipeline.core.config import Settings
from pipeline.core.events import BadEvent, parse_account, parse_ts
from pipeline.ops.replay import produce_all
from pipeline.store.clickhouse import maintenance_record


class FactError(ValueError):
    """Bad user input; the message is one line."""


def account_records(path: Path) -> list[tuple[bytes, bytes]]:
    """(key, value) per account from a JSONL file (or one JSON array); raises FactError."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise FactError(f"{path}: {exc.strerror}") from None
    if text.lstrip().startswith(b"["):
        try:
            items = [(i + 1, orjson.dumps(o)) for i, o in enumerate(orjson.loads(text))]
        except orjson.JSONDecodeError as exc:
            raise FactError(f"{path}: invalid JSON: {exc}") from None
    else:
        items = [(n, line) for n, line in _lines(text)]
    out = []
    for n, raw in items:
        try:
            out.append((parse_account(raw).account_id.encode(), raw))
        except BadEvent as exc:
            raise FactError(f"{path}:{n}: {exc}") from None
    if not out:
        raise FactError(f"{path}: no accounts in the file")
    return out


def _lines(text: bytes) -> Iterator[tuple[int, bytes]]:
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield n, line.strip()


def load_accounts(settings: Settings, path: Path) -> int:
    records = account_records(path)
    return asyncio.run(produce_all(settings, ((settings.topic_accounts, k, v) for k, v in records),
                                   len(records), "accounts"))


def window(start: str, end: str) -> tuple[int, int]:
    try:
        s, e = parse_ts(start, "--start"), parse_ts(end, "--end")
    except BadEvent as exc:
        raise FactError(str(exc)) from None
    if e <= s:
        raise FactError("--end must be after --start")
    return s, e


def publish_window(settings: Settings, start: str, end: str, reason: str, deleted: bool = False) -> dict:
    s, e = window(start, end)
    key, value = maintenance_record(s, e, reason, deleted)
    asyncio.run(produce_all(settings, [(settings.topic_maintenance, key, value)], 1, "maintenance"))
    return orjson.loads(value)
