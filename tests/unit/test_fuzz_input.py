"""Fuzzed input (issue #10): random bytes and mutated valid events into the parsers and the
join runtime. Bad input only ever becomes a dead letter with a reason that fits the
producer's limit; good input only ever gives rows the sink can store; nothing raises."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable

import orjson
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from pipeline.core.config import load
from pipeline.core.events import (
    MAX_CHARS, MAX_EVENT_BYTES, STORABLE, Accepted, BadEvent, QueueReady, parse_accepted, parse_account,
    parse_ready,
)
from pipeline.stream.runtime import JoinRuntime
from pipeline.store.clickhouse import MSG_COLUMNS, prepare_rows
from pipeline.core.deadletters import DEAD_LETTER_KEY_BYTES, DEAD_LETTER_MAX_BYTES

FUZZ = hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.data_too_large])
ACCEPTED = {"message_id": "m-1", "account_id": "acct", "message_class": "transactional",
            "accepted_at": "2026-10-31T10:00:00.123Z", "priority": "normal", "source": "smtp", "mta": "mta-1",
            "client_error": ""}
READY = {"message_id": "m-1", "ready_at": "2026-10-31T10:04:00Z", "mta": "mta-1"}
ACCOUNT = {"account_id": "acct", "first_send_at": "2026-09-01T00:00:00Z", "rate_limited": False,
           "updated_at": "2026-10-01T00:00:00Z"}

_deep: Any = "x"
for _ in range(1100):  # deeper than orjson's limit of 1024
    _deep = [_deep]
FAR_TIMES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "1900-01-01T00:00:00Z", "2106-02-07T06:28:16Z",
             "1969-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"]
ODD_TIMES = FAR_TIMES + ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2016-12-31T23:59:60Z", "2016-12-31T12:59:60Z",
             "2026-10-31T10:00:00+23:59", "2026-10-31T10:00:00-23:59", "2026-10-31T10:00:00+24:00",
             "2026-10-31T10:00:00-00:00", "2026-10-31t10:00:00z", "2026-10-31T10:00:00.123456789123Z",
             "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2099-12-31T23:59:59.999Z", "2100-01-01T00:00:00Z",
             "2026-02-29T00:00:00Z", "2024-02-29T00:00:00Z", "2026-10-31T25:00:00Z", "2026-10-31T10:00:00",
             "2026-10-31 10:00:00Z", "", " 2026-10-31T10:00:00Z", "2026-10-31T10:00:00Z\n", "٢٠٢٦-10-31T10:00:00Z"]
ODD_VALUES = [None, True, False, 0, -1, 2**63, 1e308, -0.0, 1.5, "", "x" * 300, "é" * 257, "x" * 1025,
              "x" * 300_000, "\u0000", "\ud7ff", "😀", [], {}, [1, 2], {"a": {"b": None}}, "transactional",
              "campaign", "low", "api", "smtp"]

value_of = st.one_of(st.sampled_from(ODD_VALUES), st.sampled_from(ODD_TIMES), st.text(max_size=30),
                     st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())


@st.composite
def mutated(draw: Callable[..., Any], base: dict[str, Any]) -> bytes:
    """A valid event with fields replaced, dropped or added, then maybe damaged as bytes."""
    doc: Any = dict(base)
    for _ in range(draw(st.integers(0, 3))):
        stamps = [k for k in base if k.endswith("_at")]
        name = draw(st.sampled_from([*base, "extra", "nested", *stamps, *stamps]))
        action = draw(st.sampled_from(["set", "set", "time", "time", "drop", "deep"]))
        if action == "drop":
            doc.pop(name, None)
        elif action == "time":
            doc[name] = draw(st.sampled_from(ODD_TIMES))
        elif action == "deep":
            doc[name] = _deep
        else:
            doc[name] = draw(value_of)
    if draw(st.integers(0, 9)) == 0:
        doc = draw(st.sampled_from([[doc], "text", 42, None]))
    try:
        raw = orjson.dumps(doc)
    except orjson.JSONEncodeError:  # too deep for orjson itself: send the text by hand
        raw = b'{"message_id": "m-1", "x": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    damage = draw(st.sampled_from(["none", "none", "none", "utf8", "nan", "cut", "bom", "huge"]))
    if damage == "utf8":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + raw[at:]
    elif damage == "nan":
        raw = raw.replace(b'"acct"', b"NaN", 1).replace(b"false", b"Infinity", 1)
    elif damage == "cut":
        raw = raw[:draw(st.integers(0, len(raw)))]
    elif damage == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif damage == "huge":
        raw = raw[:-1] + b', "pad": "' + b"\xff" * 900_000 + b'"}'
    return raw


@st.composite
def odd_times(draw: Callable[..., Any], base: dict[str, Any]) -> bytes:
    """A valid event but for its timestamps: the ones that pass the schema's pattern but not the sink."""
    doc = dict(base, message_id=draw(st.sampled_from(["m-1", "m-2"])))
    for name in [k for k in base if k.endswith("_at")]:
        doc[name] = draw(st.one_of(st.sampled_from(FAR_TIMES), st.sampled_from(ODD_TIMES), st.just(base[name])))
    return orjson.dumps(doc)


def inputs(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), mutated(base), odd_times(base), odd_times(base))


def _check_parse(parse: Callable[[bytes], Any], raw: bytes) -> Any:
    try:
        ev = parse(raw)
    except BadEvent as exc:
        assert str(exc).strip()
        return None
    assert len(raw) <= MAX_EVENT_BYTES
    for name, limit in MAX_CHARS.items():
        assert len(getattr(ev, name, "") or "") <= limit
    for name in ("accepted_at", "ready_at", "first_send_at", "updated_at"):
        ms = getattr(ev, name, None)
        assert ms is None or STORABLE[0] <= ms < STORABLE[1]
    return ev


@FUZZ
@given(inputs(ACCEPTED))
def test_parse_accepted_returns_a_storable_event_or_raises_bad_event(raw: bytes) -> None:
    ev = _check_parse(parse_accepted, raw)
    assert ev is None or isinstance(ev, Accepted)


@FUZZ
@given(inputs(READY))
def test_parse_ready_returns_a_storable_event_or_raises_bad_event(raw: bytes) -> None:
    ev = _check_parse(parse_ready, raw)
    assert ev is None or isinstance(ev, QueueReady)


@FUZZ
@given(inputs(ACCOUNT))
def test_parse_account_returns_a_storable_record_or_raises_bad_event(raw: bytes) -> None:
    _check_parse(parse_account, raw)


def _storable(row: list[Any]) -> None:
    """The ranges of the ClickHouse column types: DateTime (minute buckets, written as seconds since
    the epoch), DateTime64(3) (written as milliseconds)."""
    col = dict(zip(MSG_COLUMNS, row))
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    for name in ("c_minute", "p_minute"):
        assert isinstance(col[name], int)
        assert 0 <= col[name] < (datetime(2106, 2, 7, tzinfo=timezone.utc) - epoch).total_seconds()
    for name in ("accepted_at", "ready_at", "verdict_at"):
        if col[name] is not None:
            assert isinstance(col[name], int)
            ms = (datetime(1900, 1, 1, tzinfo=timezone.utc) - epoch).total_seconds() * 1000, \
                (datetime(2300, 1, 1, tzinfo=timezone.utc) - epoch).total_seconds() * 1000
            assert ms[0] <= col[name] < ms[1]
    for name in ("message_id", "account_id", "mta", "client_error"):
        assert len(col[name]) <= 1024


# the key: mostly the record's own message id (as a producer sends it), sometimes anything
record = st.tuples(st.sampled_from(["acc", "acc", "ready", "ready", "tick"]), st.integers(0, 1),
                   st.one_of(st.just("own"), st.just("own"), st.just("own"), st.none(),
                             st.sampled_from([b"m-1", b"\xff\xfe", b"k" * 5000]), st.binary(max_size=20)))


def _own_key(raw: bytes) -> bytes | None:
    try:
        mid = orjson.loads(raw).get("message_id")
        return mid.encode("utf-8") if isinstance(mid, str) else None
    except (orjson.JSONDecodeError, AttributeError, UnicodeEncodeError):
        return None


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(record, st.one_of(inputs(ACCEPTED), inputs(READY))), min_size=1, max_size=12),
       st.lists(st.integers(0, 3 * 86_400_000), min_size=1, max_size=3))
def test_the_join_turns_bad_records_into_bounded_dead_letters_and_never_raises(records: list, jumps: list[int]) -> None:
    s = replace(load(), partitions=3, idle_grace_s=0.0, lateness_ms=0)
    table: dict[bytes, bytes] = {}
    rt = JoinRuntime(s, table)
    topics = {"acc": s.topic_accepted, "ready": s.topic_ready, "tick": s.topic_ticks}
    outs = []
    for offset, ((kind, p, key), raw) in enumerate(records):
        value = raw if kind != "tick" else b""
        key = _own_key(raw) if key == "own" else key
        outs += [(raw, o) for o in rt.handle(topics[kind], p, offset, key, value, wall=0.0)]
    # valid late events push the watermark so deadlines fire (overdue, never_ready, orphans)
    base = 1_793_440_800_000
    for i, jump in enumerate(jumps):
        for p in range(2):
            for topic, doc in ((s.topic_accepted, {**ACCEPTED, "message_id": f"j{i}-{p}"}),
                               (s.topic_ready, {**READY, "message_id": f"j{i}-{p}"})):
                doc[("accepted_at" if topic == s.topic_accepted else "ready_at")] = \
                    datetime.fromtimestamp((base + jump) / 1000, tz=timezone.utc).isoformat()
                outs += [(b"", o) for o in rt.handle(topic, p, 0, f"j{i}-{p}".encode(), orjson.dumps(doc), wall=0.0)]
    rows = []
    for raw, out in outs:
        assert out.kind in ("result", "dead_letter", "rekey")
        if out.kind == "dead_letter":
            assert len(out.value) + len(out.key or b"") <= DEAD_LETTER_MAX_BYTES + DEAD_LETTER_KEY_BYTES
            doc = orjson.loads(out.value)
            assert doc["reason"].strip() and doc["original_size"] == len(raw)
        elif out.kind == "rekey":
            assert len(out.value) <= MAX_EVENT_BYTES and len(out.key) <= 4 * 256
        else:
            rows.append(orjson.loads(out.value))
    for row in prepare_rows([r for r in rows if r["k"] == "m"], {}):
        _storable(row)
