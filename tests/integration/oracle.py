"""Expected results computed directly from a JSONL traffic file (no pipeline code
beyond the timestamp parser), for messages whose two events are both present."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from pipeline.core.events import parse_ts

THRESHOLD = {"transactional": 1_800_000, "campaign": 43_200_000}


NEVER_READY_MS = 72 * 3_600_000


def expected(path: Path, wm_end: int | None = None) -> dict[str, dict[str, Any]]:
    """Rows of messages with both events; with `wm_end` (the final watermark, live mode) also the
    accepted-only ones whose deadline or never-ready horizon it has passed."""
    acc: dict[str, tuple[int, str, str]] = {}
    ready: dict[str, int] = {}
    for line in path.read_bytes().splitlines():
        e = orjson.loads(line)
        if "accepted_at" in e:
            t = parse_ts(e["accepted_at"], "")
            reason = "low_priority" if e.get("priority") == "low" else "client_error" if e.get("client_error") else ""
            if e["message_id"] not in acc or t < acc[e["message_id"]][0]:
                acc[e["message_id"]] = (t, e["message_class"], reason)
        else:
            t = parse_ts(e["ready_at"], "")
            ready[e["message_id"]] = min(t, ready.get(e["message_id"], t))
    out = {}
    for mid, (a, cls, reason) in acc.items():
        if mid in ready:
            h = max(0, ready[mid] - a)
            out[mid] = {"handling_ms": h, "status": "on_time" if h <= THRESHOLD[cls] else "late",
                        "message_class": cls, "accepted_at": a, "exclusion_reason": reason}
        elif wm_end is not None and wm_end > a + THRESHOLD[cls]:
            out[mid] = {"handling_ms": None, "status": "never_ready" if wm_end > a + NEVER_READY_MS else "overdue",
                        "message_class": cls, "accepted_at": a, "exclusion_reason": reason}
    return out


def monthly(rows: dict[str, dict[str, Any]], month: str) -> dict[str, Counter]:
    from datetime import datetime, timezone

    out: dict[str, Counter] = {"transactional": Counter(), "campaign": Counter()}
    for r in rows.values():
        if datetime.fromtimestamp(r["accepted_at"] / 1000, tz=timezone.utc).strftime("%Y-%m") == month:
            c = out[r["message_class"]]
            c["total"] += 1
            if r["exclusion_reason"]:  # the exclusions the events themselves carry
                c["excluded"] += 1
                continue
            c["eligible"] += 1
            c["within"] += r["status"] == "on_time"
            c["delayed"] += r["status"] != "on_time"
    return out
