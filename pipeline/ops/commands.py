"""The operating commands: `kafka`, `replay`, `ingest`, `generate`, `report`, `accounts`, `maintenance`,
`demo`, `bench`.

Each runs once per invocation in the CLI process. Bad input raises UsageError (exit 2) before
anything is produced or written; Kafka that cannot be reached raises Unreachable (exit 2); a
produce that fails part-way prints what was acknowledged and returns 1.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import orjson

from pipeline.core.config import Settings
from pipeline.core.errors import Unreachable, UsageError
from pipeline.store.commands import month_and_account
from pipeline.store.reader import reader

def cmd_kafka(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.ops.localkafka import KafkaError, LocalKafka, PortTaken

    lk = LocalKafka(s.data_dir / "kafka")
    try:
        if args.action == "up":
            print(lk.up())
        elif args.action == "down":
            print("stopped" if lk.down() else "not running")
        else:
            if lk.running():
                print(f"running {lk.bootstrap()}")
            else:
                print("not running")
                return 1
    except PortTaken as exc:
        print(f"mailsla kafka: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"mailsla kafka: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_replay(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.ops.replay import ProduceFailed, replay

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"mailsla replay: no such file: {path}")
    try:
        stats = replay(s, path)
    except ProduceFailed as exc:
        print(json.dumps(getattr(exc, "stats", {}) | {"error": exc.reason}))
        if exc.sent == 0:
            raise Unreachable(f"mailsla replay: cannot reach Kafka at {s.kafka}: {exc.reason}") from None
        print(f"mailsla replay: Kafka at {s.kafka} failed after {exc.acked} of {exc.sent} records produced were "
              f"acknowledged ({exc.reason}); run the same replay again: results are de-duplicated",
              file=sys.stderr)
        return 1
    print(json.dumps(stats))
    return 0


def cmd_ingest(args: argparse.Namespace, s: Settings) -> int:
    import os

    from pipeline.core.mta import mapping
    from pipeline.ops import ingest
    from pipeline.ops.logfollow import Unreadable

    try:
        cfg = mapping.load(args.config or os.environ.get("MAILSLA_INGEST_CONFIG") or None)
    except mapping.MappingError as exc:
        raise UsageError(f"mailsla ingest: {exc}") from None
    paths = [Path(p) for p in args.logs]
    for p in paths:
        if p.is_dir():
            raise UsageError(f"mailsla ingest: cannot read {p}: is a directory")
        if not p.parent.is_dir():
            raise UsageError(f"mailsla ingest: cannot read {p}: no such directory")
        if args.no_follow and not p.exists():  # following, a log that is not there yet is waited for
            raise UsageError(f"mailsla ingest: cannot read {p}: no such file")
        if p.exists() and not os.access(p, os.R_OK):
            raise UsageError(f"mailsla ingest: cannot read {p}: permission denied")
    if len({p.resolve() for p in paths}) < len(paths):
        raise UsageError("mailsla ingest: a log is named twice")
    try:
        return ingest.run(s, args.mta, paths, cfg, from_start=args.from_start, follow=not args.no_follow,
                          host=args.host)
    except Unreadable as exc:
        raise UsageError(f"mailsla ingest: cannot read {exc}") from None


def cmd_generate(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.ops import generator
    from pipeline.core.events import parse_ts
    from pipeline.ops.replay import ProduceFailed, produce_all

    from pipeline.core.policy import PolicyError, duration_ms

    if args.rate <= 0 or args.duration <= 0:
        raise UsageError("mailsla generate: --rate and --duration must be > 0")
    try:
        incident = stall = None
        if args.incident:
            start_, dur, share, delay = args.incident.split(",")
            incident = generator.Incident(duration_ms(start_, "START"), duration_ms(dur, "DURATION"),
                                          float(share), duration_ms(delay, "DELAY"))
            if not 0 <= incident.share <= 1:
                raise ValueError("SHARE must be between 0 and 1")
        if args.stall:
            start_, dur = args.stall.split(",")
            stall = generator.Stall(duration_ms(start_, "START"), duration_ms(dur, "DURATION"))
    except (ValueError, PolicyError) as exc:
        raise UsageError(f"mailsla generate: --incident START,DURATION,SHARE,DELAY / --stall START,DURATION "
                         f"(durations like 10m): {exc}") from None
    profile = generator.Profile(incident=incident, stall=stall)
    if args.out:
        start = parse_ts(args.start, "--start") if args.start else int(time.time() * 1000)
        with open(args.out, "wb") as f:
            f.writelines(generator.to_jsonl(generator.simulated(args.rate, args.duration, args.seed, start, profile)))
        return 0
    topics = {"accepted": s.topic_accepted, "ready": s.topic_ready}
    events = generator.live(args.rate, args.duration, args.seed, profile)
    records = ((topics[kind], ev["message_id"].encode(), orjson.dumps(ev)) for kind, ev in events)
    try:
        n = asyncio.run(produce_all(s, records, int(args.rate * args.duration * 2), "generate"))
    except ProduceFailed as exc:
        print(json.dumps({"events": exc.acked, "error": exc.reason}))
        if exc.sent == 0:
            raise Unreachable(f"mailsla generate: cannot reach Kafka at {s.kafka}: {exc.reason}") from None
        print(f"mailsla generate: Kafka at {s.kafka} failed after {exc.acked} events were acknowledged "
              f"({exc.reason})", file=sys.stderr)
        return 1
    print(json.dumps({"events": n}))
    return 0


def cmd_report(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.ops import report

    account = args.account
    pol = month_and_account(args, s, "report")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UsageError(f"mailsla report: no such directory for --out: {out.parent}")
    if args.pdf and not Path(args.pdf).parent.is_dir():
        raise UsageError(f"mailsla report: no such directory for --pdf: {Path(args.pdf).parent}")
    query, close = reader(s, migrate=True)
    try:
        data = report.gather(s, pol, query, args.month, account)
    finally:
        close()
    out.write_text(report.render(data), encoding="utf-8")
    print(json.dumps({"html": str(out)}))
    if args.pdf:
        problem = report.print_pdf(out, Path(args.pdf))
        if problem:
            print(f"mailsla report: cannot print the PDF: {problem}", file=sys.stderr)
            return 2
        print(json.dumps({"pdf": args.pdf}))
    return 0


def cmd_accounts(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.ops import facts

    try:
        n = facts.load_accounts(s, Path(args.file))
    except facts.FactError as exc:
        raise UsageError(f"mailsla accounts load: {exc}") from None
    print(json.dumps({"accounts": n, "topic": s.topic_accounts}))
    return 0


def cmd_maintenance(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.ops import facts

    if args.action == "list":
        query, close = reader(s, migrate=True, report=True)
        try:
            cols, rows = query(f"SELECT window_id, start_at, end_at, reason, origin FROM {s.database}."
                               "maintenance_windows FINAL WHERE deleted = 0 ORDER BY start_at")
        finally:
            close()
        from pipeline.store import reports

        reports.print_rows(cols, rows, "json" if args.json else "table")
        return 0
    if not args.start or not args.end:
        raise UsageError(f"mailsla maintenance {args.action}: --start and --end are required")
    try:
        doc = facts.publish_window(s, args.start, args.end, args.reason, deleted=args.action == "remove")
    except facts.FactError as exc:
        raise UsageError(f"mailsla maintenance {args.action}: {exc}") from None
    print(json.dumps(doc))
    return 0


def cmd_demo(args: argparse.Namespace, s: Settings) -> int:
    if args.mta:
        from pipeline.ops import mtademo

        if args.messages < 1 or args.pause < 0 or args.duration <= 0:
            raise UsageError("mailsla demo: --messages must be >= 1, --pause >= 0, --duration > 0")
        return mtademo.run(s, duration=args.duration, messages=args.messages, pause=args.pause)
    from pipeline.ops.demo import run

    return run(s, duration=args.duration, rate=args.rate)


def cmd_bench(args: argparse.Namespace, s: Settings) -> int:
    if args.repeat < 1:
        raise UsageError("mailsla bench: --repeat K needs K >= 1")
    sizes = {k: v for k, v in (("sink_messages", args.sink_messages), ("state_messages", args.state_messages))
             if v is not None}
    state = [] if args.state is None else [args.state]
    if args.events < 2 or min([*sizes.values(), *state], default=1) < 1:
        raise UsageError("mailsla bench: --events needs at least 2 (one message); --state, --sink-messages "
                         "and --state-messages at least 1")
    if args.state is not None:
        from pipeline.ops.statebench import run as run_state

        return run_state(s, args.state, as_json=args.json, repeat=args.repeat)
    if args.noop_worker:
        from pipeline.ops.bench import noop_worker

        return noop_worker(s, args.noop_worker, args.events, args.noop_path)
    from pipeline.ops.bench import run

    return run(s, events=args.events, as_json=args.json, repeat=args.repeat, **sizes)
