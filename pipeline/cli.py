"""`mailsla` command line. Every command has --help; bad input exits 2 with one line; a query
stopped by one of the MAILSLA_SQL_* limits exits 3 with one line."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

from pipeline.store import api
from pipeline.core import config, sla
from pipeline.core.config import ConfigError, Settings


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit 2."""


class OwnerBusy(Exception):
    """The database cannot be opened now: one line on stderr, exit 1."""


class Unreachable(Exception):
    """Kafka or a ClickHouse server does not answer: one line on stderr, exit 2."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0][:300] if text else "") or type(exc).__name__


class LimitHit(Exception):
    """A query stopped by MAILSLA_SQL_MAX_SECONDS/_MEMORY/_ROWS: one line on stderr, exit 3."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        raise UsageError(f"{self.prog}: {message}")


# -- ClickHouse access for the CLI --------------------------------------------
Query = Callable[[str], tuple[list[str], list[Sequence[Any]]]]


def reader(settings: Settings, migrate: bool = False, report: bool = False) -> tuple[Query, Callable[[], None]]:
    """Read-only SQL with the MAILSLA_SQL_* limits (pipeline/store/adhoc.py), in the configured database:
    through the owner's local API (with its token) when a worker holds the embedded database,
    else a connection of our own (chDB files or a server). `report`: our own commands' queries
    (`sla`, `faults`), without the result-row limit. A query stopped by a limit raises
    LimitHit (exit 3), any other SQL error UsageError (exit 2)."""
    url = api.find(settings) if settings.clickhouse.startswith("chdb://") else None
    if url:
        from pipeline.store.guard import read_token, token_path

        try:
            token = read_token(settings)
        except OSError as exc:
            raise OwnerBusy(f"mailsla: cannot read the API token {token_path(settings)} ({exc.strerror}); run as "
                            "the worker's user or set MAILSLA_API_TOKEN") from None

        def remote(sql_text: str) -> tuple[list[str], list[Sequence[Any]]]:
            try:
                return api.remote_query(url, sql_text, token, timeout=settings.sql_max_seconds + 30, report=report)
            except api.RemoteError as exc:
                raise (LimitHit if exc.limit else UsageError)(f"sql: {exc}") from None
        return remote, lambda: None
    from pipeline.store.adhoc import LimitExceeded, QueryError
    from pipeline.store.clickhouse import Store

    try:
        store = Store(settings)
    except Exception as exc:  # noqa: BLE001 - typically: another process holds the embedded files
        if not settings.clickhouse.startswith("chdb://"):
            raise Unreachable(f"mailsla: cannot reach ClickHouse at {settings.redacted_dsn}: "
                              f"{_first_line(exc)}") from None
        raise OwnerBusy(f"mailsla: cannot open ClickHouse at {settings.redacted_dsn} "
                        f"({str(exc).strip().splitlines()[-1][:200]}); is a worker starting? retry") from None
    if migrate:
        store.migrate()

    def local(sql_text: str) -> tuple[list[str], list[Sequence[Any]]]:
        try:
            return store.adhoc(sql_text, report=report)
        except LimitExceeded as exc:
            raise LimitHit(f"sql: {exc}") from None
        except QueryError as exc:  # a ClickHouse error is the user's SQL error
            raise UsageError(f"sql: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. another process holds the embedded files
            raise OwnerBusy(f"mailsla: cannot query ClickHouse at {settings.redacted_dsn} "
                            f"({str(exc).strip().splitlines()[-1][:200]})") from None
    return local, store.close


# -- commands -------------------------------------------------------------------
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


def _fast_loop() -> None:
    """uvloop when installed: about 12% more events/s through Faust (measured, see README)."""
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def _run_worker(name: str, worker: Any) -> int:
    """Run a mode/Faust worker to its end. A crash (the last resort: whatever the worker could not
    recover from by itself) was logged in full; here it is one line and exit 1, for a supervisor."""
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else 1
    except Exception as exc:  # noqa: BLE001
        print(f"mailsla {name}: stopped after a crash ({type(exc).__name__}: {_first_line(exc)}); "
              "restart it: uncommitted input is read again", file=sys.stderr)
        return 1
    return 0


def cmd_worker(args: argparse.Namespace, s: Settings) -> int:
    if args.processes is not None:
        if args.processes < 1 or args.no_sink:
            raise UsageError("mailsla worker: --processes N needs N >= 1 and starts its own sink (no --no-sink)")
        from pipeline.ops import supervise

        return supervise.run(s, args.processes, args.loglevel, s.data_dir / "run" / "logs")
    from faust.worker import Worker

    from pipeline.stream.app import create_app
    from pipeline.stream.faust_internals.lifecycle import guarded_worker
    from pipeline.stream.kafka import ensure_topics

    asyncio.run(ensure_topics(s))
    _fast_loop()
    app = create_app(s, with_sink=not args.no_sink)
    worker = guarded_worker(Worker, s.shutdown_s)(app, loglevel=args.loglevel, override_logging=True, quiet=True)
    worker.spinner = None  # its log handler turns the root logger to DEBUG: slow, and noisy in files
    return _run_worker("worker", worker)


def cmd_sink(args: argparse.Namespace, s: Settings) -> int:
    from mode import Worker

    from pipeline.stream.faust_internals.lifecycle import guarded_worker
    from pipeline.stream.kafka import ensure_topics
    from pipeline.stream.writer import ResultWriter

    asyncio.run(ensure_topics(s))
    _fast_loop()
    return _run_worker("sink", guarded_worker(Worker, s.shutdown_s)(ResultWriter(s), loglevel=args.loglevel,
                                                                     quiet=True))


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


def _month_and_account(args: argparse.Namespace, s: Settings, command: str) -> Any:
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
    pol = _month_and_account(args, s, "availability")
    query, close = reader(s, migrate=True)
    try:
        doc = availability.compute(query, s.database, pol, args.month, account)
    finally:
        close()
    print(json.dumps(doc, indent=2) if args.json else availability.render(doc))
    return 0


def cmd_report(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.ops import report

    account = args.account
    pol = _month_and_account(args, s, "report")
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


def cmd_status(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.stream.status import collect

    try:
        doc = asyncio.run(collect(s))
    except Exception as exc:  # noqa: BLE001 - Kafka unreachable etc.
        raise Unreachable(f"mailsla status: cannot reach Kafka at {s.kafka}: {_first_line(exc)}") from None
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for k, v in doc.items():
            print(f"{k:<18} {v}")
    return 0


def cmd_web(args: argparse.Namespace, s: Settings) -> int:
    """The live page for a ClickHouse the CLI can reach (a server, or a sink's embedded one)."""
    from dataclasses import replace

    from pipeline.store.api import start
    from pipeline.store.guard import application
    from pipeline.live.web import LiveView, add_routes

    query, close = reader(s)
    s = replace(s, api_port=args.port, web_host=args.host)

    async def main() -> None:
        app = application(s, args.host)  # the same Host and Origin checks as the sink's server
        add_routes(app, LiveView(s, query))
        runner = await start(s, app, record=False)
        print(f"live page: http://{args.host}:{runner.addresses[0][1]}/", flush=True)
        while True:
            await asyncio.sleep(3600)
    try:
        asyncio.run(main())
    finally:
        close()
    return 0


def cmd_top(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.live import top

    url = api.find(s) if s.clickhouse.startswith("chdb://") else None
    if url:
        return top.run(top.remote(url), once=args.once)
    query, close = reader(s)
    try:
        return top.run(top.local(s, query), once=args.once)
    finally:
        close()


def cmd_demo(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.ops.demo import run

    return run(s, duration=args.duration, rate=args.rate)


def cmd_bench(args: argparse.Namespace, s: Settings) -> int:
    if args.state:
        from pipeline.ops.statebench import run as run_state

        return run_state(s, args.state)
    if args.noop_worker:
        from pipeline.ops.bench import noop_worker

        return noop_worker(s, args.noop_worker, args.events)
    from pipeline.ops.bench import run

    return run(s, events=args.events, as_json=args.json)


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
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="end-to-end events/s against the raw aiokafka ceiling")
    b.add_argument("--events", type=int, default=1_000_000)
    b.add_argument("--state", type=int, metavar="N", help="instead: join-state memory with N messages in flight")
    b.add_argument("--json", action="store_true", help="print one JSON object (the table goes to stderr)")
    b.add_argument("--noop-worker", metavar="PATH", help=argparse.SUPPRESS)  # the bench's own child process
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
        print(f"mailsla {command}: cannot reach Kafka at {where}: {_first_line(exc)}", file=sys.stderr)
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
