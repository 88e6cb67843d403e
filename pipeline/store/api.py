"""Local HTTP API of the process that owns the ClickHouse connection.

chDB allows one engine per process, so while a worker (or sink) holds the
embedded database, the CLI sends its read-only SQL here instead of opening
the files a second time. The same server has the live page, /metrics, /healthz
and /readyz (pipeline/live/web.py). Binds 127.0.0.1 unless MAILSLA_WEB_HOST says
otherwise; the address is recorded in `$MAILSLA_DATA/run/api.json` together
with the owner's pid. /sql is read-only (ClickHouse readonly=1), needs the token
(pipeline/store/guard.py, `$MAILSLA_DATA/run/api.token`) and runs with the MAILSLA_SQL_*
limits on a reader connection (pipeline/store/adhoc.py); if its client hangs up, the query
is killed. Every request passes the Host and Origin checks of pipeline/store/guard.py.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any, Callable

import orjson
from aiohttp import web

from pipeline.store import guard
from pipeline.store.adhoc import READERS, LimitExceeded, QueryError, in_thread, new_tag
from pipeline.core.config import Settings
from pipeline.store.owner import find, record_path  # noqa: F401 - `api.find` for its callers

BIND = "127.0.0.1"
DEFAULT_PORT = 8642
log = logging.getLogger("mailsla.api")


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(obj, default=str), status=status, headers=headers,
                        content_type="application/json")


async def serve(settings: Settings, store: Any,
                health: Callable[[], list[str]] = lambda: []) -> web.AppRunner:
    """Start the API (when the process starts its sink); returns the runner to stop it.
    Raises OSError when the token file cannot be created."""
    token = guard.ensure_token(settings)
    pending = [0]  # /sql requests running or waiting for a reader
    slots = asyncio.Semaphore(READERS - 1)  # one reader stays free for the page and /metrics

    async def sql(request: web.Request) -> web.Response:
        if not guard.token_ok(token, request.headers.get("Authorization")):
            return _json({"error": "needs Authorization: Bearer <token> (the CLI reads $MAILSLA_DATA/run/api.token "
                                   "or MAILSLA_API_TOKEN)"}, status=401)
        if pending[0] >= 2 * READERS:
            return _json({"error": f"busy: {pending[0]} queries running or waiting; try again", "limit": "busy"},
                         status=503, headers={"Retry-After": "5"})
        try:
            text = await request.text()
        except web.HTTPRequestEntityTooLarge:
            return _json({"error": f"query over {settings.api_max_body} bytes (MAILSLA_API_MAX_BODY)"}, status=413)
        pending[0] += 1
        try:
            try:  # waiting here holds no thread and no reader
                await asyncio.wait_for(slots.acquire(), settings.sql_max_seconds)
            except asyncio.TimeoutError:
                return _json({"error": f"busy: {READERS - 1} queries running; try again", "limit": "busy"},
                             status=503, headers={"Retry-After": "5"})
            try:
                report = request.headers.get("X-Mailsla-Purpose") == "report"  # `sla`, `faults`: no row limit
                cols, rows = await run_cancellable(request, store, text, report)
            finally:
                slots.release()
        except LimitExceeded as exc:
            return _json({"error": str(exc), "limit": exc.kind}, status=422)
        except QueryError as exc:
            return _json({"error": str(exc)}, status=400)
        finally:
            pending[0] -= 1
        return _json({"columns": cols, "rows": rows})

    async def healthz(_: web.Request) -> web.Response:
        """Alive and able to do its work: 503 while a join process of this data dir reports a
        failure (its store failing, records failing one after another) until it is restarted."""
        failures = health()
        return _json({"ok": not failures, "failures": failures}, status=503 if failures else 200)

    from pipeline.live.web import LiveView, add_routes

    app = guard.application(settings, settings.web_host)
    app.router.add_post("/sql", sql)
    app.router.add_get("/healthz", healthz)
    add_routes(app, LiveView(settings, store.adhoc))
    return await start(settings, app)


async def run_cancellable(request: web.Request, store: Any, text: str,
                          report: bool = False) -> tuple[list[str], list[Any]]:
    """Run ad-hoc SQL in a thread; if the client disconnects (or the server stops) first,
    KILL the query so it stops using the engine."""
    tag = new_tag()
    task = asyncio.ensure_future(in_thread(store.adhoc, text, tag, report))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()
            transport = request.transport
            if transport is None or transport.is_closing():
                await asyncio.to_thread(store.cancel, tag)
                log.info("client of /sql went away: query cancelled")
                return await task
    except asyncio.CancelledError:
        await asyncio.shield(asyncio.to_thread(store.cancel, tag))
        raise


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
    port = runner.addresses[0][1]  # the port bound (public API: AppRunner.addresses)
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
    """The owner process answered with an error (bad SQL, read-only violation, no token);
    `limit` names the limit that stopped the query, if one did."""

    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


def remote_query(url: str, sql: str, token: str, timeout: float = 300.0,
                 report: bool = False) -> tuple[list[str], list[list[Any]]]:
    """POST the SQL to the owner's /sql with the token (`report`: one of our commands' queries,
    no result-row limit). Raises RemoteError."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    if report:
        headers["X-Mailsla-Purpose"] = "report"
    req = urllib.request.Request(f"{url}/sql", data=sql.encode("utf-8"), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback URL we recorded
            body = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            body = orjson.loads(exc.read() or b"{}")
        except orjson.JSONDecodeError:
            body = {}
        raise RemoteError(body.get("error", f"HTTP {exc.code}"), body.get("limit")) from None
    return body["columns"], body["rows"]
