"""Fuzz the availability parsers and the sink's row builder (issue #12) like tests/unit/test_fuzz_input.py:
random bytes and mutated records give a storable row or a bounded dead letter with a reason, never an
exception."""
from __future__ import annotations

import math

import orjson
from hypothesis import given

from pipeline.core.events import MAX_CHARS, MAX_EVENT_BYTES, STORABLE, BadEvent, parse_injection, parse_probe
from pipeline.core.deadletters import DEAD_LETTER_MAX_BYTES
from pipeline.stream.writer import availability_row
from test_fuzz_input import FUZZ, inputs

INJECTION = {"attempt_id": "a-1", "at": "2026-10-31T10:00:00.123Z", "channel": "api", "outcome": "timeout",
             "account_id": "acct"}
PROBE = {"target": "admin", "at": "2026-10-31T10:00:00Z", "ok": False, "location": "eu", "latency_ms": 12.5}


def _check(parse, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        ev = parse(raw)
    except BadEvent as exc:
        assert str(exc).strip()
        return
    assert len(raw) <= MAX_EVENT_BYTES and STORABLE[0] <= ev.at < STORABLE[1]
    for name, limit in MAX_CHARS.items():
        assert len(getattr(ev, name, "") or "") <= limit
    latency = getattr(ev, "latency_ms", None)
    assert latency is None or (math.isfinite(latency) and latency >= 0)


@FUZZ
@given(inputs(INJECTION))
def test_parse_injection_returns_a_storable_attempt_or_raises_bad_event(raw: bytes) -> None:
    _check(parse_injection, raw)
    row = availability_row(True, "mta.injections", 0, 1, b"k", raw)
    assert row["k"] in ("inj", "dl")
    if row["k"] == "dl":
        assert len(row["record"]) <= DEAD_LETTER_MAX_BYTES and orjson.loads(row["record"])["reason"]


@FUZZ
@given(inputs(PROBE))
def test_parse_probe_returns_a_storable_check_or_raises_bad_event(raw: bytes) -> None:
    _check(parse_probe, raw)
    row = availability_row(False, "mailsla.probes", 0, 1, b"k", raw)
    assert row["k"] in ("probe", "dl")
    if row["k"] == "dl":
        assert len(row["record"]) <= DEAD_LETTER_MAX_BYTES and orjson.loads(row["record"])["reason"]
