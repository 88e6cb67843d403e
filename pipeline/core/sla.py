"""The monthly verdict: exact counts from the current message rows, after exclusions.

Pure: builds the SQL over the `sla_monthly` / `sla_monthly_by_account` views
(pipeline/store/ddl/002) and shapes its result; the caller runs the query through
whichever ClickHouse path the process has (local engine or the owner's API).
The views and this module apply the same definitions:

- `total`: messages accepted in the month (in the policy's time zone) with a verdict;
- `excluded`: by reason, one reason per message (EXCLUSION_REASONS, first that applies);
- `eligible` = total - excluded; `within` / `delayed` count eligible messages only;
- `compliance` = within / eligible (1.0 when nothing is eligible), `met` = compliance >= target;
- `budget_remaining` = floor((1 - target) * eligible) - delayed: delayed messages the
  month can still take before it is lost (negative once it is).
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from pipeline.core.events import CLASSES

TARGET = 0.99
# the order in which they are checked: a message gets the first that applies
EXCLUSION_REASONS = ("low_priority", "client_error", "maintenance", "introductory_period", "rate_limited",
                     "volume_surge")
COUNTS = ("total", *(f"excluded_{r}" for r in EXCLUSION_REASONS), "within", "delayed")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """'2026-10' -> [start, end) in UTC. Raises ValueError on anything else."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"--month must be YYYY-MM, got {month!r}")
    y, mo = int(m.group(1)), int(m.group(2))
    start = datetime(y, mo, 1, tzinfo=timezone.utc)
    end = datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def monthly_sql(db: str, month: str, by_account: bool = False, account: str | None = None) -> str:
    """The query behind `mailsla sla`; rows are (account_id or '', class, *COUNTS)."""
    month_bounds(month)  # validates
    cols = ", ".join(COUNTS)
    if not by_account and account is None:
        return f"SELECT '' AS account_id, message_class, {cols} FROM {db}.sla_monthly WHERE month = '{month}'"
    where = f"month = '{month}'"
    if account is not None:
        where += " AND account_id = '" + account.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return (f"SELECT account_id, message_class, {cols} FROM {db}.sla_monthly_by_account "
            f"WHERE {where} ORDER BY account_id, message_class")


def class_verdict(counts: Mapping[str, int], threshold_ms: int, target: float) -> dict[str, Any]:
    """One class's numbers from its counts (see the module docstring for the definitions)."""
    total, within, delayed = counts.get("total", 0), counts.get("within", 0), counts.get("delayed", 0)
    excluded = {r: counts.get(f"excluded_{r}", 0) for r in EXCLUSION_REASONS}
    eligible = total - sum(excluded.values())
    compliance = within / eligible if eligible else 1.0
    return {
        "total": total, "excluded": excluded, "eligible": eligible, "within": within, "delayed": delayed,
        "compliance": compliance, "target": target, "threshold_ms": threshold_ms, "met": compliance >= target,
        "budget_remaining": math.floor(eligible * (1 - target) + 1e-9) - delayed,
    }


def _classes(rows: Sequence[Sequence[Any]], thresholds: Mapping[str, int], target: float) -> dict[str, Any]:
    by_class = {str(r[1]): dict(zip(COUNTS, (int(v) for v in r[2:]))) for r in rows}
    return {cls: class_verdict(by_class.get(cls, {}), thresholds[cls], target) for cls in CLASSES}


def verdict(month: str, rows: Sequence[Sequence[Any]], thresholds: Mapping[str, int],
            target: float = TARGET, by_account: bool = False, account: str | None = None) -> dict[str, Any]:
    """Rows of `monthly_sql` -> the `mailsla sla --json` document.

    A class with no messages is reported with zero counts and compliance 1.0 (met).
    With `account`, `classes` are that account's; with `by_account`, `accounts` maps each
    account id to its own `classes` next to the totals.
    """
    if account is not None:
        return {"month": month, "account_id": account, "classes": _classes(rows, thresholds, target)}
    if not by_account:
        return {"month": month, "classes": _classes(rows, thresholds, target)}
    accounts: dict[str, list[Sequence[Any]]] = {}
    for r in rows:
        accounts.setdefault(str(r[0]), []).append(r)
    totals: dict[str, list[int]] = {}
    for r in rows:
        acc = totals.setdefault(str(r[1]), [0] * len(COUNTS))
        for i, v in enumerate(r[2:]):
            acc[i] += int(v)
    total_rows = [("", cls, *v) for cls, v in totals.items()]
    return {"month": month, "classes": _classes(total_rows, thresholds, target),
            "accounts": {a: {"classes": _classes(rs, thresholds, target)} for a, rs in sorted(accounts.items())}}


def render(doc: Mapping[str, Any]) -> str:
    title = f"SLA {doc['month']} (handling time, accepted -> queue-ready)"
    lines = [title + (f", account {doc['account_id']}" if "account_id" in doc else "")]
    lines += _table(doc["classes"])
    for acc, sub in doc.get("accounts", {}).items():
        lines += ["", f"account {acc}", *_table(sub["classes"])]
    return "\n".join(lines)


def _table(classes: Mapping[str, Any]) -> list[str]:
    out = [f"{'class':<14}{'total':>9}{'excluded':>10}{'eligible':>10}{'within':>9}{'delayed':>9}"
           f"{'compliance':>12}  target  met  budget left"]
    for cls, c in classes.items():
        excluded = sum(c["excluded"].values())
        out.append(f"{cls:<14}{c['total']:>9}{excluded:>10}{c['eligible']:>10}{c['within']:>9}{c['delayed']:>9}"
                   f"{c['compliance'] * 100:>11.3f}%  {c['target'] * 100:.0f}%    {'yes' if c['met'] else 'NO ':<3}"
                   f"  {c['budget_remaining']:>11}")
        reasons = ", ".join(f"{r} {n}" for r, n in c["excluded"].items() if n)
        if reasons:
            out.append(f"{'':<14}excluded: {reasons}")
    return out
