"""Quiet logs during an outage: repeated client errors are summarised, not repeated."""
from __future__ import annotations

import logging

from pipeline.stream.faust_internals.lifecycle import RateLimitFilter


def _record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, ("127.0.0.1:9092",), None)


def test_repeated_connection_errors_pass_once_per_window_with_a_count(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr("pipeline.stream.faust_internals.lifecycle.time.monotonic", lambda: now[0])
    f = RateLimitFilter(every=30.0)
    passed = []
    for _ in range(500):  # a broker that is down: aiokafka logs every failed connection
        rec = _record("aiokafka.conn", 'Unable connect to "%s": [Errno 111] Connection refused')
        if f.filter(rec):
            passed.append(rec.getMessage())
        now[0] += 0.125
    assert len(passed) == 3  # at 0 s, 30 s and 60 s of the 62.5 s
    assert "[239 more like this in the last 30s]" in passed[1]


def test_other_records_are_untouched() -> None:
    f = RateLimitFilter(every=30.0)
    for _ in range(5):
        assert f.filter(_record("mailsla.sink", "ClickHouse write failing %s"))
        assert f.filter(_record("aiokafka.conn", "connected to %s", logging.INFO))
