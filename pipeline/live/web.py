"""The live page, its server-sent events, /metrics, /readyz.

Served by the process that owns the ClickHouse connection (the sink, on
`MAILSLA_WEB_HOST:MAILSLA_API_PORT`, 127.0.0.1:8642 by default) and by
`mailsla web` for a ClickHouse server elsewhere. One `LiveView` computes a
snapshot (pipeline/live/snapshot.py) at most every `every_s` seconds and every
client gets that one. The page has no external assets: its charts are SVG
drawn here, its script is a few lines of plain JavaScript. `GET /` comes with
the current snapshot already rendered in (pipeline/live/page.py). At most
MAILSLA_API_MAX_LIVE_CLIENTS event streams are open at once; more get 503.
"""
from __future__ import annotations

import asyncio
import logging
import time
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from pipeline.live import charts, metrics, page as page_render
from pipeline.store.adhoc import in_thread
from pipeline.core.config import Settings
from pipeline.core.errors import first_line
from pipeline.live.snapshot import Query, collect
from pipeline.stream.status import lags

log = logging.getLogger("mailsla.web")


class LiveView:
    def __init__(self, settings: Settings, query: Query, every_s: float = 2.0) -> None:
        self.settings, self.query, self.every_s = settings, query, every_s
        self.snap: dict[str, Any] | None = None
        self.lock = asyncio.Lock()
        self.error = ""

    async def lag(self) -> dict[str, int]:
        s = self.settings
        try:
            behind, unwritten = await lags(s)
            return {"input": behind, "results": unwritten}
        except Exception as exc:  # noqa: BLE001 - Kafka unreachable: show the numbers we have
            self.error = f"Kafka: {type(exc).__name__}"
            return {}

    async def current(self) -> dict[str, Any]:
        """The newest snapshot, recomputed when older than `every_s`."""
        async with self.lock:
            if self.snap is None or time.time() - self.snap["at"] >= self.every_s:
                lag = await self.lag()
                try:
                    snap = await in_thread(collect, self.settings, self.query, self.snap, lag)
                    snap["charts"] = charts.render(snap)
                    self.snap, self.error = snap, ""
                except Exception as exc:  # noqa: BLE001 - the page shows the error and retries
                    self.error = first_line(exc, 200)
                    log.warning("snapshot failed: %s", self.error)
                    if self.snap is None:
                        raise
            return self.snap


def add_routes(app: web.Application, view: LiveView) -> None:
    live = [0]  # open event streams

    async def page(_: web.Request) -> web.Response:
        html = (resources.files("pipeline.live") / "static" / "index.html").read_text()
        try:
            html = page_render.render(html, await view.current())
        except Exception:  # noqa: BLE001 - no snapshot yet: the page says so and its script retries
            html = page_render.with_error(html, view.error or "no data yet")
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def snapshot(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(await view.current()), content_type="application/json")

    async def events(request: web.Request) -> web.StreamResponse:
        """Server-sent events: one snapshot every `every_s` seconds until the client goes
        (503 once MAILSLA_API_MAX_LIVE_CLIENTS streams are open)."""
        if live[0] >= view.settings.api_max_live_clients:
            return web.json_response({"error": f"{live[0]} live clients already (MAILSLA_API_MAX_LIVE_CLIENTS)"},
                                     status=503, headers={"Retry-After": "10"})
        live[0] += 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await resp.prepare(request)
            while True:
                try:
                    body = orjson.dumps(await view.current())
                except Exception:  # noqa: BLE001 - no snapshot yet: say so, try again
                    body = orjson.dumps({"error": view.error or "no data yet"})
                await resp.write(b"data: " + body + b"\n\n")
                await asyncio.sleep(view.every_s)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            live[0] -= 1
        return resp

    async def prometheus(_: web.Request) -> web.Response:
        body = await in_thread(metrics.exposition, view.settings, view.query, await view.current())
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def readyz(_: web.Request) -> web.Response:
        """Ready once caught up: the join and the sink are within `max_lag` records of their inputs."""
        lag = await view.lag()
        ready = bool(lag) and lag["input"] <= 1000 and lag["results"] <= 1000
        return web.Response(body=orjson.dumps({"ready": ready, "lag": lag, "error": view.error}),
                            status=200 if ready else 503, content_type="application/json")

    app.router.add_get("/", page)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/events", events)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/readyz", readyz)
