"""The event contract: parse raw Kafka values into typed events.

Runs on every input record, so it is strict and cheap. A record that does not
fit raises `BadEvent` with a short reason; the caller sends it to the
dead-letter topic and goes on. `schemas/*.schema.json` describe the same
contract; `tests/unit/test_schemas.py` keeps the two in step.
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
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


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


def parse_ts(value: object, name: str) -> int:
    """RFC 3339 timestamp with offset -> epoch milliseconds (sub-ms digits dropped)."""
    if not isinstance(value, str):
        raise BadEvent(f"{name}: expected an RFC 3339 timestamp string, got {type(value).__name__}")
    if not _RFC3339.match(value):
        raise BadEvent(f"{name}: not an RFC 3339 timestamp with offset: {value[:40]!r}")
    text = value.replace("z", "Z").replace("t", "T")
    frac = re.search(r"\.(\d+)", text)
    if frac and len(frac.group(1)) > 6:  # fromisoformat takes at most microseconds
        text = text.replace(frac.group(0), "." + frac.group(1)[:6])
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadEvent(f"{name}: invalid timestamp {value[:40]!r}: {exc}") from None
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_ts(ms: int) -> str:
    """Epoch milliseconds -> RFC 3339 UTC with milliseconds ("...T10:00:00.123Z")."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _load(raw: bytes) -> dict:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadEvent(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _string(obj: dict, name: str, *, required: bool, nonempty: bool = False) -> str | None:
    if name not in obj or obj[name] is None:
        if required:
            raise BadEvent(f"missing field {name}")
        return None
    value = obj[name]
    if not isinstance(value, str):
        raise BadEvent(f"{name}: expected a string, got {type(value).__name__}")
    if nonempty and not value:
        raise BadEvent(f"{name}: must not be empty")
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
