"""The monthly verdict: exact counts from the current message rows.

Pure: builds the SQL and shapes its result; the caller runs the query through
whichever ClickHouse path the process has (local engine or the owner's API).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from pipeline.events import CLASSES

TARGET = 0.99


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """'2026-10' -> [start, end) in UTC. Raises ValueError on anything else."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"--month must be YYYY-MM, got {month!r}")
    y, mo = int(m.group(1)), int(m.group(2))
    start = datetime(y, mo, 1, tzinfo=timezone.utc)
    end = datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def monthly_sql(db: str, month: str) -> str:
    start, end = month_bounds(month)
    f = "%Y-%m-%d %H:%M:%S"
    return (
        "SELECT message_class, count() AS total, countIf(status = 'on_time') AS within, "
        "countIf(status IN ('overdue', 'late', 'never_ready')) AS delayed "
        f"FROM {db}.handling_times "
        f"WHERE accepted_at >= toDateTime64('{start.strftime(f)}', 3, 'UTC') "
        f"AND accepted_at < toDateTime64('{end.strftime(f)}', 3, 'UTC') "
        "GROUP BY message_class ORDER BY message_class"
    )


def verdict(month: str, rows: Sequence[Sequence[Any]], thresholds: Mapping[str, int],
            target: float = TARGET) -> dict[str, Any]:
    """Rows of (class, total, within, delayed) -> the `mailsla sla --json` document.

    A class with no messages is reported with zero counts and compliance 1.0 (met).
    """
    by_class = {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}
    classes: dict[str, Any] = {}
    for cls in CLASSES:
        total, within, delayed = by_class.get(cls, (0, 0, 0))
        compliance = within / total if total else 1.0
        classes[cls] = {
            "total": total, "within": within, "delayed": delayed,
            "compliance": compliance, "target": target,
            "threshold_ms": thresholds[cls], "met": compliance >= target,
        }
    return {"month": month, "classes": classes}


def render(doc: Mapping[str, Any]) -> str:
    lines = [f"SLA {doc['month']} (handling time, accepted -> queue-ready)"]
    lines.append(f"{'class':<14}{'total':>10}{'within':>10}{'delayed':>9}{'compliance':>12}  target  met")
    for cls, c in doc["classes"].items():
        lines.append(f"{cls:<14}{c['total']:>10}{c['within']:>10}{c['delayed']:>9}"
                     f"{c['compliance'] * 100:>11.3f}%  {c['target'] * 100:.0f}%    {'yes' if c['met'] else 'NO'}")
    return "\n".join(lines)
