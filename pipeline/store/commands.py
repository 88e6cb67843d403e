"""The read-only commands over the stored verdicts: `sql`, `sla`, `availability`, `faults`.

Each runs once per invocation, in the CLI process, through the CLI's ClickHouse path
(pipeline/store/reader.py); bad input raises UsageError (exit 2), a query stopped by a limit
LimitHit (exit 3).
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline.core import sla
from pipeline.core.config import Settings
from pipeline.core.errors import UsageError
from pipeline.store.reader import reader

def cmd_sla(args: argparse.Namespace, s: Settings) -> int:
    account = args.account
    if account is not None and not account:
        raise UsageError("mailsla sla: --account must not be empty")
    try:
        sql_text = sla.monthly_sql(s.database, args.month, args.by_account, account)
    except ValueError as exc:
        raise UsageError(f"mailsla sla: {exc}") from None
    query, close = reader(s, migrate=True, report=True)
    try:
        _, rows = query(sql_text)
    finally:
        close()
    target = s.policy.objective if s.policy else sla.TARGET
    doc = sla.verdict(args.month, rows, s.threshold_ms, target, args.by_account, account)
    print(json.dumps(doc, indent=2) if args.json else sla.render(doc))
    return 0


def month_and_account(args: argparse.Namespace, s: Settings, command: str) -> Any:
    """The policy, once --month and --account are valid (UsageError otherwise)."""
    from pipeline.core import availability, policy

    if args.account is not None and not args.account:
        raise UsageError(f"mailsla {command}: --account must not be empty")
    pol = s.policy or policy.load()
    try:
        availability.month_span(args.month, pol.timezone)
    except ValueError as exc:
        raise UsageError(f"mailsla {command}: {exc}") from None
    return pol


def cmd_availability(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.core import availability

    account = args.account
    pol = month_and_account(args, s, "availability")
    query, close = reader(s, migrate=True)
    try:
        doc = availability.compute(query, s.database, pol, args.month, account)
    finally:
        close()
    print(json.dumps(doc, indent=2) if args.json else availability.render(doc))
    return 0


def cmd_faults(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.core import policy
    from pipeline.store import reports

    pol = s.policy or policy.load()
    query, close = reader(s, migrate=True, report=True)
    try:
        found = reports.faults(s, pol, query, open_only=args.open, kinds=args.kind)
    finally:
        close()
    print(json.dumps(found, indent=2) if args.json else reports.render_faults(found))
    return 0


def cmd_sql(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.store import reports

    query, close = reader(s)
    try:
        cols, rows = query(args.query)
    finally:
        close()
    reports.print_rows(cols, rows, args.format)
    return 0
