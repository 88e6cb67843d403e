"""The dead-letter record (`schemas/mailsla.dead_letters.schema.json`): what a record no one can use becomes.

Built by the join runtime and the Faust app for an input record they cannot use, by the sink for
a malformed availability record (mta.injections, mailsla.probes), and by `replay` for a bad input
line; sent to the dead-letter topic by each of them. Pure: no Kafka here, so the join runtime can build records
without importing the Kafka adapter.
"""
from __future__ import annotations

import base64
from typing import Any

import orjson

# A dead letter stays well under the producer's request limit (Faust 1,000,000 bytes, aiokafka
# 1 MiB) whatever the record was: the original bytes are cut to DEAD_LETTER_RAW_BYTES and the
# whole encoded record never exceeds DEAD_LETTER_MAX_BYTES.
DEAD_LETTER_RAW_BYTES = 256 * 1024
DEAD_LETTER_KEY_BYTES = 1024
DEAD_LETTER_REASON_CHARS = 1000
DEAD_LETTER_MAX_BYTES = 512 * 1024


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The Kafka key to send a dead letter with: the original key, cut to DEAD_LETTER_KEY_BYTES."""
    return None if key is None else key[:DEAD_LETTER_KEY_BYTES]


def _as_text(b: bytes | None, cut: bool) -> tuple[str | None, bool]:
    """(text, is_base64): UTF-8 text when the bytes are UTF-8 (a character split by the cut
    is dropped), else base64."""
    if b is None:
        return None, False
    for trim in range(4 if cut else 1):
        try:
            return b[:len(b) - trim].decode("utf-8"), False
        except UnicodeDecodeError:
            continue
    return base64.b64encode(b).decode("ascii"), True


def dead_letter(topic: str, partition: int, offset: int, key: bytes | None, raw: bytes,
                reason: str) -> bytes:
    """The dead-letter record: original bytes as text, or base64 when not UTF-8.

    Runs for every record the join (or `replay`) cannot use. Never raises and never exceeds
    DEAD_LETTER_MAX_BYTES: a larger original is cut to its first DEAD_LETTER_RAW_BYTES (the key
    to DEAD_LETTER_KEY_BYTES) and the record says `truncated: true`; `original_size` is always
    the original's length in bytes. Text that JSON escaping would blow up (control characters)
    is sent as base64 instead."""
    raw = raw or b""
    cut_raw, cut_key = raw[:DEAD_LETTER_RAW_BYTES], dead_letter_key(key)
    truncated = len(cut_raw) < len(raw) or (key is not None and len(cut_key or b"") < len(key))
    reason = (reason or "unknown").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(reason) > DEAD_LETTER_REASON_CHARS:
        reason = reason[:DEAD_LETTER_REASON_CHARS - 1] + "…"
    raw_text, raw_b64 = _as_text(cut_raw, len(cut_raw) < len(raw))
    key_text, key_b64 = _as_text(cut_key, cut_key != key)
    doc = {
        "topic": str(topic)[:DEAD_LETTER_REASON_CHARS], "partition": partition, "offset": offset,
        "key": key_text, "key_base64": key_b64,
        "reason": reason, "raw": raw_text, "raw_base64": raw_b64,
        "truncated": truncated, "original_size": len(raw),
    }
    out = orjson.dumps(doc)
    if len(out) > DEAD_LETTER_MAX_BYTES:  # escaped control characters: base64 is at most 4/3
        doc |= {"raw": base64.b64encode(cut_raw).decode("ascii"), "raw_base64": True}
        if key_text is not None and not key_b64:
            doc |= {"key": base64.b64encode(cut_key or b"").decode("ascii"), "key_base64": True}
        out = orjson.dumps(doc)
    return out


def decode_dead_letter_raw(record: dict[str, Any]) -> bytes:
    """The original bytes (as cut) of a decoded dead-letter record: for reading the topic back."""
    raw = record["raw"] or ""
    return base64.b64decode(raw) if record.get("raw_base64") else raw.encode("utf-8")
