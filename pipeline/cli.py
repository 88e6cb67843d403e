"""`mailsla` command line. Every command has --help; bad input exits 2 with one line; a query
stopped by one of the MAILSLA_SQL_* limits exits 3 with one line.

Parsing and dispatch only: each command lives with its concept (pipeline/{store,stream,live,ops}/commands.py).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from pipeline.core import config
from pipeline.core.config import ConfigError
from pipeline.core.errors import LimitHit, OwnerBusy, Unreachable, UsageError, first_line
from pipeline.live.commands import cmd_top, cmd_web
from pipeline.ops.commands import (cmd_accounts, cmd_bench, cmd_demo, cmd_generate, cmd_ingest, cmd_kafka,
                                   cmd_maintenance, cmd_replay, cmd_report)
from pipeline.store.commands import cmd_availability, cmd_faults, cmd_sla, cmd_sql
from pipeline.stream.commands import cmd_sink, cmd_status, cmd_worker

__all__ = ["LimitHit", "OwnerBusy", "Unreachable", "UsageError", "build_parser", "main"]

class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> Parser:
    p = Parser(prog="mailsla", description="Handling-time SLA pipeline for MTAs (Kafka, Faust, ClickHouse).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    k = sub.add_parser("kafka", help="local single-node Kafka for development, tests and the demo")
    k.add_argument("action", choices=["up", "down", "status"])
    k.set_defaults(func=cmd_kafka)

    w = sub.add_parser("worker", help="run the join worker (and the ClickHouse sink)")
    w.add_argument("--no-sink", action="store_true", help="do not write ClickHouse here (run `mailsla sink`)")
    w.add_argument("--loglevel", default="warning", choices=["debug", "info", "warning", "error"])
    w.add_argument("--processes", type=int, metavar="N",
                   help="N join processes in the app's group plus one sink process, supervised here "
                        "(restarted with backoff if they die); without it: one process, join and sink")
    w.set_defaults(func=cmd_worker)

    sk = sub.add_parser("sink", help="run only the ClickHouse sink (results topic -> ClickHouse)")
    sk.add_argument("--loglevel", default="warning", choices=["debug", "info", "warning", "error"])
    sk.set_defaults(func=cmd_sink)

    r = sub.add_parser("replay", help="produce events from a JSONL file")
    r.add_argument("file")
    r.set_defaults(func=cmd_replay)

    ig = sub.add_parser(
        "ingest", help="follow Postfix or Exim logs and produce their accepted and queue-ready events",
        description="Follow MTA logs like `tail -F` (rotation by rename or copytruncate, files that do not exist yet) "
                    "and produce mta.accepted / mta.queue_ready events keyed by message_id. The position is saved in "
                    "$MAILSLA_DATA/ingest/ only after Kafka acknowledged the events, so a restart repeats at most one "
                    "batch and loses nothing. Memory: a state per message in flight (accepted, not yet ready), about "
                    "600 bytes per Postfix message and 300 per Exim message (100,000 messages stuck behind a stopped "
                    "queue manager: about 60 MB); it is saved with the position (about 150 bytes each). Mapping and "
                    "MTA-side settings: README, Ingesting MTA logs.")
    ig.add_argument("mta", choices=["postfix", "exim"])
    ig.add_argument("logs", nargs="+", metavar="LOG", help="log files (Postfix maillog_file or syslog; Exim mainlog)")
    ig.add_argument("--config", help="ingest configuration (YAML) on top of the shipped pipeline/core/mta/ingest.yaml "
                                     "(default: $MAILSLA_INGEST_CONFIG)")
    ig.add_argument("--from-start", action="store_true",
                    help="read every log from its oldest rotated file (.1, .gz, ...) on, ignoring a saved position")
    ig.add_argument("--no-follow", action="store_true", help="stop at the end of the files instead of following them")
    ig.add_argument("--host", help="Exim: the host name of these logs (its log names none); default exim.host, "
                                   "else this machine's")
    ig.set_defaults(func=cmd_ingest)

    g = sub.add_parser("generate", help="synthetic traffic (live to Kafka, or --out FILE)")
    g.add_argument("--rate", type=float, required=True, help="messages per second")
    g.add_argument("--duration", type=float, required=True, help="seconds (of event time with --out)")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--out", help="write JSONL here in simulated time instead of producing")
    g.add_argument("--start", help="with --out: RFC 3339 time of the first message (default now)")
    g.add_argument("--incident", metavar="START,DURATION,SHARE,DELAY",
                   help="e.g. 10m,45m,0.3,35m: from 10 min in, for 45 min, 30%% of transactional mail takes 35-70 min")
    g.add_argument("--stall", metavar="START,DURATION", help="e.g. 20m,40m: no queue-ready at all for 40 min")
    g.set_defaults(func=cmd_generate)

    sl = sub.add_parser("sla", help="monthly verdict per class")
    sl.add_argument("--month", required=True, help="YYYY-MM (calendar month in the policy's time zone)")
    sl.add_argument("--json", action="store_true")
    sl.add_argument("--by-account", action="store_true", help="also every account's own verdict")
    sl.add_argument("--account", help="only this account's verdict")
    sl.set_defaults(func=cmd_sla)

    av = sub.add_parser("availability", help="monthly availability per channel and probe target, and the credit")
    av.add_argument("--month", required=True, help="YYYY-MM (calendar month in the policy's time zone)")
    av.add_argument("--json", action="store_true")
    av.add_argument("--account", help="only this account's attempts (probes are global)")
    av.set_defaults(func=cmd_availability)

    rp = sub.add_parser("report", help="the monthly SLA report for a customer (self-contained HTML, optional PDF)")
    rp.add_argument("--month", required=True, help="YYYY-MM (calendar month in the policy's time zone)")
    rp.add_argument("--account", help="only this account (probes are global)")
    rp.add_argument("--out", required=True, help="the HTML file to write")
    rp.add_argument("--pdf", help="also print it to this PDF with headless Chromium (exit 2 when there is none)")
    rp.set_defaults(func=cmd_report)

    ac = sub.add_parser("accounts", help="account facts for exclusions (introductory period, rate limit)")
    ac.add_argument("action", choices=["load"])
    ac.add_argument("file", help="JSONL (or a JSON array): account_id, first_send_at, rate_limited, updated_at")
    ac.set_defaults(func=cmd_accounts)

    mt = sub.add_parser("maintenance", help="planned maintenance windows (mail accepted inside is excluded)")
    mt.add_argument("action", choices=["add", "remove", "list"])
    mt.add_argument("--start", help="RFC 3339, e.g. 2026-11-03T02:00:00Z")
    mt.add_argument("--end", help="RFC 3339, after --start")
    mt.add_argument("--reason", default="planned maintenance")
    mt.add_argument("--json", action="store_true", help="list: JSON")
    mt.set_defaults(func=cmd_maintenance)

    fl = sub.add_parser("faults", help="semi-critical faults (over 10%% of verdicts delayed), from the verdicts")
    fl.add_argument("--json", action="store_true")
    fl.add_argument("--open", action="store_true", help="only faults still open")
    fl.add_argument("--kind", choices=["semi_critical", "critical", "burn_rate", "oldest_pending", "all"],
                    default="semi_critical", help="semi_critical faults (default), critical faults (a channel "
                    "unavailable, a probe incident), burn_rate alerts, oldest_pending alerts (as announced live), or all")
    fl.set_defaults(func=cmd_faults)

    q = sub.add_parser("sql", help="read-only ad-hoc SQL on the configured ClickHouse",
                       description="Read-only SQL in the configured database (MAILSLA_DATABASE), with the limits "
                                   "MAILSLA_SQL_MAX_SECONDS, _MAX_MEMORY and _MAX_ROWS. Exit 2: bad SQL; exit 3: "
                                   "stopped by a limit.")
    q.add_argument("query")
    q.add_argument("--format", choices=["table", "json", "csv"], default="table")
    q.set_defaults(func=cmd_sql)

    st = sub.add_parser("status", help="lag, pending writes, dead letters, pending messages")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    wb = sub.add_parser("web", help="serve the live page, /metrics and /readyz (the sink serves them too)")
    wb.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    wb.add_argument("--port", type=int, default=8643, help="port (default 8643; the sink's own page is on 8642)")
    wb.set_defaults(func=cmd_web)

    tp = sub.add_parser("top", help="the live numbers in the terminal")
    tp.add_argument("--once", action="store_true", help="print one frame and exit")
    tp.set_defaults(func=cmd_top)

    d = sub.add_parser("demo", help="the whole pipeline on local Kafka with generated traffic")
    d.add_argument("--duration", type=float, default=120.0, help="seconds (default 120)")
    d.add_argument("--rate", type=float, default=200.0, help="messages per second (default 200)")
    d.add_argument("--mta", choices=["postfix"], help="instead of the generator: a real Postfix on loopback "
                   "(as root, Debian's postfix package) feeding `mailsla ingest`, its queue manager stopped a while")
    d.add_argument("--messages", type=int, default=3000, help="with --mta: messages sent (default 3000)")
    d.add_argument("--pause", type=float, default=45.0, help="with --mta: seconds the queue manager is stopped "
                                                             "(default 45; the demo's threshold is 20 s)")
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="end-to-end events/s against the raw aiokafka ceiling")
    b.add_argument("--events", type=int, default=1_000_000)
    b.add_argument("--repeat", type=int, default=1, metavar="K",
                   help="run every figure K times; report the median with min and max (default 1)")
    b.add_argument("--sink-messages", type=int, metavar="N",
                   help="messages the sink-alone runs write twice (first verdicts, revisions; default 100000)")
    b.add_argument("--state-messages", type=int, metavar="N",
                   help="messages of the join-state runs (default 1000000)")
    b.add_argument("--state", type=int, metavar="N", help="instead: join-state memory with N messages in flight")
    b.add_argument("--json", action="store_true", help="print one JSON object (the table goes to stderr)")
    b.add_argument("--noop-worker", metavar="PATH", help=argparse.SUPPRESS)  # the bench's own child process
    b.add_argument("--noop-path", default="batched", help=argparse.SUPPRESS)  # which no-op agent it runs
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    from aiokafka.errors import KafkaError

    from pipeline.ops.replay import ProduceFailed

    # Without a configured handler, the clients' own error records (one per failed connection) would
    # reach stderr through logging's last resort next to our one line. Workers configure logging
    # themselves (records still propagate to the root handlers they install).
    for name in ("aiokafka", "clickhouse_connect"):
        logging.getLogger(name).addHandler(logging.NullHandler())

    command, settings = "", None
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        settings = config.load()
        return int(args.func(args, settings) or 0)
    except (UsageError, ConfigError, Unreachable) as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    except KafkaError as exc:  # any command: Kafka not there, or not answering
        where = settings.kafka if settings is not None else "?"
        print(f"mailsla {command}: cannot reach Kafka at {where}: {first_line(exc)}", file=sys.stderr)
        return 2
    except ProduceFailed as exc:  # accounts load, maintenance add/remove
        where = settings.kafka if settings is not None else "?"
        if exc.sent == 0:
            print(f"mailsla {command}: cannot reach Kafka at {where}: {exc.reason}", file=sys.stderr)
            return 2
        print(f"mailsla {command}: Kafka at {where} failed after {exc.acked} of {exc.sent} records were "
              f"acknowledged ({exc.reason}); run it again", file=sys.stderr)
        return 1
    except OwnerBusy as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except LimitHit as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
