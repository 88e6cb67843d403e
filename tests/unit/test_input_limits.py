"""What the parser refuses so the sink never meets a row it cannot store, and the size
bound of dead letters (issue #10: no record can stop the pipeline)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import orjson
import pytest

from pipeline.core.events import (
    MAX_EVENT_BYTES, STORABLE, BadEvent, parse_accepted, parse_account, parse_ready, parse_ts,
)
from pipeline.store.clickhouse import prepare_rows
from pipeline.core.deadletters import (
    DEAD_LETTER_MAX_BYTES, DEAD_LETTER_RAW_BYTES, dead_letter, dead_letter_key, decode_dead_letter_raw,
)

ROOT = Path(__file__).resolve().parents[2]
DL_SCHEMA = json.loads((ROOT / "schemas" / "mailsla.dead_letters.schema.json").read_text())


def _acc(**kw: object) -> bytes:
    return orjson.dumps({"message_id": "m", "account_id": "a", "message_class": "transactional",
                         "accepted_at": "2026-10-31T10:00:00Z", **kw})


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59.999Z",
                                "2100-01-01T00:00:00Z", "1970-01-01T00:30:00+01:00"])
def test_timestamps_outside_the_storable_range_are_refused_with_the_range_in_the_reason(at: str) -> None:
    with pytest.raises(BadEvent, match=re.escape(f"accepted_at: {at} outside the storable range 1970-01-01T00:00:00Z")):
        parse_accepted(_acc(accepted_at=at))
    with pytest.raises(BadEvent, match="ready_at: .* outside the storable range"):
        parse_ready(orjson.dumps({"message_id": "m", "ready_at": at}))
    with pytest.raises(BadEvent, match="first_send_at: .* outside the storable range"):
        parse_account(orjson.dumps({"account_id": "a", "first_send_at": at}))


def test_the_storable_range_fits_clickhouse_datetime_with_room_for_deadlines() -> None:
    assert parse_ts("1970-01-01T00:00:00Z", "t") == STORABLE[0] == 0
    assert parse_ts("2099-12-31T23:59:59.999Z", "t") == STORABLE[1] - 1
    datetime_max_ms = (2**32 - 1) * 1000  # DateTime (UInt32 seconds): the minute buckets of verdict_at
    assert STORABLE[1] + 5 * 365 * 86_400_000 < datetime_max_ms


def test_a_leap_second_is_the_last_millisecond_of_its_minute_and_only_at_2359_utc() -> None:
    assert parse_ts("2016-12-31T23:59:60Z", "t") == parse_ts("2016-12-31T23:59:59.999Z", "t")
    assert parse_ts("2017-01-01T00:59:60.5+01:00", "t") == parse_ts("2016-12-31T23:59:59.999Z", "t")
    with pytest.raises(BadEvent, match="leap second"):
        parse_ts("2016-12-31T12:00:60Z", "t")


@pytest.mark.parametrize("at", ["2026-10-31T10:00:00Z\n", "٢٠٢٦-10-31T10:00:00Z", "2026-10-31T10:00:00+24:00",
                                "2026-10-31T10:00:61Z", "2026-02-30T10:00:00Z"])
def test_odd_timestamps_are_refused(at: str) -> None:
    with pytest.raises(BadEvent, match="accepted_at"):
        parse_accepted(_acc(accepted_at=at))


@pytest.mark.parametrize("name,limit", [("message_id", 256), ("account_id", 256), ("mta", 256),
                                        ("client_error", 1024)])
def test_string_fields_are_bounded(name: str, limit: int) -> None:
    assert getattr(parse_accepted(_acc(**{name: "é" * limit})), name) == "é" * limit
    with pytest.raises(BadEvent, match=f"{name}: {limit + 1} characters, at most {limit}"):
        parse_accepted(_acc(**{name: "x" * (limit + 1)}))


def test_a_record_over_the_size_limit_is_refused_even_when_its_fields_are_fine() -> None:
    raw = _acc(padding="x" * MAX_EVENT_BYTES)
    with pytest.raises(BadEvent, match="record too large"):
        parse_accepted(raw)


def test_an_event_at_the_edges_of_the_range_gives_rows_the_sink_can_build() -> None:
    for at in ("1970-01-01T00:00:00Z", "2099-12-31T23:59:59.999Z"):
        ms = parse_accepted(_acc(accepted_at=at)).accepted_at
        row = {"k": "m", "message_id": "m", "account_id": "a", "message_class": "campaign", "priority": "normal",
               "source": "", "mta": "", "client_error": "", "accepted_at": ms, "ready_at": None, "handling_ms": None,
               "status": "never_ready", "verdict_at": ms + 43_200_000, "clock_skew": False, "rev": 1}
        assert prepare_rows([row], {})


@pytest.mark.parametrize("raw", [b"\xff" * 900_000, b"\x01" * 400_000, "é".encode() * 300_000,
                                 b'{"message_id": "' + b"x" * 2_000_000 + b'"}'])
def test_a_dead_letter_never_exceeds_its_limit_and_says_it_was_cut(raw: bytes) -> None:
    out = dead_letter("mta.accepted", 3, 42, b"\xfe" * 5000, raw, "reason " * 1000)
    assert len(out) <= DEAD_LETTER_MAX_BYTES < 1_000_000
    doc = orjson.loads(out)
    jsonschema.validate(doc, DL_SCHEMA)
    assert doc["truncated"] is True and doc["original_size"] == len(raw)
    kept = decode_dead_letter_raw(doc)
    assert raw.startswith(kept) and DEAD_LETTER_RAW_BYTES - 3 <= len(kept) <= DEAD_LETTER_RAW_BYTES
    assert len(dead_letter_key(b"k" * 5000) or b"") == 1024


def test_a_small_dead_letter_keeps_everything() -> None:
    doc = orjson.loads(dead_letter("t", 0, 1, b"key", b"not json", "invalid JSON"))
    jsonschema.validate(doc, DL_SCHEMA)
    assert (doc["truncated"], doc["original_size"], decode_dead_letter_raw(doc)) == (False, 8, b"not json")
    assert (doc["key"], doc["reason"]) == ("key", "invalid JSON")
