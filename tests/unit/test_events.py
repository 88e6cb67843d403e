"""The parser and the JSON Schema files agree on every example."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core import events
from pipeline.core.events import BadEvent, format_ts, parse_accepted, parse_ready, parse_ts

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {name: json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())
           for name in ("mta.accepted", "mta.queue_ready")}


def _examples(name: str) -> list[bytes]:
    return [line for line in (ROOT / "schemas" / "examples" / name).read_bytes().splitlines() if line.strip()]


def _schema_ok(name: str, raw: bytes) -> bool:
    try:
        jsonschema.validate(orjson.loads(raw), SCHEMAS[name])
        return True
    except (jsonschema.ValidationError, orjson.JSONDecodeError):
        return False


@pytest.mark.parametrize("raw", _examples("traffic.jsonl") + _examples("malformed.jsonl"))
def test_the_parser_accepts_exactly_what_the_schema_accepts(raw: bytes) -> None:
    name = "mta.accepted" if b"accepted_at" in raw else "mta.queue_ready"
    parse = parse_accepted if name == "mta.accepted" else parse_ready
    try:
        parse(raw)
        parsed = True
    except BadEvent:
        parsed = False
    assert parsed == _schema_ok(name, raw)


def test_all_traffic_examples_are_valid_and_all_malformed_ones_are_not() -> None:
    assert all(_schema_ok("mta.accepted" if b"accepted_at" in r else "mta.queue_ready", r)
               for r in _examples("traffic.jsonl"))
    assert not any(_schema_ok("mta.accepted" if b"accepted_at" in r else "mta.queue_ready", r)
                   for r in _examples("malformed.jsonl"))


def test_timestamps_with_offsets_become_utc_milliseconds() -> None:
    assert parse_ts("2026-10-31T10:00:00.123Z", "t") == 1793440800123
    assert parse_ts("2026-10-31T11:00:00.123+01:00", "t") == 1793440800123
    assert parse_ts("2026-10-31T10:00:00.123456789Z", "t") == 1793440800123
    assert format_ts(1793440800123) == "2026-10-31T10:00:00.123Z"


@pytest.mark.parametrize("raw,reason", [
    (b"not json", "invalid JSON"),
    (b"[1,2]", "expected a JSON object"),
    (b'{"account_id":"a","message_class":"campaign","accepted_at":"2026-10-31T10:00:00Z"}', "missing field message_id"),
    (b'{"message_id":"x","account_id":"a","message_class":"campaign"}', "missing field accepted_at"),
    (b'{"message_id":"x","account_id":"a","message_class":"campaign","accepted_at":"2026-10-31"}', "accepted_at"),
    (b'{"message_id":"x","account_id":1,"message_class":"campaign","accepted_at":"2026-10-31T10:00:00Z"}', "account_id"),
    (b'{"message_id":"x","account_id":"a","message_class":"bulk","accepted_at":"2026-10-31T10:00:00Z"}', "message_class"),
    (b'{"message_id":"x","account_id":"a","message_class":"campaign","accepted_at":"2026-10-31T10:00:00Z","priority":"high"}', "priority"),
])
def test_a_bad_accepted_event_names_its_problem(raw: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=reason):
        parse_accepted(raw)


def test_unknown_fields_are_ignored_and_defaults_apply() -> None:
    ev = parse_accepted(b'{"message_id":"x","account_id":"a","message_class":"campaign",'
                        b'"accepted_at":"2026-10-31T10:00:00Z","new_field":{"a":1}}')
    assert (ev.priority, ev.source, ev.mta) == ("normal", "", "")


_PARTS = st.tuples(
    st.sampled_from(["1969", "1970", "2024", "2026", "2099", "2100"]), st.sampled_from(["00", "01", "02", "12", "13"]),
    st.sampled_from(["00", "01", "28", "29", "31", "32"]), st.sampled_from(["T", "t", " "]),
    st.sampled_from(["00", "09", "23", "24"]), st.sampled_from(["00", "07", "59", "60", "6x", "٣0"]),
    st.sampled_from(["00", "30", "59", "60", "61", "5x"]), st.sampled_from(["", ".9", ".123", ".000", ".12345", ".1x3"]),
    st.sampled_from(["Z", "z", "+01:00", "-00:30", ""]))


@settings(max_examples=3000, deadline=None)
@given(_PARTS, st.booleans())
def test_the_fast_timestamp_path_agrees_with_the_full_parser(parts: tuple[str, ...], warm: bool) -> None:
    """parse_ts reads the common form from a cache of its hour: same result, same errors."""
    y, mo, d, t, h, mi, s, frac, z = parts
    value = f"{y}-{mo}-{d}{t}{h}:{mi}:{s}{frac}{z}"
    if warm:  # the hour is cached already, from a valid timestamp of it, when one exists
        try:
            parse_ts(f"{y}-{mo}-{d}T{h}:00:00.000Z", "t")
        except BadEvent:
            pass

    def outcome(parse: object) -> object:
        try:
            return parse(value, "t")  # type: ignore[operator]
        except BadEvent as exc:
            return ("bad", str(exc))

    assert outcome(parse_ts) == outcome(events._parse_ts)
