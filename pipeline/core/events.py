"""The event contract: parse raw Kafka values into typed events.

Runs on every input record, so it is strict and cheap. A record that does not
fit raises `BadEvent` with a short reason; the caller sends it to the
dead-letter topic and goes on. `schemas/*.schema.json` describe the same
contract; `tests/unit/test_events.py` keeps the two in step.

Everything that parses is storable: timestamps lie in `STORABLE` (ClickHouse's
`DateTime` columns, the per-minute buckets of verdict time, hold 1970..2106;
`DateTime64(3)` holds 1900..2299; the margin below 2106 leaves room for the
deadlines and horizons the join adds), strings are at most `MAX_CHARS` long and
a record at most `MAX_EVENT_BYTES`. So the sink never meets a row it cannot
insert: a record outside these bounds is a dead letter with the reason, at the
join, and never a batch the sink retries for ever.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

CLASSES = ("transactional", "campaign")
PRIORITIES = ("normal", "low")
SOURCES = ("smtp", "api")

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
# [first, end) in epoch ms: 1970-01-01T00:00:00Z .. 2100-01-01T00:00:00Z (see the module docstring)
STORABLE = (0, 4_102_444_800_000)
MAX_EVENT_BYTES = 256 * 1024  # a whole input record; the fields we keep are a few KiB at most
MAX_CHARS = {"message_id": 256, "account_id": 256, "mta": 256, "client_error": 1024,
             "attempt_id": 256, "target": 256, "location": 256}  # the last three: availability (issue #12)


class BadEvent(ValueError):
    """The record breaks the contract; str(exc) is the dead-letter reason."""


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    account_id: str
    message_class: str
    accepted_at: int  # epoch milliseconds, UTC
    priority: str = "normal"
    source: str = ""  # "" when the producer did not say
    mta: str = ""
    client_error: str = ""  # reason the client caused a failure ("" = none): excluded from the SLA


@dataclass(frozen=True, slots=True)
class QueueReady:
    message_id: str
    ready_at: int  # epoch milliseconds, UTC
    mta: str = ""


_HOURS: dict[str, int] = {}  # "YYYY-MM-DDTHH" -> epoch ms of that UTC hour (the fast path's cache)


def parse_ts(value: object, name: str) -> int:
    """RFC 3339 timestamp with offset -> epoch milliseconds (sub-ms digits dropped).

    A leap second (`23:59:60` UTC) is the last millisecond of its minute, so it stays in its
    day and month. Raises BadEvent outside `STORABLE`.

    Runs twice per message: the common form `YYYY-MM-DDTHH:MM:SS.mmmZ` is read from a cache of
    its hour, checked by the full parser once (`_parse_ts`); anything else takes that parser."""
    if type(value) is str and len(value) == 24 and value[23] == "Z" and value[19] == "." \
            and value[13] == ":" and value[16] == ":":
        hour = _HOURS.get(value[:13])
        tail = value[14:16] + value[17:19] + value[20:23]
        if hour is not None and tail.isascii() and tail.isdigit() and tail[0] < "6" and tail[2] < "6":
            return hour + int(tail[:2]) * 60_000 + int(tail[2:4]) * 1000 + int(tail[4:])
        ms = _parse_ts(value, name)
        if len(_HOURS) >= 4096:  # bounded: a replay moves through hours, old ones are not asked again
            _HOURS.clear()
        _HOURS[value[:13]] = ms - ms % 3_600_000
        return ms
    return _parse_ts(value, name)


def _parse_ts(value: object, name: str) -> int:
    """`parse_ts`, the full parser."""
    if not isinstance(value, str):
        raise BadEvent(f"{name}: expected an RFC 3339 timestamp string, got {type(value).__name__}")
    match = _RFC3339.fullmatch(value)
    if not match:
        raise BadEvent(f"{name}: not an RFC 3339 timestamp with offset: {value[:40]!r}")
    text = value.replace("z", "Z").replace("t", "T")
    leap = match.group(1) == "60"
    if leap:
        text = text[:match.start(1)] + "59" + text[match.end(1):]
    frac = match.group(2)
    if frac and len(frac) > 7:  # fromisoformat takes at most microseconds
        text = text.replace(frac, frac[:7], 1)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadEvent(f"{name}: invalid timestamp {value[:40]!r}: {exc}") from None
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if leap:
        if ms // 60_000 % 1440 != 1439:
            raise BadEvent(f"{name}: second 60 is a leap second only at 23:59 UTC: {value[:40]!r}")
        ms = ms // 60_000 * 60_000 + 59_999
    if not STORABLE[0] <= ms < STORABLE[1]:
        raise BadEvent(f"{name}: {value[:40]} outside the storable range "
                       f"{format_ts(STORABLE[0])[:-5]}Z..{format_ts(STORABLE[1])[:-5]}Z (exclusive)")
    return ms


def format_ts(ms: int) -> str:
    """Epoch milliseconds -> RFC 3339 UTC with milliseconds ("...T10:00:00.123Z")."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _load(raw: bytes) -> dict:
    if len(raw) > MAX_EVENT_BYTES:
        raise BadEvent(f"record too large: {len(raw)} bytes, at most {MAX_EVENT_BYTES}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadEvent(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _string(obj: dict, name: str, *, required: bool, nonempty: bool = False) -> str | None:
    value = obj.get(name)
    if type(value) is str and 0 < len(value) <= 256:  # the common case (every limit is >= 256)
        return value
    if name not in obj or obj[name] is None:
        if required:
            raise BadEvent(f"missing field {name}")
        return None
    value = obj[name]
    if not isinstance(value, str):
        raise BadEvent(f"{name}: expected a string, got {type(value).__name__}")
    if nonempty and not value:
        raise BadEvent(f"{name}: must not be empty")
    limit = MAX_CHARS.get(name)
    if limit is not None and len(value) > limit:
        raise BadEvent(f"{name}: {len(value)} characters, at most {limit}")
    return value


def _choice(obj: dict, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = _string(obj, name, required=default is None and name == "message_class")
    if value is None:
        return default
    if value not in allowed:
        raise BadEvent(f"{name}: {value[:40]!r} is not one of {', '.join(allowed)}")
    return value


def parse_accepted(raw: bytes) -> Accepted:
    obj = _load(raw)
    return Accepted(
        message_id=_string(obj, "message_id", required=True, nonempty=True),  # type: ignore[arg-type]
        account_id=_string(obj, "account_id", required=True),  # type: ignore[arg-type]
        message_class=_choice(obj, "message_class", CLASSES, None),  # type: ignore[arg-type]
        accepted_at=parse_ts(obj["accepted_at"], "accepted_at") if "accepted_at" in obj
        else _missing("accepted_at"),
        priority=_choice(obj, "priority", PRIORITIES, "normal"),  # type: ignore[arg-type]
        source=_choice(obj, "source", SOURCES, "") or "",
        mta=_string(obj, "mta", required=False) or "",
        client_error=_string(obj, "client_error", required=False) or "",
    )


def parse_ready(raw: bytes) -> QueueReady:
    obj = _load(raw)
    return QueueReady(
        message_id=_string(obj, "message_id", required=True, nonempty=True),  # type: ignore[arg-type]
        ready_at=parse_ts(obj["ready_at"], "ready_at") if "ready_at" in obj else _missing("ready_at"),
        mta=_string(obj, "mta", required=False) or "",
    )


def _missing(name: str) -> int:
    raise BadEvent(f"missing field {name}")


@dataclass(frozen=True, slots=True)
class Account:
    """A record of the compacted topic mailsla.accounts (latest per account wins)."""

    account_id: str
    first_send_at: int | None  # epoch ms; None = unknown (no introductory period applied)
    rate_limited: bool
    updated_at: int | None = None


def parse_account(raw: bytes) -> Account:
    obj = _load(raw)
    limited = obj.get("rate_limited", False)
    if not isinstance(limited, bool):
        raise BadEvent(f"rate_limited: expected true or false, got {type(limited).__name__}")
    first = obj.get("first_send_at")
    updated = obj.get("updated_at")
    return Account(
        account_id=_string(obj, "account_id", required=True, nonempty=True),  # type: ignore[arg-type]
        first_send_at=None if first is None else parse_ts(first, "first_send_at"),
        rate_limited=limited,
        updated_at=None if updated is None else parse_ts(updated, "updated_at"),
    )


# -- availability (issue #12): injection attempts and synthetic probe checks ------------------
CHANNELS = ("api", "smtp")
OUTCOMES = ("ok", "client_error", "server_error", "timeout")


@dataclass(frozen=True, slots=True)
class Injection:
    """One submission attempt (mta.injections, key attempt_id): the same attempt_id twice is one attempt."""

    attempt_id: str
    at: int  # epoch ms, UTC
    channel: str
    outcome: str
    account_id: str = ""  # "" when the producer did not say


@dataclass(frozen=True, slots=True)
class Probe:
    """One synthetic check (mailsla.probes, key target): the same (target, location, at) twice is one check."""

    target: str
    at: int  # epoch ms, UTC
    ok: bool
    location: str = ""
    latency_ms: float | None = None


def _required_choice(obj: dict, name: str, allowed: tuple[str, ...]) -> str:
    value = _string(obj, name, required=True)
    if value not in allowed:
        raise BadEvent(f"{name}: {str(value)[:40]!r} is not one of {', '.join(allowed)}")
    return value  # type: ignore[return-value]


def parse_injection(raw: bytes) -> Injection:
    obj = _load(raw)
    return Injection(
        attempt_id=_string(obj, "attempt_id", required=True, nonempty=True),  # type: ignore[arg-type]
        at=parse_ts(obj["at"], "at") if "at" in obj else _missing("at"),
        channel=_required_choice(obj, "channel", CHANNELS),
        outcome=_required_choice(obj, "outcome", OUTCOMES),
        account_id=_string(obj, "account_id", required=False) or "",
    )


def parse_probe(raw: bytes) -> Probe:
    obj = _load(raw)
    ok = obj.get("ok")
    if "ok" not in obj:
        raise BadEvent("missing field ok")
    if not isinstance(ok, bool):
        raise BadEvent(f"ok: expected true or false, got {type(ok).__name__}")
    latency = obj.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float))
                                or latency < 0):
        raise BadEvent(f"latency_ms: expected a number >= 0, got {str(latency)[:40]!r}")
    return Probe(
        target=_string(obj, "target", required=True, nonempty=True),  # type: ignore[arg-type]
        at=parse_ts(obj["at"], "at") if "at" in obj else _missing("at"),
        ok=ok,
        location=_string(obj, "location", required=False) or "",
        latency_ms=None if latency is None else float(latency),
    )
