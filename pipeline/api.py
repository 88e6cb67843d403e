"""Local HTTP API of the process that owns the ClickHouse connection.

chDB allows one engine per process, so while a worker (or sink) holds the
embedded database, the CLI sends its read-only SQL here instead of opening
the files a second time. The same server has the live page, /metrics, /healthz
and /readyz (pipeline/web.py). Binds 127.0.0.1 unless MAILSLA_WEB_HOST says
otherwise; the address is recorded in `$MAILSLA_DATA/run/api.json` together
with the owner's pid. /sql is read-only (ClickHouse readonly=1).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pipeline.config import Settings

BIND = "127.0.0.1"
DEFAULT_PORT = 8642
log = logging.getLogger("mailsla.api")


def record_path(settings: Settings) -> Path:
    return settings.data_dir / "run" / "api.json"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find(settings: Settings) -> str | None:
    """The URL of a live owner of this data dir's database, if any."""
    path = record_path(settings)
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec["url"] if pid_alive(int(rec.get("pid", -1))) else None


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj, default=str), status=status,
                        content_type="application/json")


async def serve(settings: Settings, store: Any) -> web.AppRunner:
    """Start the API (when the process starts its sink); returns the runner to stop it."""

    async def sql(request: web.Request) -> web.Response:
        text = await request.text()
        try:
            cols, rows = await asyncio.to_thread(store.query, text, True)
        except Exception as exc:  # noqa: BLE001 - the error goes back to the caller
            return _json({"error": str(exc).strip().splitlines()[0][:500]}, status=400)
        return _json({"columns": cols, "rows": rows})

    async def healthz(_: web.Request) -> web.Response:
        return _json({"ok": True})

    from pipeline.web import LiveView, add_routes

    app = web.Application()
    app.router.add_post("/sql", sql)
    app.router.add_get("/healthz", healthz)
    add_routes(app, LiveView(settings, lambda text: store.query(text, True)))
    return await start(settings, app)


async def start(settings: Settings, app: web.Application, record: bool = True) -> web.AppRunner:
    """Listen on MAILSLA_WEB_HOST:MAILSLA_API_PORT (the default port, if taken, falls back to a
    free one) and record the address for the CLI."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.web_host, settings.api_port)
    try:
        await site.start()
    except OSError as exc:
        if settings.api_port != DEFAULT_PORT:
            raise
        log.warning("port %d is taken (%s); using a free port, see %s", DEFAULT_PORT, exc.strerror,
                    record_path(settings))
        site = web.TCPSite(runner, settings.web_host, 0)
        await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    if record:
        path = record_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        # the CLI talks to it over loopback even when it listens on all interfaces
        path.write_text(json.dumps({"pid": os.getpid(), "url": f"http://{BIND}:{port}"}))
    log.info("live page and API on http://%s:%d/", settings.web_host, port)
    return runner


async def stop(settings: Settings, runner: web.AppRunner) -> None:
    try:
        rec = json.loads(record_path(settings).read_text())
        if rec.get("pid") == os.getpid():
            record_path(settings).unlink()
    except (OSError, ValueError):
        pass
    await runner.cleanup()


class RemoteError(RuntimeError):
    """The owner process answered with an error (bad SQL, read-only violation)."""


def remote_query(url: str, sql: str, timeout: float = 300.0) -> tuple[list[str], list[list[Any]]]:
    req = urllib.request.Request(f"{url}/sql", data=sql.encode("utf-8"), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback URL we recorded
            body = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = orjson.loads(exc.read() or b"{}")
        raise RemoteError(body.get("error", f"HTTP {exc.code}")) from None
    return body["columns"], body["rows"]
