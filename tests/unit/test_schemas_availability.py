"""The availability parsers and their JSON Schema files agree on every example (issue #12), and
`replay` routes the records by field."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from pipeline.core.config import Settings
from pipeline.core.events import BadEvent, parse_injection, parse_probe
from pipeline.ops.replay import route

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {name: json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())
           for name in ("mta.injections", "mailsla.probes")}


def _examples(name: str) -> list[bytes]:
    return [line for line in (ROOT / "schemas" / "examples" / name).read_bytes().splitlines() if line.strip()]


def _kind(raw: bytes) -> str:
    return "mta.injections" if b"attempt_id" in raw else "mailsla.probes"


def _schema_ok(raw: bytes) -> bool:
    try:
        jsonschema.validate(orjson.loads(raw), SCHEMAS[_kind(raw)])
        return True
    except (jsonschema.ValidationError, orjson.JSONDecodeError):
        return False


def _parses(raw: bytes) -> bool:
    try:
        (parse_injection if _kind(raw) == "mta.injections" else parse_probe)(raw)
        return True
    except BadEvent:
        return False


@pytest.mark.parametrize("raw", _examples("availability.jsonl") + _examples("availability.malformed.jsonl"))
def test_the_parser_accepts_exactly_what_the_schema_accepts(raw: bytes) -> None:
    assert _parses(raw) == _schema_ok(raw)


def test_all_examples_are_valid_and_all_malformed_ones_are_not() -> None:
    assert all(_schema_ok(r) for r in _examples("availability.jsonl"))
    assert not any(_schema_ok(r) for r in _examples("availability.malformed.jsonl"))


def test_parsed_fields() -> None:
    a = parse_injection(b'{"attempt_id":"x","at":"2026-11-01T01:00:00+01:00","channel":"smtp","outcome":"timeout"}')
    assert (a.attempt_id, a.at, a.channel, a.outcome, a.account_id) == ("x", 1793491200000, "smtp", "timeout", "")
    p = parse_probe(b'{"target":"admin","at":"2026-11-01T00:00:00Z","ok":false,"latency_ms":12}')
    assert (p.target, p.at, p.ok, p.location, p.latency_ms) == ("admin", 1793491200000, False, "", 12.0)


S = Settings(data_dir=Path("/nonexistent"), kafka="127.0.0.1:9", clickhouse="chdb:///nonexistent")


@pytest.mark.parametrize("line,topic,key,problem", [
    (b'{"attempt_id":"a1","at":"2026-11-01T00:00:00Z","channel":"api","outcome":"ok"}', S.topic_injections, b"a1", None),
    (b'{"attempt_id":"a1","at":"2026-11-01T00:00:00Z","channel":"fax","outcome":"ok"}', S.topic_injections, b"a1",
     "channel"),
    (b'{"target":"admin","at":"2026-11-01T00:00:00Z","ok":true}', S.topic_probes, b"admin", None),
    (b'{"target":"admin","at":"2026-11-01T00:00:00Z","ok":"no"}', S.topic_probes, b"admin", "ok"),
    (b'{"target":"admin","at":"2026-11-01T00:00:00Z"}', None, None, "cannot route"),
])
def test_replay_routes_attempts_and_checks_by_field(line: bytes, topic: str | None, key: bytes | None,
                                                    problem: str | None) -> None:
    t, k, p = route(S, line)
    assert (t, k) == (topic, key)
    assert (p is None) if problem is None else (problem in (p or ""))
