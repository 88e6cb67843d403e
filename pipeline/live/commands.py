"""The live-view commands: `web` (serves the page until Ctrl-C) and `top` (the terminal view).

Both read through the CLI's ClickHouse path, or the owner's API when a sink holds the embedded
database; failures to reach ClickHouse are the reader's (pipeline/store/reader.py).
"""
from __future__ import annotations

import argparse
import asyncio

from pipeline.core.config import Settings
from pipeline.store import api
from pipeline.store.reader import reader

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
