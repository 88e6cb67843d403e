"""The commands that run the stream: `worker`, `sink`, `status`.

`worker` and `sink` run until SIGTERM/SIGINT (exit 0 after flush and commit) or a crash (one line,
exit 1, for a supervisor to restart them); `status` asks Kafka once (unreachable: exit 2).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from pipeline.core.config import Settings
from pipeline.core.errors import Unreachable, UsageError, first_line

def fast_loop() -> None:
    """uvloop when installed: about 12% more events/s through Faust (measured, see README)."""
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def run_worker(name: str, worker: Any) -> int:
    """Run a mode/Faust worker to its end. A crash (the last resort: whatever the worker could not
    recover from by itself) was logged in full; here it is one line and exit 1, for a supervisor."""
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else 1
    except Exception as exc:  # noqa: BLE001
        print(f"mailsla {name}: stopped after a crash ({type(exc).__name__}: {first_line(exc)}); "
              "restart it: uncommitted input is read again", file=sys.stderr)
        return 1
    return 0


def cmd_worker(args: argparse.Namespace, s: Settings) -> int:
    if args.processes is not None:
        if args.processes < 1 or args.no_sink:
            raise UsageError("mailsla worker: --processes N needs N >= 1 and starts its own sink (no --no-sink)")
        from pipeline.stream import supervise

        return supervise.run(s, args.processes, args.loglevel, s.data_dir / "run" / "logs")
    from faust.worker import Worker

    from pipeline.stream.app import create_app
    from pipeline.stream.faust_internals.lifecycle import guarded_worker
    from pipeline.stream.kafka import ensure_topics

    asyncio.run(ensure_topics(s))
    fast_loop()
    app = create_app(s, with_sink=not args.no_sink)
    worker = guarded_worker(Worker, s.shutdown_s)(app, loglevel=args.loglevel, override_logging=True, quiet=True)
    worker.spinner = None  # its log handler turns the root logger to DEBUG: slow, and noisy in files
    return run_worker("worker", worker)


def cmd_sink(args: argparse.Namespace, s: Settings) -> int:
    from mode import Worker

    from pipeline.stream.faust_internals.lifecycle import guarded_worker
    from pipeline.stream.kafka import ensure_topics
    from pipeline.stream.writer import ResultWriter

    asyncio.run(ensure_topics(s))
    fast_loop()
    return run_worker("sink", guarded_worker(Worker, s.shutdown_s)(ResultWriter(s), loglevel=args.loglevel,
                                                                     quiet=True))


def cmd_status(args: argparse.Namespace, s: Settings) -> int:
    from pipeline.stream.status import collect

    try:
        doc = asyncio.run(collect(s))
    except Exception as exc:  # noqa: BLE001 - Kafka unreachable etc.
        raise Unreachable(f"mailsla status: cannot reach Kafka at {s.kafka}: {first_line(exc)}") from None
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for k, v in doc.items():
            print(f"{k:<18} {v}")
    return 0
